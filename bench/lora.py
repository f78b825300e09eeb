"""LoRA suite: federated fine-tuning of adapters against the full model, through secure aggregation.

Run ``python -m bench.lora`` (under a minute on an idle 2-core machine) or ``--quick``
(smoke size, temporary folder). Each seed runs :func:`fl.lora.experiment`: an MLP
pretrained centrally on digits 0-4, then fine-tuned on all ten classes by 20
clients (Dirichlet 0.5, 20% dropouts, secure FedAvg next to its plaintext twin),
once with LoRA adapters (rank 4, base frozen; only the adapters are masked and
summed) and once in full. Reported: bytes each client uploads per round (its
masked vector) and final accuracy, mean ± standard deviation over seeds.

Writes ``bench/results/lora.json`` and its section of ``bench/README.md``.
"""

from __future__ import annotations

from typing import Any

from bench.common import accuracy_cells, bound_cell, machine, pct, table_row, with_machine
from bench.report import STANDALONE_MARK, standalone_main

TITLE = "LoRA fine-tuning: adapters against the full model"


def run(quick: bool) -> dict[str, Any]:
    from fl.lora import experiment

    seeds = [0] if quick else [0, 1, 2]
    rounds = 2 if quick else 20
    clients = 10 if quick else 20
    rows = [experiment(clients=clients, rounds=rounds, seed=s) | {"seed": s} for s in seeds]
    return {"machine": machine(), "seeds": seeds, "rounds": rounds, "clients": clients,
            "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    lines = [
        f"_{STANDALONE_MARK}: `python -m bench.lora`; numbers in `bench/results/lora.json`._",
        "",
        f"MLP (64-64-10) pretrained centrally on digits 0-{rows[0]['pretrain_classes'] - 1} "
        f"(base accuracy on all ten classes {pct([r['base_accuracy'] for r in rows])}%), "
        f"then fine-tuned by {result['clients']} clients (Dirichlet 0.5, 20% dropouts, "
        f"SecAgg+) for {result['rounds']} rounds x 2 local epochs; seeds {result['seeds']}. "
        "Bytes up = one client's masked vector per round (the update plus the weight "
        "coordinate, in the modulus' dtype).",
        "",
        "| fine-tuning | numbers sent | bytes up per client per round | final secure (%) | "
        "final plaintext (%) | within bound |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (("lora", f"LoRA rank {rows[0]['rank']}"), ("full", "full model")):
        rs = [r[name] for r in rows]
        lines.append(table_row([label, rs[0]["scalars_per_update"],
                                rs[0]["bytes_up_per_client_per_round"], accuracy_cells(rs),
                                bound_cell(rs)]))
    return with_machine(lines, result["machine"])


def main() -> None:
    standalone_main(__doc__, "lora", TITLE, run, markdown)


if __name__ == "__main__":
    main()

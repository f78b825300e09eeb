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

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS_DIR, machine
from bench.report import STANDALONE_MARK, write_standalone_section

TITLE = "LoRA fine-tuning: adapters against the full model"


def run(quick: bool) -> dict[str, Any]:
    from fl.lora import experiment

    seeds = [0] if quick else [0, 1, 2]
    rounds = 2 if quick else 20
    clients = 10 if quick else 20
    rows = [experiment(clients=clients, rounds=rounds, seed=s) | {"seed": s} for s in seeds]
    return {"machine": machine(), "seeds": seeds, "rounds": rounds, "clients": clients,
            "rows": rows}


def _pct(values: list[float]) -> str:
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}"


def markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    lines = [
        f"_{STANDALONE_MARK}: `python -m bench.lora`; numbers in `bench/results/lora.json`._",
        "",
        f"MLP (64-64-10) pretrained centrally on digits 0-{rows[0]['pretrain_classes'] - 1} "
        f"(base accuracy on all ten classes {_pct([r['base_accuracy'] for r in rows])}%), "
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
        lines.append(
            f"| {label} | {rs[0]['scalars_per_update']} | "
            f"{rs[0]['bytes_up_per_client_per_round']} | "
            f"{_pct([r['final_accuracy_secure'] for r in rs])} | "
            f"{_pct([r['final_accuracy_plaintext'] for r in rs])} | "
            f"{'yes' if all(r['within_bound'] for r in rs) else 'NO'} |")
    m = result["machine"]
    lines += ["", f"Machine: {m.get('cpu')} ({m.get('cpu_count')} cores), "
              f"Python {m.get('python')}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke size, temporary folder")
    args = parser.parse_args()
    result = run(args.quick)
    out = Path(tempfile.mkdtemp(prefix="lora-quick-")) if args.quick else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    (out / "lora.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    text = markdown(result)
    if not args.quick:
        write_standalone_section(out.parent / "README.md", TITLE, text)
    print(text)
    print(f"wrote {out / 'lora.json'}")


if __name__ == "__main__":
    main()

"""Algorithms suite: FedAvg, FedProx and SCAFFOLD on strongly non-IID splits; FedPer and Ditto.

Run ``python -m bench.algorithms`` (about two minutes on an idle 2-core
machine) or ``--quick`` (smoke size, into a temporary folder). Every run is
``secagg train``'s loop (:func:`fl.fedavg.run_fedavg`): 20 clients on
``digits``, Dirichlet alpha 0.1 and 0.5, 20% of each cohort dropping at a
random protocol round, secure aggregation next to its plaintext twin.

Reported per (algorithm, alpha), over several seeds (split, cohorts, dropouts
and SGD all change with the seed): rounds to reach 85% test accuracy (median
and range; "never" counts runs that did not), final accuracy (mean and standard
deviation), the largest |secure - plaintext| final-accuracy gap, and whether
every secure mean (every part: SCAFFOLD's control variates too) stayed within
its quantization bound. Personalization: each client's accuracy on its own
test part, mean and worst 10%, for FedPer and Ditto against FedAvg's global
model on the same clients (MLP, since FedPer needs a body).

Writes ``bench/results/algorithms.json`` and its section of ``bench/README.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.common import accuracy_cells, bound_cell, machine, pct, table_row, with_machine
from bench.report import STANDALONE_MARK, standalone_main
from fl.data import federate
from fl.fedavg import FedAvgConfig, TrainingHistory, run_fedavg
from fl.models import make_model

TITLE = "FL algorithms on non-IID data (FedAvg, FedProx, SCAFFOLD, FedPer, Ditto)"
TARGET = 0.85
FEDPROX_MU = 0.01


def rounds_to(history: TrainingHistory, target: float, secure: bool = True) -> int | None:
    """First round whose test accuracy reaches ``target`` (None: never)."""
    for r in history.rounds:
        acc = r.accuracy_secure if secure else r.accuracy_plaintext
        if acc is not None and acc >= target:
            return r.round
    return None


def one_run(algorithm: str, alpha: float, seed: int, rounds: int, model: str) -> dict[str, Any]:
    data = federate("digits", 20, alpha=alpha, seed=seed)
    m = make_model(model, data.num_features, data.num_classes, seed=seed)
    config = FedAvgConfig(rounds=rounds, seed=seed, algorithm=algorithm,
                          mu=FEDPROX_MU if algorithm == "fedprox" else 0.0)
    h = run_fedavg(data, m, config)
    d = h.to_dict()
    return {
        "algorithm": algorithm, "alpha": alpha, "seed": seed, "model": model,
        "rounds": rounds,
        "rounds_to_target_secure": rounds_to(h, TARGET),
        "rounds_to_target_plaintext": rounds_to(h, TARGET, secure=False),
        "final_accuracy_secure": h.final_accuracy_secure,
        "final_accuracy_plaintext": h.final_accuracy_plaintext,
        "within_bound": h.within_bound,
        "personal_accuracy_mean": d["personal_accuracy_mean"],
        "personal_accuracy_worst10": d["personal_accuracy_worst10"],
        "secagg_seconds": h.secagg_seconds,
    }


def run(quick: bool) -> dict[str, Any]:
    seeds = [0, 1] if quick else [0, 1, 2]
    rounds = 3 if quick else 20
    alphas = [0.1, 0.5]
    rows = [one_run(a, alpha, s, rounds, "logreg")
            for alpha in alphas for a in ("fedavg", "fedprox", "scaffold") for s in seeds]
    rows += [one_run(a, alpha, s, rounds, "mlp")
             for alpha in alphas for a in ("fedavg", "fedper", "ditto") for s in seeds]
    return {"machine": machine(), "target": TARGET, "seeds": seeds, "rounds": rounds,
            "fedprox_mu": FEDPROX_MU, "rows": rows}


def _group(rows: list[dict[str, Any]],
           model: str) -> dict[tuple[str, float], list[dict[str, Any]]]:
    out: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        if r["model"] == model:
            out.setdefault((r["algorithm"], r["alpha"]), []).append(r)
    return out


def _rounds_cell(values: list[int | None]) -> str:
    hit = sorted(v for v in values if v is not None)
    never = len(values) - len(hit)
    if not hit:
        return "never"
    cell = f"{float(np.median(hit)):g} ({hit[0]}-{hit[-1]})"
    return cell + (f", never in {never}" if never else "")


def markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    lines = [
        f"_{STANDALONE_MARK}: `python -m bench.algorithms`; numbers in "
        "`bench/results/algorithms.json`._",
        "",
        f"`digits`, 20 clients, softmax regression, {result['rounds']} rounds x 5 local epochs, "
        "20% of each cohort dropping at a random protocol round, SecAgg+; seeds "
        f"{result['seeds']} (split, cohorts, dropouts, SGD). FedProx mu = "
        f"{result['fedprox_mu']:g}. Rounds to {100 * result['target']:.0f}%: median (range) "
        "over seeds; final accuracy: mean ± standard deviation (%).",
        "",
        "| algorithm | alpha | rounds to 85% (secure) | rounds to 85% (plaintext) | "
        "final secure | final plaintext | max secure-plaintext gap | within bound |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (alg, alpha), rs in sorted(_group(rows, "logreg").items(), key=lambda kv: kv[0][::-1]):
        gap = max(abs(r["final_accuracy_secure"] - r["final_accuracy_plaintext"]) for r in rs)
        lines.append(
            f"| {alg} | {alpha:g} | {_rounds_cell([r['rounds_to_target_secure'] for r in rs])} | "
            f"{_rounds_cell([r['rounds_to_target_plaintext'] for r in rs])} | "
            f"{accuracy_cells(rs)} | {100 * gap:.2f} points | {bound_cell(rs)} |")
    lines += [
        "",
        "Personalization (one-hidden-layer MLP): each client's accuracy on its own test part "
        "with the model it would use (FedAvg: the global model; FedPer: the shared body with "
        "its own head; Ditto: its personal model, lambda = 0.1), mean and worst 10% of "
        "clients, mean ± standard deviation over seeds (%, secure runs). Pooled test "
        "accuracy: FedPer's personal models, Ditto's and FedAvg's global model.",
        "",
        "| algorithm | alpha | per-client mean | per-client worst 10% | pooled test accuracy |",
        "|---|---|---|---|---|",
    ]
    for (alg, alpha), rs in sorted(_group(rows, "mlp").items(), key=lambda kv: kv[0][::-1]):
        lines.append(table_row([alg, f"{alpha:g}", pct([r["personal_accuracy_mean"] for r in rs]),
                                pct([r["personal_accuracy_worst10"] for r in rs]),
                                pct([r["final_accuracy_secure"] for r in rs])]))
    return with_machine(lines, result["machine"])


def main() -> None:
    standalone_main(__doc__, "algorithms", TITLE, run, markdown)


if __name__ == "__main__":
    main()

"""The example's server process: FedAvg of a PyTorch MLP through secure aggregation.

Each round it publishes the global model to the model store (the work directory:
the model is public to the clients; any channel would do), runs one secure session
with :class:`~secagg.deploy.DeploymentServer` over mTLS, adds the decoded mean
update to the model and evaluates it. It prints one JSON event per line: the
transport's (``listening``, ``session-open``, ``round``, ``session-end``) and its
own ``round-result`` and ``finished``. Started by ``run.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import task

from secagg.config import SessionSettings
from secagg.deploy import DeploymentServer, RoundAborted


def emit(event: Any) -> None:
    print(json.dumps(dict(event), sort_keys=True), flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--certs", type=Path, required=True)
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--min-cohort", type=int, default=10)
    p.add_argument("--round-timeout", type=float, default=20.0)
    p.add_argument("--join-timeout", type=float, default=120.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verify", action="store_true",
                   help="keep each round's secure mean in WORK/verify (for run.py's check)")
    args = p.parse_args()

    model = task.model(args.seed)
    (x_test, y_test), _ = task.load_arrays(task.data_file(args.work, "test"))
    server = DeploymentServer(
        task.params(args.clients), clients=args.clients, certs_dir=args.certs,
        settings=SessionSettings(min_cohort=args.min_cohort), round_timeout=args.round_timeout,
        join_timeout=args.join_timeout, on_event=emit)
    initial = model.evaluate(x_test, y_test).accuracy
    with server:
        for r in range(args.rounds):
            weights = model.get_weights()
            task.save_arrays(task.model_file(args.work, r), weights)
            try:
                result = server.aggregate(weights, round_index=r)
            except RoundAborted as exc:  # keep the model; the next round tries again
                emit({"event": "round-result", "round": r, "aborted": True,
                      "reason": exc.reason, "accuracy": model.evaluate(x_test, y_test).accuracy})
                continue
            model.set_weights([w + m for w, m in zip(weights, result.mean, strict=True)])
            if args.verify:
                task.save_arrays(task.mean_file(args.work, r), result.mean)
            emit({"event": "round-result", "round": r, "aborted": False,
                  "included_ids": list(result.included), "dropped_ids": list(result.dropped),
                  "total_weight": result.total_weight, "error_bound": result.error_bound,
                  "accuracy": model.evaluate(x_test, y_test).accuracy})
    emit({"event": "finished", "initial_accuracy": initial,
          "final_accuracy": model.evaluate(x_test, y_test).accuracy})
    return 0


if __name__ == "__main__":
    sys.exit(main())

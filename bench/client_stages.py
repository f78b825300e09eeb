"""What our Flower mod costs a client per stage when nothing survives between messages.

Run ``python -m bench.client_stages [--clients N] [--dims 10000,100000] [--json]``.
In Flower's deployment engine every message starts a fresh ClientApp process, so
the mod rebuilds its client from ``Context.state`` at each stage. This runs one
FL round of a legacy FedAvg ServerApp with ``SecAggPlusWorkflow`` against N
in-process nodes (:func:`secagg.flower.run_inprocess`) with
``SecAggPlusMod(cache=False)``, so every stage rebuilds from the persisted state
as a fresh process would (imports and process start are ``bench.import_cost``'s).

Each stage is timed from outside the mod (an outer mod around it), minus the
training function's own time, so the same script measures any version of the
mod; when the mod reports its own split (``SecAggPlusMod.last_timing``:
rebuild, protocol, train) the medians of those are printed too.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
from flwr.app import Context, Message
from flwr.client import Client, NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import SimpleClientManager
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow
from flwr.serverapp import Grid, ServerApp

from secagg.flower import RECORD_KEY, SecAggPlusMod, SecAggPlusWorkflow, run_inprocess


class _Client(NumPyClient):
    """Returns the global model plus a small fixed step: training costs ~nothing."""

    def __init__(self, train_times: list[float]) -> None:
        self.train_times = train_times

    def fit(self, parameters: list[np.ndarray], config: dict[str, object]
            ) -> tuple[list[np.ndarray], int, dict[str, float]]:
        start = time.perf_counter()
        out = [p + np.float32(0.01) for p in parameters]
        self.train_times.append(time.perf_counter() - start)
        return out, 10, {}


def _apps(n: int, m: int, mod: SecAggPlusMod,
          seen: dict[str, list[float]]) -> tuple[ServerApp, ClientApp]:
    train_times: list[float] = []

    def client_fn(context: Context) -> Client:
        return _Client(train_times).to_client()

    def timer(msg: Message, ctxt: Context, call_next: Callable[..., Message]) -> Message:
        record = msg.content.config_records.get(RECORD_KEY) if msg.has_content() else None
        stage = str(record.get("stage")) if record is not None else "other"
        before = len(train_times)
        start = time.perf_counter()
        reply = call_next(msg, ctxt)
        spent = time.perf_counter() - start - sum(train_times[before:])
        seen[stage].append(spent)
        timing = getattr(mod, "last_timing", None)  # absent before the mod had a timer
        if timing is not None:
            for part in ("rebuild", "protocol"):
                seen[f"{stage}:{part}"].append(getattr(timing, f"{part}_s"))
        return reply

    server = ServerApp()
    init = [np.zeros(m, dtype=np.float32)]

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n,
                          min_available_clients=n,
                          initial_parameters=ndarrays_to_parameters(init))
        legacy = LegacyContext(context, config=ServerConfig(num_rounds=1), strategy=strategy,
                               client_manager=SimpleClientManager())
        workflow = SecAggPlusWorkflow(clipping_range=1.0, max_weight=100)
        DefaultWorkflow(fit_workflow=workflow)(grid, legacy)  # type: ignore[arg-type]

    return server, ClientApp(client_fn=client_fn, mods=[timer, mod])


def run(n: int, m: int) -> dict[str, Any]:
    """Median mod time per stage (seconds, training excluded) for one round at (n, m)."""
    seen: dict[str, list[float]] = defaultdict(list)
    server, client = _apps(n, m, SecAggPlusMod(cache=False), seen)
    run_inprocess(server, client, n, seed=1)
    return {"clients": n, "dim": m,
            "median_s": {stage: statistics.median(v) for stage, v in sorted(seen.items())}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--dims", default="10000,100000",
                        help="comma-separated model sizes (default 10000,100000)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    results = [run(args.clients, int(m)) for m in args.dims.split(",")]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        print(f"n = {r['clients']}, m = {r['dim']}: median mod time per stage "
              "(training excluded), every stage rebuilt from Context.state")
        for stage, value in r["median_s"].items():
            print(f"  {stage:<28} {value * 1e3:9.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

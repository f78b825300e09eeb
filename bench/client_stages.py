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

``--fresh R``: the deployment engine's cost model, ours next to Flower's own
``secaggplus_mod``. One round runs in process with each side's workflow while
an outer mod records, for one node, every stage's message and the node's
Context exactly as they arrived (Flower's protobuf); then each recorded stage is
answered R times by a fresh interpreter that imports the ClientApp (with that
side's mod) and handles the one message (with bytecode compiled, as
``bench.import_cost`` explains). Reported per stage: the medians of the
import and of the handling (wall time inside the child, interpreter start
excluded: the same for both), and ours / Flower's ratio of their sum.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
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

from bench.import_cost import child_env
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


def _fedavg_server(n: int, m: int, workflow: Any) -> ServerApp:
    """One FedAvg round over all ``n`` nodes of an ``m``-zero model, through ``workflow``."""
    server = ServerApp()
    init = [np.zeros(m, dtype=np.float32)]

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n,
                          min_available_clients=n,
                          initial_parameters=ndarrays_to_parameters(init))
        legacy = LegacyContext(context, config=ServerConfig(num_rounds=1), strategy=strategy,
                               client_manager=SimpleClientManager())
        DefaultWorkflow(fit_workflow=workflow)(grid, legacy)

    return server


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

    server = _fedavg_server(n, m, SecAggPlusWorkflow(clipping_range=1.0, max_weight=100))
    return server, ClientApp(client_fn=client_fn, mods=[timer, mod])


def run(n: int, m: int) -> dict[str, Any]:
    """Median mod time per stage (seconds, training excluded) for one round at (n, m)."""
    seen: dict[str, list[float]] = defaultdict(list)
    server, client = _apps(n, m, SecAggPlusMod(cache=False), seen)
    run_inprocess(server, client, n, seed=1)
    return {"clients": n, "dim": m,
            "median_s": {stage: statistics.median(v) for stage, v in sorted(seen.items())}}


# -- fresh processes: ours vs Flower's mod -------------------------------------------------------

_CHILD = """
import sys, time
t0, c0 = time.perf_counter(), time.process_time()
import numpy as np
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from flwr.common.serde import context_from_proto, message_from_proto
from flwr.proto.message_pb2 import Context as PC, Message as PM
{mod_import}

class C(NumPyClient):
    def fit(self, parameters, config):
        return [p + np.float32(0.01) for p in parameters], 10, {{}}

app = ClientApp(client_fn=lambda context: C().to_client(), mods=[mod])
t1, c1 = time.perf_counter(), time.process_time()
msg = message_from_proto(PM.FromString(open(sys.argv[1], "rb").read()))
ctx = context_from_proto(PC.FromString(open(sys.argv[2], "rb").read()))
reply = app(msg, ctx)
t2, c2 = time.perf_counter(), time.process_time()
assert not reply.has_error(), reply.error
print(t1 - t0, t2 - t1, c1 - c0, c2 - c1)
"""
_MOD_IMPORT = {"ours": "from secagg.flower import secaggplus_mod as mod",
               "flower": "from flwr.client.mod import secaggplus_mod as mod"}


def _record(side: str, n: int, m: int, folder: Path) -> list[str]:
    """Run one round with ``side``'s workflow and mod; save node 0's stage messages and
    Contexts as they arrived. Returns the stage names in order."""
    from flwr.client.mod import secaggplus_mod as flower_mod
    from flwr.common.serde import context_to_proto, message_to_proto
    from flwr.server.workflow import SecAggPlusWorkflow as FlowerWorkflow

    from secagg.flower import secaggplus_mod

    stages: list[str] = []

    def recorder(msg: Message, ctxt: Context, call_next: Callable[..., Message]) -> Message:
        if int(ctxt.node_config["partition-id"]) == 0 and msg.metadata.message_type.startswith(
                "train"):
            name = f"{len(stages)}"
            (folder / f"{side}-{name}.msg").write_bytes(
                message_to_proto(msg).SerializeToString())
            (folder / f"{side}-{name}.ctx").write_bytes(
                context_to_proto(ctxt).SerializeToString())
            stages.append(name)
        return call_next(msg, ctxt)

    mod = secaggplus_mod if side == "ours" else flower_mod
    client = ClientApp(client_fn=lambda context: _Client([]).to_client(),
                       mods=[recorder, mod])
    workflow = (SecAggPlusWorkflow(clipping_range=1.0, max_weight=100) if side == "ours"
                else FlowerWorkflow(num_shares=n, reconstruction_threshold=n // 2 + 1,
                                    clipping_range=1.0, max_weight=100))
    server = _fedavg_server(n, m, workflow)

    run_inprocess(server, client, n, seed=1)
    return stages


def fresh(n: int, m: int, repeats: int) -> dict[str, Any]:
    """Per stage, median import and handling time in fresh processes, ours and Flower's."""
    out: dict[str, Any] = {"clients": n, "dim": m, "repeats": repeats, "stages": []}
    env = child_env()  # with bytecode, as an installed package has (bench.import_cost)
    for side in ("ours", "flower"):  # untimed warm-up: writes that bytecode
        subprocess.run([sys.executable, "-c", _MOD_IMPORT[side]], check=True, env=env)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        recorded = {side: _record(side, n, m, folder) for side in ("ours", "flower")}
        count = min(len(v) for v in recorded.values())
        for i in range(count):
            row: dict[str, Any] = {"stage": i}
            samples: dict[str, list[list[float]]] = {"ours": [], "flower": []}
            for rep in range(repeats):
                for side in (("ours", "flower") if rep % 2 == 0 else ("flower", "ours")):
                    code = _CHILD.format(mod_import=_MOD_IMPORT[side])
                    res = subprocess.run(
                        [sys.executable, "-c", code, str(folder / f"{side}-{i}.msg"),
                         str(folder / f"{side}-{i}.ctx")],
                        capture_output=True, text=True, check=True, env=env)
                    samples[side].append([float(x) for x in res.stdout.split()])
            for side, values in samples.items():
                for j, name in enumerate(("import", "handle", "import_cpu", "handle_cpu")):
                    row[f"{side}_{name}_s"] = statistics.median(v[j] for v in values)
                row[f"{side}_total_s"] = statistics.median(v[0] + v[1] for v in values)
                row[f"{side}_total_cpu_s"] = statistics.median(v[2] + v[3] for v in values)
            row["ratio_total"] = row["ours_total_s"] / row["flower_total_s"]
            row["ratio_total_cpu"] = row["ours_total_cpu_s"] / row["flower_total_cpu_s"]
            out["stages"].append(row)
    for kind in ("total", "total_cpu"):
        for side in ("ours", "flower"):
            out[f"{side}_sum_{kind}_s"] = sum(r[f"{side}_{kind}_s"] for r in out["stages"])
        out[f"ratio_sum_{kind}"] = out[f"ours_sum_{kind}_s"] / out[f"flower_sum_{kind}_s"]
    return out


def _print_fresh(r: dict[str, Any]) -> None:
    print(f"n = {r['clients']}, m = {r['dim']}: one node's stages, each in a fresh process "
          f"(median of {r['repeats']}; import + handling, interpreter start excluded; "
          "wall | CPU seconds)")
    names = ["advertise-keys", "share-keys", "masked-input", "unmask"]
    for row in r["stages"]:
        name = names[row["stage"]] if row["stage"] < len(names) else str(row["stage"])
        cells = []
        for side in ("ours", "flower"):
            cells.append(f"{side} {row[f'{side}_import_s']:.3f}+{row[f'{side}_handle_s']:.3f}"
                         f" | {row[f'{side}_import_cpu_s']:.3f}+{row[f'{side}_handle_cpu_s']:.3f}")
        print(f"  {name:<15} {'   '.join(cells)}   ratio {row['ratio_total']:.2f} | "
              f"{row['ratio_total_cpu']:.2f}")
    print(f"  all stages      ours {r['ours_sum_total_s']:.3f} | {r['ours_sum_total_cpu_s']:.3f}"
          f"   flower {r['flower_sum_total_s']:.3f} | {r['flower_sum_total_cpu_s']:.3f}"
          f"   ratio {r['ratio_sum_total']:.2f} | {r['ratio_sum_total_cpu']:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--dims", default="10000,100000",
                        help="comma-separated model sizes (default 10000,100000)")
    parser.add_argument("--fresh", type=int, default=0, metavar="R",
                        help="also time each stage in R fresh processes, ours vs Flower's mod")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    dims = [int(m) for m in args.dims.split(",")]
    if args.fresh:
        fresh_results = [fresh(args.clients, m, args.fresh) for m in dims]
        if args.json:
            print(json.dumps(fresh_results, indent=2))
            return 0
        for r in fresh_results:
            _print_fresh(r)
        return 0
    results = [run(args.clients, m) for m in dims]
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

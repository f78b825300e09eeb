"""Flower deployment engine: our secure aggregation against Flower 1.42's own, side by side.

``secagg bench flower --engine deployment`` starts a ``flower-superlink`` and
``--nodes`` ``flower-supernode`` processes on 127.0.0.1 (``bench/flower_deployment.py``,
the harness the deployment test uses), runs the example app
(``examples/flower``) for ``--rounds`` rounds with Flower's ``secaggplus_mod`` /
``SecAggPlusWorkflow`` and then, on a fresh SuperLink and SuperNodes, with ours.
The two runs differ only in the run-config switch ``secagg-impl``, which chooses
the two imports; both use the complete graph (``num_shares = N``) with
t = 0.6 N rounded up, at least a majority (:func:`threshold`: 6 of 10, 3 of 4), clip 8,
2**22 levels, no dropouts.
``--dim m`` pads the model to m parameters (clients return the padding unchanged).

Reported per implementation, from the app's ``results-dir`` and ``timing-dir``:

* wall time per round (server side: from one round's end to the next, evaluation
  included) and of the whole ``flwr run``;
* per stage, the server's wait for that stage's replies (send to last reply);
* the process start cost: in the deployment engine every message starts a fresh
  ClientApp process; ``process_age`` is how long it ran before the mod was called
  (interpreter, Flower, the app), ``mod_import`` the import of the chosen mod
  module, ``mod`` the time inside the mod (at masked-input it includes training).

Times on a shared machine move with its load: the JSON records ``loadavg``; the
ratio ours / Flower is the number to read, both measured in the same invocation.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import common
from bench.common import fmt
from bench.flower_deployment import REPO_ROOT, Deployment, DeploymentError, Stopped
from bench.report import STANDALONE_MARK, write_standalone_section
from secagg.rounds import Round

SUITE = "flower-deployment"
TITLE = "Flower deployment engine: ours vs Flower 1.42's SecAgg+ (issue 19)"
IMPLS = ("flower", "secagg")
#: stage labels of both implementations' messages -> the protocol round (secagg.rounds)
STAGES = {
    "setup": Round.ADVERTISE_KEYS, "advertise-keys": Round.ADVERTISE_KEYS,
    "share_keys": Round.SHARE_KEYS, "share-keys": Round.SHARE_KEYS,
    "collect_masked_vectors": Round.MASKED_INPUT, "masked-input": Round.MASKED_INPUT,
    "unmask": Round.UNMASKING,
}
#: parameters of the example's model (softmax regression on 8x8 digits: 64 x 10 + 10)
BASE_DIM = 650
ORDER = [r.label for r in (Round.ADVERTISE_KEYS, Round.SHARE_KEYS, Round.MASKED_INPUT,
                           Round.UNMASKING)]


def label(stage: str) -> str:
    """A stage name of either implementation as our round label ("other" if none)."""
    rnd = STAGES.get(stage)
    return rnd.label if rnd is not None else "other"


def mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def threshold(nodes: int) -> int:
    """t for N nodes: 0.6 N rounded up, and more than N / 2 (our workflow refuses less,
    e.g. the fraction 0.6 of 4 nodes, 2)."""
    return max(math.ceil(0.6 * nodes), nodes // 2 + 1)


def run_config(impl: str, nodes: int, rounds: int, dim: int, work: Path) -> dict[str, Any]:
    return {"num-server-rounds": rounds, "num-partitions": nodes, "num-shares": nodes,
            "reconstruction-threshold": threshold(nodes), "min-cohort": min(nodes, 10), "dim": dim,
            "secagg-impl": impl, "results-dir": str(work / "results"),
            "timing-dir": str(work / "timing")}


def summarize(impl: str, work: Path, run_seconds: float) -> dict[str, Any]:
    """One implementation's row from its results-dir and timing-dir."""
    report = json.loads((work / "results" / "results.json").read_text(encoding="utf-8"))
    rounds = [r for r in report["rounds"] if r["round"] > 0]
    stage: dict[str, list[float]] = defaultdict(list)
    for r in rounds:
        for s in r["stages"]:
            stage[label(s["stage"])].append(s["seconds"])
    client: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in (work / "timing").glob("client-*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            t = json.loads(line)
            key = label(t["stage"])
            for field in ("process_age_s", "mod_import_s", "mod_s"):
                if t.get(field) is not None:
                    client[key][field].append(t[field])
                    client["all"][field].append(t[field])
    return {
        "impl": impl,
        "run_seconds": run_seconds,
        "round_seconds": [r["seconds"] for r in rounds],
        "round_seconds_mean": mean([r["seconds"] for r in rounds]),
        "final_accuracy": rounds[-1].get("accuracy") if rounds else None,
        "stage_seconds": {k: mean(v) for k, v in stage.items()},
        "client": {k: {f: mean(v) for f, v in d.items()} for k, d in client.items()},
        "messages": len(client["all"]["mod_s"]),
    }


def run_impl(impl: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Fresh SuperLink and SuperNodes, one ``flwr run`` of the app with ``impl``."""
    work = scratch / impl
    with Deployment(work / "deployment", args.nodes) as deployment:
        result = deployment.run(run_config(impl, args.nodes, args.rounds, args.dim, work),
                                timeout=args.timeout, name=f"flwr-run-{impl}")
        if not result.ok:
            raise DeploymentError(f"{impl}: run ended {result.status} (flwr run exit "
                                  f"{result.returncode})\n{deployment.logs_tail()}")
    return summarize(impl, work, result.seconds)


def ratios(rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """ours / Flower for the round time and each stage (< 1: ours is faster)."""
    by = {r["impl"]: r for r in rows}
    if set(by) != set(IMPLS):
        return {}
    ours, theirs = by["secagg"], by["flower"]

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    out = {"round": ratio(ours["round_seconds_mean"], theirs["round_seconds_mean"]),
           "run": ratio(ours["run_seconds"], theirs["run_seconds"])}
    for stage in ORDER:
        out[stage] = ratio(ours["stage_seconds"].get(stage), theirs["stage_seconds"].get(stage))
    return out


def table(payload: Mapping[str, Any]) -> list[str]:
    """The markdown table of one run (also printed)."""
    rows = payload["rows"]
    names = {"flower": "Flower 1.42", "secagg": "ours"}
    head = ["", *(names[r["impl"]] for r in rows), "ours / Flower"]
    r = payload["ratios"]
    lines = [common.table_row(head), common.table_row(["---"] * len(head))]

    def add(name: str, values: list[float | None], ratio: float | None, spec: str = ".2f"
            ) -> None:
        lines.append(common.table_row([name, *(fmt(v, spec) for v in values),
                                       fmt(ratio, ".2f")]))

    add("round wall (s, mean)", [x["round_seconds_mean"] for x in rows], r.get("round"))
    add("flwr run wall (s)", [x["run_seconds"] for x in rows], r.get("run"))
    for stage in ORDER:
        add(f"server wait, {stage} (s)", [x["stage_seconds"].get(stage) for x in rows],
            r.get(stage))
    for field, name in (("process_age_s", "ClientApp process start to mod (s)"),
                        ("mod_import_s", "mod import (s)")):
        add(name, [x["client"].get("all", {}).get(field) for x in rows], None, ".3f")
    for stage in ORDER:
        add(f"in mod, {stage} (s)", [x["client"].get(stage, {}).get("mod_s") for x in rows],
            None, ".3f")
    add("final accuracy", [x["final_accuracy"] for x in rows], None, ".3f")
    return lines


def stem(payload: Mapping[str, Any]) -> str:
    """File name stem of one configuration's results: ``flower-deployment-n10-m650``."""
    return f"{SUITE}-n{payload['nodes']}-m{payload['dim'] or BASE_DIM}"


def configuration(payload: Mapping[str, Any]) -> list[str]:
    """One configuration's paragraph, table and plot."""
    m = payload["machine"]
    plot = stem(payload).replace("-", "_") + ".png"
    return [
        f"### N = {payload['nodes']}, m = {payload['dim'] or BASE_DIM}", "",
        f"`{payload['command']}` ({m.get('date')}): {payload['rounds']} rounds, load "
        f"average {', '.join(f'{x:.1f}' for x in m.get('loadavg') or [])} at the end.",
        "", *table(payload), "", f"![{plot}](results/{plot})", ""]


def markdown(results: Path) -> str:
    """The section: every configuration whose JSON is in ``results``, smallest first."""
    payloads = [json.loads(p.read_text(encoding="utf-8"))
                for p in results.glob(f"{SUITE}-n*-m*.json")]
    payloads.sort(key=lambda p: (p["nodes"], p["dim"] or BASE_DIM))
    lines = [
        f"_{STANDALONE_MARK}: `secagg bench flower --engine deployment [--nodes N] "
        "[--dim m]`; numbers in `bench/results/flower-deployment-n*-m*.json`._",
        "",
        "Each configuration: one SuperLink and N SuperNodes, all on 127.0.0.1, the example "
        "app once with Flower's `secaggplus_mod`/`SecAggPlusWorkflow` and once with ours, "
        "each on fresh processes; complete graph, t = 0.6 N, no dropouts. Every message "
        "starts a fresh ClientApp process, so process start and imports weigh on both "
        "(see `bench/flower_deployment_suite.py`). Flower's mod import reads ~0 because its "
        "ClientApp runtime has imported `flwr.client.mod` before the mod runs; ours is "
        "imported on top of that. The machine is shared: read the ratios, not the seconds.",
        "",
    ]
    for payload in payloads:
        lines += configuration(payload)
    return common.with_machine(lines[:-1], payloads[-1]["machine"] if payloads else {})


def precompile() -> None:
    """Byte-compile our sources and the example once, as ``pip install`` does for an
    installed package (and did for Flower's), so no timed process compiles them."""
    import compileall

    for folder in ("secagg", "fl", "examples/flower"):
        compileall.compile_dir(str(REPO_ROOT / folder), quiet=1)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``secagg bench flower --engine deployment``."""
    parser = argparse.ArgumentParser(prog="secagg bench flower --engine deployment",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10, help="SuperNodes (default 10)")
    parser.add_argument("--dim", type=int, default=0,
                        help="model parameters m (default 0: the task's own 650)")
    parser.add_argument("--rounds", type=int, default=2, help="FL rounds (default 2)")
    parser.add_argument("--impl", choices=[*IMPLS, "both"], default="both",
                        help="which secure aggregation to run (default both)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds one flwr run may take (default 1800)")
    parser.add_argument("--quick", action="store_true",
                        help="3 nodes, 1 round, temporary folder, no README section")
    parser.add_argument("--out", default=None, help="output folder (default bench/results)")
    parser.add_argument("--no-plots", action="store_true", help="JSON only")
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.rounds = 3, 1
    if args.nodes < 3:
        parser.error("--nodes must be at least 3")
    out = common.output_dir(args, SUITE)
    rows = []
    precompile()
    with tempfile.TemporaryDirectory(prefix="secagg-deploy-bench-") as tmp:
        for impl in (IMPLS if args.impl == "both" else (args.impl,)):
            print(f"{impl}: {args.nodes} SuperNodes, {args.rounds} rounds...", file=sys.stderr)
            try:
                rows.append(run_impl(impl, args, Path(tmp)))
            except DeploymentError as exc:
                print(f"secagg bench flower --engine deployment: {exc}", file=sys.stderr)
                return 1
            except Stopped as exc:  # SIGTERM/SIGHUP: the deployment's processes are gone
                print(f"secagg bench flower --engine deployment: {exc}", file=sys.stderr)
                return 128 + exc.signum
    given = sys.argv[1:] if argv is None else list(argv)
    payload = {"suite": SUITE, "quick": args.quick, "machine": common.machine(),
               "command": common.command_line("flower", ["--engine", "deployment", *given]),
               "nodes": args.nodes, "dim": args.dim, "rounds": args.rounds, "rows": rows,
               "ratios": ratios(rows)}
    print("\n".join(table(payload)))
    files = [common.write_json(out / f"{stem(payload)}.json", payload)]
    if not args.no_plots:
        from bench import plots

        files.extend(plots.plot_suite(SUITE, payload, out))
    if not args.quick and args.out is None:
        write_standalone_section(out.parent / "README.md", TITLE, markdown(out))
        files.append(out.parent / "README.md")
    print(f"wrote {', '.join(str(f) for f in files)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared plumbing of the benchmark suites: output folders, files, progress, one session.

Every suite writes one JSON file (the machine, the command, every measured row),
one CSV of the rows and its PNG plots. A full run writes into ``bench/results/``
(committed with the report); ``--quick`` runs write into a fresh temporary
folder (or ``--out``), so a smoke test never overwrites the published numbers; that
folder is removed when the process exits (:func:`quick_dir`; ``--out DIR`` keeps them).

Times on the shared 2-core machine are noisy, so every claim is a ratio measured
in the same run: ours against the hardware floor (measured beside each session
by :func:`secagg.sim.simulate`), and ours against Flower on the same inputs.
"""

from __future__ import annotations

import argparse
import atexit
import csv
import datetime as dt
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from secagg.config import SessionConfig
from secagg.measure import simulate
from secagg.rounds import Round
from secagg.sim import SimulationReport

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
#: Inputs are quantized updates with Flower's default 2**22 levels, so that the very
#: same integer vectors can be fed to Flower (see bench/flower_runner.py).
QUANT_LEVELS = 1 << 22
MODULUS = 1 << 32
DROP_ROUNDS = ("advertise", "share-keys", "masked-input", "unmask")


def machine() -> dict[str, Any]:
    """What ran the numbers: the report must say so next to every table."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "arch": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(terse=True),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        # other jobs on a shared machine move absolute times: say how busy it was
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


@dataclass(frozen=True)
class SessionCase:
    """One session a suite runs: its row label, n clients, m-element vectors, the
    fraction that drops, where they drop and the graph (suites add their own fields)."""

    name: str
    n: int
    m: int
    dropout: float
    graph: str = "complete"
    drop_at: str = "masked-input"


def suite_parser(suite: str, doc: str | None) -> argparse.ArgumentParser:
    """The argument parser of ``secagg bench SUITE``: its module docstring as the
    description (kept as written) and the options every suite shares."""
    parser = argparse.ArgumentParser(prog=f"secagg bench {suite}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    return parser


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Options every suite shares, so `secagg bench SUITE` reads the same everywhere."""
    parser.add_argument("--quick", action="store_true",
                        help="small n and m (seconds), written to a temporary folder removed "
                             "at exit (CI; --out DIR keeps the files)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results for a full run, "
                             "a new temporary folder with --quick)")
    parser.add_argument("--seed", type=int, default=1, help="seed for inputs and dropouts")
    parser.add_argument("--threads", type=int, default=None,
                        help="server worker threads (default: number of cores)")
    parser.add_argument("--no-plots", action="store_true", help="write JSON and CSV only")


def quick_dir(prefix: str) -> Path:
    """A fresh temporary folder for a ``--quick`` run, removed when the process exits.

    Quick runs are smoke tests: their files are read (or printed) during the run and are
    not worth keeping; leaving one folder per run in the system's temp directory is how
    CI machines fill up. ``--out DIR`` is the way to keep them.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def output_dir(args: argparse.Namespace, suite: str) -> Path:
    """Where this run writes: ``--out``, else a temp folder for --quick (removed at exit),
    else bench/results."""
    if args.out:
        path = Path(args.out)
    elif args.quick:
        path = quick_dir(f"secagg-bench-{suite}-")
    else:
        path = RESULTS_DIR
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a refusal is one line and exit status 2, never a traceback
        print(f"secagg bench {suite}: refused: --out {path}: cannot create the folder "
              f"({exc.strerror})", file=sys.stderr)
        raise SystemExit(2) from None
    return path


def command_line(suite: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces this run, as the report prints it."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["secagg", "bench", suite, *args])


def write_json(path: Path, payload: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(payload, indent=1, sort_keys=True, default=_jsonable) + "\n")
    return path


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """One line per row; nested values (per-round dicts) are JSON-encoded in their cell."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in columns})
    return path


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=_jsonable)
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class Progress:
    """A one-line progress bar with ETA on stderr for long suites.

    On a terminal it redraws one line; otherwise (CI logs, pipes) it prints one
    line per finished case, so a long full run still shows that it is alive.
    ``quiet`` silences it (tests).
    """

    def __init__(self, total: int, title: str, *, quiet: bool = False) -> None:
        self.total = max(1, total)
        self.title = title
        self.done = 0
        self.start = time.perf_counter()
        self.quiet = quiet
        self.tty = sys.stderr.isatty()

    def step(self, label: str) -> None:
        """Mark one more case finished (``label`` says which)."""
        self.done += 1
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        frac = self.done / self.total
        bar = "#" * int(frac * 24)
        line = (f"{self.title} [{bar:<24}] {self.done}/{self.total} "
                f"{elapsed:6.0f}s elapsed, ~{eta:.0f}s left  {label}")
        if self.tty:
            sys.stderr.write("\r" + line[:150].ljust(150))
            if self.done == self.total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def quantized_input(seed: int, u: int, m: int) -> np.ndarray:
    """Client u's update: m integers in [0, 2**22), the same as bench/flower_runner.make_q."""
    q = np.random.default_rng([seed, u]).integers(0, QUANT_LEVELS, m, dtype=np.int64)
    return q.astype(np.uint32)


def make_config(n: int, m: int, graph: str, *, dropout: float, k: int | None = None,
                t: int | None = None) -> SessionConfig:
    """SecAgg (complete, t = floor(n/2)+1 unless given) or SecAgg+ (finder's k, t at the
    declared dropout rate and 5% corruption, unless both given)."""
    kwargs: dict[str, Any] = {"min_cohort": min(10, max(3, n))}
    if graph == "complete":
        kwargs["threshold"] = t
    elif k is not None and t is not None:
        kwargs.update(degree=k, threshold=t)
    return SessionConfig.create(range(1, n + 1), m, MODULUS, graph=graph,
                                dropout_rate=min(dropout, 0.89), corruption_rate=0.05,
                                **kwargs)


def drop_exact(n: int, rate: float, rng: np.random.Generator) -> list[int]:
    """round(rate * n) distinct clients, chosen at random (the required configurations)."""
    count = round(rate * n)
    return sorted(int(u) for u in rng.choice(np.arange(1, n + 1), size=count, replace=False))


def run_ours(config: SessionConfig, dropped: Iterable[int], drop_at: str, *, seed: int,
             threads: int | None, measure_memory: bool = True,
             measure_floor: bool = True) -> tuple[dict[str, Any], SimulationReport]:
    """One session of our library on the quantized inputs; returns (row, full report)."""
    dropped = sorted(dropped)
    m = config.dim
    start = time.perf_counter()
    report = simulate(config, lambda u: quantized_input(seed, u, m),
                      {Round.from_label(drop_at): set(dropped)}, threads=threads,
                      measure_memory=measure_memory, measure_floor_time=measure_floor)
    wall = time.perf_counter() - start
    return session_row(config, report, dropped, drop_at, wall), report


def session_row(config: SessionConfig, report: SimulationReport, dropped: Sequence[int],
                drop_at: str, wall: float) -> dict[str, Any]:
    """The measured fields of one session, flat, in the names the report uses."""
    n, m = config.n, config.dim
    senders = max(1, report.included)
    masked = report.bytes_up_per_round.get("masked-input", 0.0) * n / senders
    return {
        "n": n,
        "m": m,
        "graph": report.graph,
        "k": report.degree,
        "t": report.threshold,
        "dropout": len(dropped) / n,
        "dropped": len(dropped),
        "drop_at": drop_at,
        "exact": report.exact,
        "aborted": report.aborted,
        "included": report.included,
        "server_seconds": report.server_seconds,
        "floor_seconds": report.floor_seconds,
        "server_to_floor": report.server_to_floor,
        "full_floor_seconds": report.full_floor_seconds,
        "server_to_full_floor": report.server_to_full_floor,
        "client_seconds_mean": report.client_seconds_mean,
        "bytes_up_per_client": report.bytes_up_per_client,
        "bytes_down_per_client": report.bytes_down_per_client,
        "masked_bytes_per_element": masked / m,
        "wire_bound_bytes_per_element": math.ceil(math.log2(config.modulus)) / 8,
        "peak_server_mb": report.peak_server_mb,
        "threads": report.threads,
        "session_wall_seconds": wall,
    }


def finish(args: argparse.Namespace, out: Path, suite: str, payload: dict[str, Any],
           rows: Sequence[Mapping[str, Any]], argv: Sequence[str] | None) -> list[Path]:
    """Write the suite's JSON (with machine and command) and CSV; return the paths."""
    payload = {"suite": suite, "quick": bool(args.quick), "machine": machine(),
               "command": command_line(suite, argv), **payload}
    files = [write_json(out / f"{suite}.json", payload), write_csv(out / f"{suite}.csv", rows)]
    if not getattr(args, "no_plots", False):
        from bench import plots

        files.extend(plots.plot_suite(suite, payload, out))
    return files


def fmt(value: float | None, spec: str = ".3g") -> str:
    """Format a number for a table; '-' when it was not measured."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def pct(values: Sequence[float]) -> str:
    """Mean ± standard deviation of fractions, in percent, for a table cell."""
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}"


def table_row(cells: Sequence[Any]) -> str:
    """One markdown table row: ``| a | b | c |``."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def accuracy_cells(rows: Sequence[Mapping[str, Any]]) -> str:
    """The 'final secure | final plaintext' accuracy cells (%) of runs with a plaintext twin."""
    return (f"{pct([r['final_accuracy_secure'] for r in rows])} | "
            f"{pct([r['final_accuracy_plaintext'] for r in rows])}")


def bound_cell(rows: Sequence[Mapping[str, Any]]) -> str:
    """'yes' when every run's secure mean stayed within its quantization bound."""
    return "yes" if all(r["within_bound"] for r in rows) else "NO"


def with_machine(lines: list[str], m: Mapping[str, Any]) -> str:
    """A standalone suite's section: ``lines`` closed by the 'Machine: ...' sentence."""
    closing = f"Machine: {m.get('cpu')} ({m.get('cpu_count')} cores), Python {m.get('python')}."
    return "\n".join([*lines, "", closing])

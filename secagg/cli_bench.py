"""``secagg bench SUITE [options]``: the benchmark suites of ``bench/``.

The suites live in the repository's ``bench/`` folder, not in the installed
package (they need the source tree, its committed results and, for ``flower``,
a second virtual environment), so this command works from a source checkout:
the editable install used for development finds them next to ``secagg/``.
Each suite parses its own options (``secagg bench SUITE --help``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

#: suite name -> (module, entry point, one-line help)
SUITES: dict[str, tuple[str, str, str]] = {
    "scaling": ("bench.scaling", "main",
                "cost vs n, m, dropout, drop round and graph, with the floor beside each"),
    "dropout": ("bench.dropout", "main",
                "completion rate vs dropout rate against the prediction; recovery cost"),
    "flower": ("bench.flower", "main",
               "the same sessions through Flower 1.42's SecAgg+ (own venv), speedups"),
    "primitives": ("bench.wrap", "primitives_main",
                   "PRG vs raw AES-CTR, Shamir, X25519, accumulate kernels"),
    "protocol": ("bench.wrap", "protocol_main",
                 "the protocol issue's configurations with the floor beside each"),
    "report": ("bench.report", "main",
               "redraw bench/README.md and the plots from bench/results (--run: run all first)"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run a benchmark suite (scaling, dropout, flower, primitives, protocol, report)",
        description="Run a benchmark suite; results go to bench/results (full runs) or a "
        "temporary folder (--quick). Suites: "
        + "; ".join(f"{name}: {info[2]}" for name, info in SUITES.items()),
    )
    p.add_argument("suite", choices=sorted(SUITES), help="which suite")
    p.add_argument("suite_args", nargs=argparse.REMAINDER,
                   help="the suite's own options (see: secagg bench SUITE --help)")
    p.set_defaults(func=run)


def _entry(suite: str) -> Callable[[list[str]], int]:
    """Import the suite, adding the source checkout to the path if bench/ is not importable."""
    module_name, attr, _ = SUITES[suite]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        root = Path(__file__).resolve().parent.parent
        if exc.name not in ("bench", module_name) or not (root / "bench" / "__init__.py").exists():
            raise
        sys.path.insert(0, str(root))
        module = importlib.import_module(module_name)
    return getattr(module, attr)


def run(args: argparse.Namespace) -> int:
    try:
        main = _entry(args.suite)
    except ModuleNotFoundError as exc:
        print(f"secagg bench: needs a source checkout of secagg (bench/ not found: {exc})",
              file=sys.stderr)
        return 2
    return int(main(list(args.suite_args)) or 0)

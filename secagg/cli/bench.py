"""``secagg bench SUITE [options]``: the benchmark suites of ``bench/``.

The suites live in the repository's ``bench/`` folder, not in the installed
package (they need the source tree, its committed results and, for ``flower``,
a second virtual environment), so this command works from a source checkout:
the editable install used for development finds them next to ``secagg/``. They
are imported from that location (never by adding the checkout to ``sys.path``);
an installed ``secagg`` without a checkout refuses in one line (exit status 2).
Each suite parses its own options (``secagg bench SUITE --help``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import secagg
from secagg.cli.plugins import SubParsers

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
    "dp": ("bench.dp", "main",
           "distributed DP: error of the mean vs bits, wrap-around vs its bound"),
    "report": ("bench.report", "main",
               "redraw bench/README.md and the plots from bench/results (--run: run all first)"),
}


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "bench",
        help="run a benchmark suite (scaling, dropout, flower, primitives, protocol, dp, report)",
        description="Run a benchmark suite; results go to bench/results (full runs) or a "
        "temporary folder (--quick). Suites: "
        + "; ".join(f"{name}: {info[2]}" for name, info in SUITES.items()),
    )
    p.add_argument("suite", choices=sorted(SUITES), help="which suite")
    p.add_argument("suite_args", nargs=argparse.REMAINDER,
                   help="the suite's own options (see: secagg bench SUITE --help)")
    p.set_defaults(func=run)


class NoCheckoutError(Exception):
    """bench/ cannot be found: this secagg is not a source checkout (one-line refusal)."""


def checkout_root() -> Path | None:
    """The source checkout holding this ``secagg`` package, or None when it is installed.

    A checkout has ``pyproject.toml`` and ``bench/__init__.py`` beside ``secagg/``;
    an editable install (the development set-up) imports ``secagg`` from there.
    """
    root = Path(secagg.__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "bench" / "__init__.py").is_file():
        return root
    return None


def _bench_package(root: Path) -> ModuleType:
    """The checkout's ``bench`` package, imported from its location, never via ``sys.path``.

    If a ``bench`` is already imported (tests, ``python -m bench.X``) it must be this
    checkout's: another installed package of that name is refused, not run.
    """
    folder = root / "bench"
    loaded = sys.modules.get("bench")
    if loaded is not None:
        where = Path(loaded.__file__ or "").resolve().parent
        if where != folder.resolve():
            raise NoCheckoutError(f"another package named bench is imported from {where}")
        return loaded
    spec = importlib.util.spec_from_file_location(
        "bench", folder / "__init__.py", submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
        raise NoCheckoutError(f"{folder} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # so the suites' own `from bench.common import ...` finds it
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["bench"]
        raise
    return module


def _entry(suite: str) -> Callable[[list[str]], int]:
    """The suite's entry point, from the bench/ of the checkout this secagg runs from."""
    root = checkout_root()
    if root is None:
        raise NoCheckoutError("bench/ is not installed with the package")
    _bench_package(root)
    module_name, attr, _ = SUITES[suite]
    entry: Callable[[list[str]], int] = getattr(importlib.import_module(module_name), attr)
    return entry


def run(args: argparse.Namespace) -> int:
    try:
        main = _entry(args.suite)
    except NoCheckoutError as exc:
        print(f"secagg bench: needs a source checkout of secagg ({exc})", file=sys.stderr)
        return 2
    return int(main(list(args.suite_args)) or 0)

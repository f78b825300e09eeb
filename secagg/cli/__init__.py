"""The ``secagg`` command line: one module per command group, plus plugins.

Built-in commands come from this package (:mod:`secagg.cli.simulate`,
:mod:`secagg.cli.transport`, :mod:`secagg.cli.bench`, :mod:`secagg.cli.audit`,
:mod:`secagg.cli.dp`, :mod:`secagg.cli.quantize`).
Commands of applications built on the library (``secagg train``, from the ``fl``
trainer) are contributed through the ``secagg.commands`` entry-point group
(:mod:`secagg.cli.plugins`), so the library never imports its applications.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from secagg import __version__
from secagg.cli import audit, bench, dp, plugins, quantize, simulate, transport

__all__ = ["BUILTIN_COMMANDS", "build_parser", "main"]

#: the library's own commands; a plugin cannot take these names
BUILTIN_COMMANDS = frozenset({"simulate", "server", "client", "certs", "bench", "audit",
                              "dp", "quantize", "dequantize"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="secagg",
        description="Secure aggregation (SecAgg / SecAgg+) for federated learning.",
    )
    parser.add_argument("--version", action="version", version=f"secagg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    simulate.register(sub)
    # secagg train (from fl) and any other installed plugin
    plugins.register_plugins(sub, reserved=BUILTIN_COMMANDS)
    transport.register(sub)  # secagg server / client / certs (gRPC)
    quantize.register(sub)  # secagg quantize / dequantize: float updates <-> Z_R
    bench.register(sub)  # secagg bench SUITE (bench/ of a checkout: scaling, dropout, ...)
    audit.register(sub)  # secagg audit TRANSCRIPT | --attacks | --vectors DIR
    dp.register(sub)  # secagg dp plan (distributed differential privacy, spec §21)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, plugins.ANY_ARGS, False):
        # what parse_args does; only a missing plugin's placeholder takes any arguments
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return int(args.func(args) or 0)

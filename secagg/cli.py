"""The ``secagg`` command line (subcommands are registered by their modules)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from secagg import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="secagg",
        description="Secure aggregation (SecAgg / SecAgg+) for federated learning.",
    )
    parser.add_argument("--version", action="version", version=f"secagg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    from secagg import cli_simulate, cli_train

    cli_simulate.register(sub)
    cli_train.register(sub)
    from secagg import cli_transport  # secagg server / client / certs (gRPC)

    cli_transport.register(sub)
    from secagg import cli_bench  # secagg bench SUITE (bench/: scaling, dropout, flower, ...)

    cli_bench.register(sub)
    from secagg import cli_audit  # secagg audit TRANSCRIPT | --attacks | --vectors DIR

    cli_audit.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

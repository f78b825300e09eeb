"""``secagg attack``: the privacy-attack commands (contributed by ``fl`` as a plugin)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``attack`` subcommand (filled in by the privacy-attack work)."""
    parser = sub.add_parser("attack", help="privacy attacks (gradient inversion, membership)")
    parser.set_defaults(func=lambda args: 2)

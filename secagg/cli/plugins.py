"""Commands contributed by installed packages through the ``secagg.commands`` entry points.

The library must not depend on its applications: ``secagg train`` is the ``fl``
trainer's command, declared in the package metadata
(``[project.entry-points."secagg.commands"] train = "fl.cli:register"``) and found
here with :mod:`importlib.metadata`. An entry point's name is the command's name
and its object is ``register(subparsers)``, which adds that one subcommand (with
``set_defaults(func=...)``) exactly as the built-in command modules do.

A command the README documents (:data:`EXPECTED`) that no installed package
provides, or whose plugin cannot be imported, still parses, with any arguments,
and is refused in one line with exit status 2, saying how to get it.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import TypeAlias

#: the entry-point group a package declares its ``secagg`` subcommands in
GROUP = "secagg.commands"

#: namespace flag set by a placeholder command: it accepts any arguments (see ``main``)
ANY_ARGS = "_secagg_any_args"

#: documented plugin commands -> (help, how to get them)
EXPECTED: dict[str, tuple[str, str]] = {
    "train": ("federated training (FedAvg) with secure aggregation vs plaintext",
              "it comes with secagg's fl package: reinstall secagg from its source checkout "
              "(pip install -e .)"),
    "attack": ("privacy attacks on what a server holds (inversion, membership)",
               "it comes with secagg's fl package: reinstall secagg from its source checkout "
               "(pip install -e .)"),
}

#: the subparsers object ``secagg``'s commands are added to
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Register = Callable[[SubParsers], None]


def discover() -> list[EntryPoint]:
    """The installed ``secagg.commands`` entry points, by name (first of a name wins)."""
    found: dict[str, EntryPoint] = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        found.setdefault(ep.name, ep)
    return list(found.values())


def register_plugins(sub: SubParsers, reserved: Iterable[str] = ()) -> None:
    """Add every plugin command, then a refusing placeholder for each missing expected one.

    A plugin whose name is ``reserved`` (a built-in command) is skipped: the library's
    own commands cannot be replaced by an installed package.
    """
    taken = set(reserved)
    missing: dict[str, str] = {}
    for ep in discover():
        if ep.name in taken:
            continue
        try:
            register: Register = ep.load()
        except ImportError as exc:
            missing[ep.name] = f"its plugin {ep.value} cannot be imported ({exc})"
            continue
        register(sub)
        taken.add(ep.name)
    for name, (_, how) in EXPECTED.items():
        if name not in taken:
            missing.setdefault(name, f"no installed package provides it; {how}")
    for name, reason in missing.items():
        _placeholder(sub, name, reason)


def _placeholder(sub: SubParsers, name: str, reason: str) -> None:
    help_text = EXPECTED.get(name, ("plugin command",))[0]
    p = sub.add_parser(name, help=f"{help_text} (not available)", add_help=False,
                       description=f"secagg {name}: not available: {reason}")
    p.set_defaults(func=functools.partial(_refuse, name, reason), **{ANY_ARGS: True})


def _refuse(name: str, reason: str, args: argparse.Namespace) -> int:
    print(f"secagg {name}: not available: {reason}", file=sys.stderr)
    return 2

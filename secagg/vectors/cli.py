"""``python -m secagg.vectors generate|check DIR``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from secagg.vectors.check import check_vectors
from secagg.vectors.generate import generate

_DESCRIPTION = ("Test vectors: generate ``specs/vectors/*.json`` and check an implementation "
                "against them.")


def main(argv: Sequence[str] | None = None) -> int:
    """``generate DIR`` writes the files; ``check DIR`` prints one line per vector."""
    parser = argparse.ArgumentParser(prog="python -m secagg.vectors", description=_DESCRIPTION)
    parser.add_argument("command", choices=["generate", "check"])
    parser.add_argument("directory", type=Path, nargs="?", default=Path("specs/vectors"))
    args = parser.parse_args(argv)
    if args.command == "generate":
        for path in generate(args.directory):
            print(path)
        return 0
    results = check_vectors(args.directory)
    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    failed = sum(not ok for _, ok, _ in results)
    print(f"{len(results) - failed}/{len(results)} vectors reproduced")
    return 1 if failed else 0

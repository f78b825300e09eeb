"""Library output goes through ``logging``: only command-line code prints (issue 14).

Command-line code is the ``secagg/cli`` package, the ``fl`` command modules (``cli.py``,
``*_cli.py``) and a module's top-level ``main()`` (a ``python -m`` entry point, e.g.
``secagg.dp.vectors``, or the harness's dying client that reports events on stdout).
Everything else a caller imports must stay silent unless the caller configures logging.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _is_cli_module(path: Path) -> bool:
    rel = path.relative_to(ROOT)
    return rel.parts[:2] == ("secagg", "cli") or path.name == "cli.py" or path.stem.endswith(
        "_cli")


def prints_outside_main(source: str) -> list[int]:
    """Line numbers of ``print(...)`` calls outside a top-level ``def main``."""
    tree = ast.parse(source)
    allowed: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "main":
            allowed.update(id(n) for n in ast.walk(node))
    return [n.lineno for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"
            and id(n) not in allowed]


def test_the_scanner_finds_a_print() -> None:
    assert prints_outside_main("def f():\n    print('x')\n") == [2]
    assert prints_outside_main("def main():\n    def emit():\n        print(1)\n") == []
    assert prints_outside_main("import logging\nlogging.getLogger(__name__).info('x')\n") == []


def test_no_library_module_prints() -> None:
    offenders = []
    for package in ("secagg", "fl"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if _is_cli_module(path):
                continue
            for line in prints_outside_main(path.read_text(encoding="utf-8")):
                offenders.append(f"{path.relative_to(ROOT)}:{line}")
    assert offenders == [], "use a module logger (logging.getLogger(__name__)): " + ", ".join(
        offenders)

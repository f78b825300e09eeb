"""The library does not depend on its applications: ``secagg train`` is fl's plugin.

``secagg.cli`` discovers commands in the ``secagg.commands`` entry-point group; the
library's own modules never import ``fl``. A documented plugin command that is not
installed still parses and is refused in one line with exit status 2.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import secagg
from secagg.cli import BUILTIN_COMMANDS, build_parser, main, plugins

PACKAGE = Path(secagg.__file__).resolve().parent
PLUGIN_RAN: list[argparse.Namespace] = []


def _register_hello(sub: argparse._SubParsersAction) -> None:
    """A plugin for these tests: ``secagg hello --times N``."""
    p = sub.add_parser("hello", help="say hello")
    p.add_argument("--times", type=int, default=1)
    p.set_defaults(func=lambda args: PLUGIN_RAN.append(args) or 7)


def _ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=plugins.GROUP)


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_library_never_imports_fl() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            m for m in _imported_modules(path) if m == "fl" or m.startswith("fl."))
        for path in PACKAGE.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert "fl.data" in _imported_modules(Path(plugins.__file__).parents[2] / "fl" / "cli.py")


def test_train_is_declared_as_fl_plugin() -> None:
    """The installed metadata (pyproject's entry point) gives train to fl.cli:register."""
    by_name = {ep.name: ep.value for ep in plugins.discover()}
    assert by_name.get("train") == "fl.cli:register", (
        "secagg's metadata lacks the entry point: re-install it (pip install -e .)")
    assert "train" in build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]


def _one_line_refusal(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    return captured.err


def test_missing_train_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(plugins, "discover", list)
    for argv in (["train"], ["train", "--json", "--rounds", "2"], ["train", "--help"]):
        err = _one_line_refusal(capsys, argv)
        assert err.startswith("secagg train: not available: no installed package provides it")
        assert "pip install -e ." in err
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "train" in capsys.readouterr().out  # still listed, marked not available


def test_unimportable_plugin_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(plugins, "discover",
                        lambda: [_ep("train", "no_such_module_for_secagg:register")])
    err = _one_line_refusal(capsys, ["train", "--rounds", "1"])
    assert err.startswith("secagg train: not available: its plugin "
                          "no_such_module_for_secagg:register cannot be imported")
    assert main(["audit"]) == 2  # the other commands are unaffected


def test_a_plugin_adds_its_command_but_cannot_replace_a_builtin(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    hello = f"{__name__}:_register_hello"
    monkeypatch.setattr(plugins, "discover", lambda: [_ep("hello", hello), _ep("audit", hello)])
    PLUGIN_RAN.clear()
    assert main(["hello", "--times", "3"]) == 7
    assert PLUGIN_RAN[0].times == 3
    assert main(["audit"]) == 2  # still the library's audit: it needs an input
    assert "secagg audit: give exactly one of" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["hello", "--bogus"])  # a real command still rejects unknown options
    assert info.value.code == 2


def test_builtin_commands_are_the_library_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "discover", list)
    choices = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert choices - set(plugins.EXPECTED) == BUILTIN_COMMANDS


def test_unrecognized_arguments_are_still_usage_errors(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--no-such-option"])
    assert info.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["secagg", "secagg.cli"])
def test_python_dash_m(module: str) -> None:
    proc = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"secagg {secagg.__version__}"


def test_simulate_reports_a_negative_cohort_as_given(capsys: pytest.CaptureFixture[str]) -> None:
    from secagg.cli import main

    assert main(["simulate", "--clients", "-5", "--dim", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "got -5" in err and len(err.splitlines()) == 1

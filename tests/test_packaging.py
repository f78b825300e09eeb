"""Packaging facts a user relies on: one version, a typed package, a licence on disk."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import secagg

ROOT = Path(__file__).resolve().parent.parent


def test_one_source_for_the_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert importlib.metadata.version("secagg") == secagg.__version__


def test_license_is_an_spdx_expression_with_its_file() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert importlib.metadata.metadata("secagg")["License-Expression"] == "Apache-2.0"


def test_the_package_says_it_is_typed() -> None:
    assert (Path(secagg.__file__).parent / "py.typed").exists()

"""The README's code examples marked as tested run as written, so they cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- tested by tests/test_readme.py -->"
BLOCK = re.compile(re.escape(MARKER) + r"\s*```python\n(.*?)```", re.DOTALL)


def marked_blocks() -> list[str]:
    return BLOCK.findall(README.read_text(encoding="utf-8"))


def test_the_marked_examples_are_found() -> None:
    blocks = marked_blocks()
    assert len(blocks) == README.read_text(encoding="utf-8").count(MARKER)
    assert any("SecureAggregator" in b for b in blocks)
    assert any("ServerProtocol" in b for b in blocks)


@pytest.mark.parametrize("index", range(len(marked_blocks())))
def test_readme_example_runs(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    code = marked_blocks()[index]
    exec(compile(code, f"README.md example {index + 1}", "exec"), {"__name__": "__readme__"})
    assert "round aborted" not in capsys.readouterr().out

"""A progress bar on stderr for the long-running commands (``secagg simulate``, ``secagg train``).

Drawn by tqdm, never by hand: one bar per stage, replaced when the stage changes and
wiped when closed (``leave=False``), so the tables the commands print on stdout stay
clean. Callers create one only when stderr is a terminal.
"""

from __future__ import annotations

import sys
from typing import Never

from tqdm import tqdm

__all__ = ["StageBar"]


class StageBar:
    """One tqdm bar per stage on stderr; :meth:`update` is a ``(stage, done, total)``
    progress callback with ``done`` counted from 0, as :mod:`secagg.sim` reports it."""

    def __init__(self) -> None:
        self._bar: tqdm[Never] | None = None  # no iterable: counted by update()
        self._stage = ""

    def update(self, stage: str, done: int, total: int) -> None:
        if total <= 0:
            return
        bar = self._bar
        if bar is None or stage != self._stage or total != bar.total:
            self.close()
            bar = tqdm(total=total, desc=stage, file=sys.stderr, leave=False, dynamic_ncols=True)
            self._bar, self._stage = bar, stage
        bar.update(done + 1 - bar.n)

    def close(self) -> None:
        """Wipe the bar (before printing a line, or at the end); a later update draws anew."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

"""Optional dependencies, imported when first needed, with a one-line message when missing.

The core install carries only what the protocol needs. Features beyond it live in
pyproject extras: ``train`` (scikit-learn's bundled data sets and matplotlib's PNG
plots, for ``secagg train`` and ``secagg attack``), ``torch``, ``flower``, ``dp`` and
``ray``. Code that needs one calls :func:`require` at the point of use instead of
importing at module level, so ``secagg simulate``, ``server``, ``client``, ``audit`` and
``dp plan`` work without them, and a missing one is refused as a
:class:`~secagg.errors.MissingExtraError` naming the ``pip install`` that fixes it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from secagg.errors import MissingExtraError

__all__ = ["install_hint", "require"]


def install_hint(extra: str) -> str:
    """The command that installs ``extra`` (quoted for POSIX shells)."""
    return f"pip install 'secagg[{extra}]'"


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra``.

    ``purpose`` says what needed it, e.g. ``"secagg train's data sets"``. The message
    is one line: the missing top-level package, what needed it and the install hint.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = (exc.name or module).partition(".")[0]
        raise MissingExtraError(
            f"{purpose} needs {missing}, which is not installed: {install_hint(extra)}"
        ) from None

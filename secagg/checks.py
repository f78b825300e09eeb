"""Shared argument checks: integers that are not booleans, ranges, client ids.

``True`` is an ``int`` in Python, so ``isinstance(x, int)`` alone would accept
it as a count or an id; every check here refuses ``bool`` explicitly. One place
for these keeps the refusal messages and the bool rule the same everywhere.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TypeGuard

import numpy as np

from secagg.errors import ConfigError, SecAggError

__all__ = [
    "MAX_ID", "check_id", "is_int_like", "is_plain_int", "is_plain_number", "is_plain_rate",
    "require_int",
]

#: Largest client id (ids are u32 on the wire, 0 is reserved; spec §2.1).
MAX_ID = (1 << 32) - 1


def is_plain_int(value: object) -> TypeGuard[int]:
    """A Python ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_plain_number(value: object) -> TypeGuard[int | float]:
    """A Python ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_plain_rate(value: object) -> TypeGuard[int | float | Fraction]:
    """A rate as callers give it: an ``int``, ``float`` or exact ``Fraction``, not a ``bool``."""
    return isinstance(value, int | float | Fraction) and not isinstance(value, bool)


def is_int_like(value: object) -> TypeGuard[int | np.integer]:
    """A Python or numpy integer that is not a (Python or numpy) boolean."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def require_int(
    value: object,
    name: str,
    low: int | None = None,
    high: int | None = None,
    *,
    error: type[SecAggError] = ConfigError,
    numpy: bool = True,
) -> int:
    """``value`` as an ``int`` if it is an integer (numpy ones too unless ``numpy=False``)
    within ``[low, high]`` (either bound optional); else raise ``error`` naming ``name``."""
    ok = is_int_like(value) if numpy else is_plain_int(value)
    if not ok:
        raise error(f"{name} must be an int")
    ivalue: int = int(value)  # type: ignore[call-overload]  # checked above
    if (low is not None and ivalue < low) or (high is not None and ivalue > high):
        if high is None:
            bound = f">= {low}"
        elif low is None:
            bound = f"<= {high}"
        else:
            bound = f"between {low} and {high}"
        raise error(f"{name} must be {bound}")
    return ivalue


def check_id(value: object, what: str = "client id", *,
             error: type[SecAggError] = ConfigError) -> int:
    """A protocol client id: an int (not bool) in ``[1, 2**32 - 1]`` (spec §2.1).

    The one definition used by message decoding (``error=MessageDecodeError``),
    trust stores and configs, so every layer refuses the same ids the same way.
    """
    if not is_plain_int(value):
        raise error(f"{what} must be an int")
    if not 1 <= value <= MAX_ID:
        raise error(f"{what} must be in [1, 2**32 - 1]")
    return value

"""Declared rates to client counts, rounded toward the safe side (spec §2.5, §6.4).

A dropout or corruption *rate* is what a deployment declares; the protocol needs
*counts* of clients. Rounding a count down under-provisions: a config declaring
``9/23`` corrupt among 23 clients that assumes 8 picks a threshold 9 corrupt
clients can meet. So every count here is ``ceil(rate * n)``, computed exactly
(:class:`fractions.Fraction`), except that a product within the *resolution* of
the rate above an integer is that integer: a float ``9/23`` (stored as 391304
ppm, or as the decimal ``0.391304347826087``) times 23 means 9 clients, never 8
and never 10.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Final

#: Rates are stored in sessions as parts per million (spec §2.1).
PPM: Final = 1_000_000

#: Resolution of a float rate written as its shortest decimal ``repr``: 17
#: significant digits, so ``rate * n`` is off by far less than 1e-9 for any
#: cohort up to 10**6 clients.
FLOAT_SLACK: Final = Fraction(1, 10**9)


def safe_count(rate: Fraction, n: int, slack: Fraction = FLOAT_SLACK) -> int:
    """``ceil(rate * n)``, treating a product within ``slack`` above an integer as that integer."""
    return max(0, math.ceil(rate * n - slack))


def count_from_ppm(ppm: int, n: int) -> int:
    """Clients among ``n`` that a rate stored as ``ppm`` parts per million declares.

    The ppm value is the rate rounded to the nearest millionth, so the rate the
    caller meant lies within half a ppm of it; the count is the smallest whole
    number of clients consistent with that, rounded up otherwise (``ceil``).
    """
    return safe_count(Fraction(ppm, PPM), n, Fraction(n, 2 * PPM))

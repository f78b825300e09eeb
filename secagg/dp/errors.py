"""Errors of the distributed-DP layer (spec §21), placed in the library's hierarchy.

``BelowSurvivorFloorError`` is an :class:`~secagg.errors.AbortError`: a round whose
included count fell below the survivor floor carries less noise than the privacy
target needs, so its sum is never released (§21.6).
"""

from __future__ import annotations

from secagg.errors import AbortError, ConfigError


class DPConfigError(ConfigError):
    """A distributed-DP setting is unsafe (wrap-around, error, bit width) or inconsistent."""


class BelowSurvivorFloorError(AbortError):
    """Fewer clients were included than the survivor floor the noise was sized for."""


class DependencyMissingError(DPConfigError):
    """An optional dependency (the ``dp`` extra) is needed and not installed."""

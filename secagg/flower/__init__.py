"""Drop-in secure aggregation for Flower apps (extra ``secagg[flower]``, flwr 1.42).

Client: ``ClientApp(client_fn=..., mods=[secaggplus_mod])``. Server, legacy
strategies: ``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))``; message-API
strategies: ``strategy.start(grid=SecAggGrid(grid, SecAggPlusWorkflow(...)), ...)``.
The names are Flower's own (``flwr.client.mod.secaggplus_mod``,
``flwr.server.workflow.SecAggPlusWorkflow``), so switching is a change of import.
:func:`run_inprocess` runs a ServerApp against ClientApps in this process
without Ray. See the README section "Flower" for what maps to what and what
Flower still sends in clear. ``DPOptions`` (``secagg.flower.dp``) given to both the
workflow and the mod (or the run config's ``dp-*`` keys) adds distributed DP.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from secagg.errors import SecAggError


class FlowerNotInstalledError(ImportError, SecAggError):
    """flwr is not installed: ``pip install 'secagg[flower]'``."""


try:
    import flwr  # noqa: F401  (only to tell a missing extra apart from other errors)
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise FlowerNotInstalledError(
        "secagg.flower needs Flower: pip install 'secagg[flower]' (flwr 1.42)"
    ) from exc

# The names below load their module on first use (PEP 562): a ClientApp process imports
# only the mod (the deployment engine starts one per message), never the server
# workflow, the in-process runner or what they import.
_LAZY = {
    "DPOptions": "secagg.flower.dp",
    "DPRoundReport": "secagg.flower.dp",
    "RECORD_KEY": "secagg.flower.common",
    "SessionParams": "secagg.flower.common",
    "Stage": "secagg.flower.common",
    "InProcessGrid": "secagg.flower.inprocess",
    "run_inprocess": "secagg.flower.inprocess",
    "SecAggPlusMod": "secagg.flower.mod",
    "secaggplus_mod": "secagg.flower.mod",
    "FlowerRoundOutcome": "secagg.flower.workflow",
    "SecAggGrid": "secagg.flower.workflow",
    "SecAggPlusWorkflow": "secagg.flower.workflow",
}

if TYPE_CHECKING:
    from secagg.flower.common import RECORD_KEY, SessionParams, Stage
    from secagg.flower.dp import DPOptions, DPRoundReport
    from secagg.flower.inprocess import InProcessGrid, run_inprocess
    from secagg.flower.mod import SecAggPlusMod, secaggplus_mod
    from secagg.flower.workflow import FlowerRoundOutcome, SecAggGrid, SecAggPlusWorkflow


def __getattr__(name: str) -> object:
    """Import the submodule that defines ``name`` (after the flwr check above)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'secagg.flower' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "RECORD_KEY",
    "DPOptions",
    "DPRoundReport",
    "FlowerNotInstalledError",
    "FlowerRoundOutcome",
    "InProcessGrid",
    "SecAggGrid",
    "SecAggPlusMod",
    "SecAggPlusWorkflow",
    "SessionParams",
    "Stage",
    "run_inprocess",
    "secaggplus_mod",
]

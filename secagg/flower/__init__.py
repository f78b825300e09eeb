"""Drop-in secure aggregation for Flower apps (extra ``secagg[flower]``, flwr 1.42).

Client: ``ClientApp(client_fn=..., mods=[secaggplus_mod])``. Server, legacy
strategies: ``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))``; message-API
strategies: ``strategy.start(grid=SecAggGrid(grid, SecAggPlusWorkflow(...)), ...)``.
The names are Flower's own (``flwr.client.mod.secaggplus_mod``,
``flwr.server.workflow.SecAggPlusWorkflow``), so switching is a change of import.
:func:`run_inprocess` runs a ServerApp against ClientApps in this process
without Ray. See the README section "Flower" for what maps to what and what
Flower still sends in clear.
"""

from __future__ import annotations

from secagg.errors import SecAggError


class FlowerNotInstalledError(ImportError, SecAggError):
    """flwr is not installed: ``pip install 'secagg[flower]'``."""


try:
    import flwr  # noqa: F401  (only to tell a missing extra apart from other errors)
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise FlowerNotInstalledError(
        "secagg.flower needs Flower: pip install 'secagg[flower]' (flwr 1.42)"
    ) from exc

# after the check, so a missing extra reads as FlowerNotInstalledError, not a bare flwr import
from secagg.flower.common import RECORD_KEY, SessionParams, Stage  # noqa: E402
from secagg.flower.inprocess import InProcessGrid, run_inprocess  # noqa: E402
from secagg.flower.mod import SecAggPlusMod, secaggplus_mod  # noqa: E402
from secagg.flower.workflow import FlowerRoundOutcome, SecAggGrid, SecAggPlusWorkflow  # noqa: E402

__all__ = [
    "RECORD_KEY",
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

"""Deployment API: secure aggregation over gRPC for any training loop (spec §17.6).

Between :class:`~secagg.aggregator.SecureAggregator` (every client in one
process: a simulation) and the raw transport (``secagg server`` / ``secagg
client`` sum vectors each client quantized itself), this package lets a training
loop send float updates from separate processes and get their weighted mean back:

* :class:`DeploymentServer` runs one session per training round over mTLS and
  returns the decoded weighted mean in the model's shapes, with who was included
  and who dropped (:class:`RoundResult`; :class:`RoundAborted` when a session aborts);
* :class:`DeploymentClient` takes a list of arrays (or a torch ``state_dict``)
  and a weight, quantizes it with the session's agreed parameters and takes part
  (:class:`SubmitResult`);
* :class:`AggregationParams` are those parameters; they, the array names and
  shapes and the global model are bound into each session id, and a client
  refuses a session that does not match (:class:`ParameterMismatchError`).

Modules: :mod:`~secagg.deploy.params` (parameters, binding, checks: pure
functions), :mod:`~secagg.deploy.server`, :mod:`~secagg.deploy.client`. The
protocol itself stays in :mod:`secagg.client` / :mod:`secagg.server`; this
package moves their messages through :mod:`secagg.transport`. Importing it
imports gRPC.
"""

from secagg.deploy.client import ClientStoppedError, DeploymentClient, SubmitResult
from secagg.deploy.params import AggregationParams, ParameterMismatchError, model_digest
from secagg.deploy.server import DeploymentServer, RoundAborted, RoundResult

__all__ = [
    "AggregationParams",
    "ClientStoppedError",
    "DeploymentClient",
    "DeploymentServer",
    "ParameterMismatchError",
    "RoundAborted",
    "RoundResult",
    "SubmitResult",
    "model_digest",
]

"""Flower 1.42's own SecAgg / SecAgg+ code, driven in-process for one session.

This file runs inside the separate Flower virtual environment (``.venv-flower``,
made by ``secagg bench flower``), never in ours: it imports only flwr, numpy and
the standard library, so Flower's pinned dependencies never meet ours. The
parent (:mod:`bench.flower`) starts it as a subprocess with a JSON spec on
stdin and reads one JSON object from stdout.

What runs is Flower's code, unchanged: the client side is its ``secaggplus_mod``
(the mod a ``ClientApp(mods=[secaggplus_mod])`` uses), the server side is the
four stage methods of ``SecAggPlusWorkflow`` / ``SecAggWorkflow`` called in the
same order as ``SecAggPlusWorkflow.__call__`` does, with Flower's own FedAvg
strategy and client manager. Only the transport is replaced by an in-memory
``Grid`` that, like a real SuperLink, serializes every message to protobuf bytes
and back (messages must be copies: the mod mutates what it receives), so byte
counts are Flower's wire payloads. Dropped clients simply never answer, which is
what Flower sees when a node goes away.

Timing: client seconds are the time inside each node's message handling
(decode, the mod, encode of the reply) excluding the stand-in for training;
server seconds are each stage's wall time minus the client time spent inside
it, so the server is billed for its own encoding and decoding too.

Inputs are exact on Flower's quantization grid (x = q / 2**18 - 8 with integer
q in [0, 2**22), num_examples = max_weight), so Flower's stochastic rounding is
deterministic and the integer sum S = sum q can be recovered exactly from
Flower's float average: S = round((avg + 8) * 2**18 * |U|) for |U| < 1024.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

#: Flower's default quantization: clipping range 8, 2**22 levels, weights up to 1000.
CLIP = 8.0
QRANGE = 1 << 22
MAX_WEIGHT = 1000
#: Our drop-round names -> Flower's stage names.
STAGE_OF = {
    "advertise": "setup",
    "share-keys": "share_keys",
    "masked-input": "collect_masked_vectors",
    "unmask": "unmask",
}


def make_q(seed: int, u: int, m: int) -> np.ndarray:
    """Client u's quantized update; the parent generates the very same vectors."""
    return np.random.default_rng([seed, u]).integers(0, QRANGE, m, dtype=np.int64)


class _Meters:
    """What one Flower session cost: client time and bytes per node and per stage."""

    def __init__(self, nodes: list[int]) -> None:
        self.client = 0.0
        self.train = 0.0
        self.client_time: dict[int, float] = dict.fromkeys(nodes, 0.0)
        self.up: dict[str, int] = {}
        self.down: dict[str, int] = {}
        self.masked_bytes: list[int] = []
        self.client_errors: list[str] = []


def _make_grid(nodes: list[int], drop_stage: str, dropped: set[int],
               inputs: dict[int, np.ndarray], meters: _Meters) -> Any:
    """An in-memory Grid delivering each message to its node's mod through protobuf bytes."""
    from flwr.app import Context, Error, Message, RecordDict
    from flwr.client.mod import secaggplus_mod
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
    from flwr.common.serde import message_from_proto, message_to_proto
    from flwr.compat.common import recorddict_compat as compat
    from flwr.proto.message_pb2 import Message as ProtoMessage  # pylint: disable=E0611
    from flwr.serverapp.grid import Grid

    contexts = {
        u: Context(run_id=1, node_id=u, node_config={}, state=RecordDict(), run_config={})
        for u in nodes
    }
    gone: set[int] = set()

    def train(msg: Message, ctxt: Context) -> Message:
        """Stand-in for local training: return this client's fixed update."""
        start = time.perf_counter()
        u = ctxt.node_id
        fitres = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([inputs[u]]), MAX_WEIGHT, {})
        out = Message(compat.fitres_to_recorddict(fitres, keep_input=True), reply_to=msg)
        meters.train += time.perf_counter() - start
        return out

    def handle(stage: str, u: int, data: bytes) -> bytes:
        """One node's side: decode, run the mod (errors become error replies), encode."""
        start, train_before = time.perf_counter(), meters.train
        incoming = message_from_proto(ProtoMessage.FromString(data))
        try:
            reply = secaggplus_mod(incoming, contexts[u], train)
        except Exception as exc:  # a ClientApp turns a mod's exception into an error reply
            meters.client_errors.append(f"{stage} node {u}: {type(exc).__name__}: {exc}")
            reply = Message(Error(code=0, reason=str(exc)), reply_to=incoming)
        rdata: bytes = message_to_proto(reply).SerializeToString()
        spent = time.perf_counter() - start - (meters.train - train_before)
        meters.client_time[u] += spent
        meters.client += spent
        return rdata

    class InMemoryGrid(Grid):
        """Delivers each message to its node's mod through protobuf bytes, in this process."""

        def __init__(self) -> None:
            self.stage = ""

        # The abstract Grid API; the workflow only calls send_and_receive.
        def set_run(self, run: Any) -> None:
            self._run = run

        @property
        def run(self) -> Any:
            return getattr(self, "_run", None)

        def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                           group_id: str, ttl: float | None = None) -> Message:
            return Message(content=content, dst_node_id=dst_node_id,
                           message_type=message_type, group_id=group_id, ttl=ttl)

        def get_node_ids(self) -> Iterable[int]:
            return list(nodes)

        def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
            raise NotImplementedError

        def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
            raise NotImplementedError

        def send_and_receive(self, messages: Iterable[Message], *,
                             timeout: float | None = None) -> Iterable[Message]:
            replies = []
            for msg in messages:
                data = message_to_proto(msg).SerializeToString()  # server encodes
                u = msg.metadata.dst_node_id
                meters.down[self.stage] = meters.down.get(self.stage, 0) + len(data)
                if u in gone or (self.stage == drop_stage and u in dropped):
                    gone.add(u)
                    continue
                rdata = handle(self.stage, u, data)
                meters.up[self.stage] = meters.up.get(self.stage, 0) + len(rdata)
                if self.stage == "collect_masked_vectors":
                    meters.masked_bytes.append(len(rdata))
                replies.append(message_from_proto(ProtoMessage.FromString(rdata)))  # server
            return replies

    return InMemoryGrid()


def _make_workflow(spec: dict[str, Any]) -> Any:
    """Flower's SecAgg (complete graph) or SecAgg+ (Harary) workflow for ``spec``."""
    from flwr.server.workflow.secure_aggregation.secagg_workflow import SecAggWorkflow
    from flwr.server.workflow.secure_aggregation.secaggplus_workflow import SecAggPlusWorkflow

    if spec["graph"] == "complete":
        return SecAggWorkflow(reconstruction_threshold=int(spec["t"]),
                              max_weight=float(MAX_WEIGHT))
    return SecAggPlusWorkflow(num_shares=int(spec["k"]) + 1,
                              reconstruction_threshold=int(spec["t"]),
                              max_weight=float(MAX_WEIGHT))


def _make_context(nodes: list[int], grid: Any) -> Any:
    """The ServerApp's legacy context: FedAvg over every node, a one-element global model."""
    from flwr.app import ConfigRecord, Context, RecordDict
    from flwr.common import ndarrays_to_parameters
    from flwr.compat.common import recorddict_compat as compat
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.compat.grid_client_proxy import GridClientProxy
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.server.workflow.constant import Key as WorkflowKey

    n = len(nodes)
    manager = SimpleClientManager()
    for u in nodes:
        manager.register(GridClientProxy(u, grid, 1))
    strategy = FedAvg(fraction_fit=1.0, min_fit_clients=n, min_available_clients=n,
                      fraction_evaluate=0.0)
    context = LegacyContext(
        Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={}),
        strategy=strategy, client_manager=manager,
    )
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: 1})
    # The global model sent with FitIns is one element, so model broadcast is not billed
    # to secure aggregation (our simulator sends no model either).
    context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
        ndarrays_to_parameters([np.zeros(1, dtype=np.float32)]), keep_input=True)
    return context


def _run_stages(workflow: Any, grid: Any, context: Any, state: Any, meters: _Meters
                ) -> tuple[dict[str, float], list[int], str | None]:
    """Exactly SecAggPlusWorkflow.__call__'s loop, timed per stage.

    Returns the server seconds per stage, whose inputs the sum holds, and the
    stage that failed (None when the session completed).
    """
    stages: list[tuple[str, Callable[..., bool]]] = [
        ("setup", workflow.setup_stage),
        ("share_keys", workflow.share_keys_stage),
        ("collect_masked_vectors", workflow.collect_masked_vectors_stage),
        ("unmask", workflow.unmask_stage),
    ]
    server_by_stage: dict[str, float] = {}
    masked_senders: list[int] = []
    for name, step in stages:
        grid.stage = name
        before_client, before_train = meters.client, meters.train
        start = time.perf_counter()
        ok = step(grid, context, state)
        wall = time.perf_counter() - start
        server_by_stage[name] = wall - (meters.client - before_client) - (
            meters.train - before_train)
        if name == "collect_masked_vectors":
            masked_senders = sorted(state.active_node_ids)  # whose inputs the sum holds
        if not ok:
            return server_by_stage, masked_senders, name
    return server_by_stage, masked_senders, None


def _check_sum(spec: dict[str, Any], context: Any, survivors: list[int],
               result: dict[str, Any]) -> None:
    """Recover the integer sum from Flower's float average and compare it with the truth."""
    from flwr.common import parameters_to_ndarrays
    from flwr.compat.common import recorddict_compat as compat
    from flwr.server.workflow.constant import MAIN_PARAMS_RECORD

    m, seed = int(spec["m"]), int(spec["seed"])
    record = context.state.array_records[MAIN_PARAMS_RECORD]
    avg = parameters_to_ndarrays(compat.arrayrecord_to_parameters(record, keep_input=True))[0]
    count = len(survivors)
    recovered = np.rint((avg.astype(np.float64) + CLIP) * float(1 << 18) * count).astype(
        np.int64) % (1 << 32)
    expected = np.zeros(m, dtype=np.int64)
    for u in survivors:
        expected += make_q(seed, u, m)
    expected %= 1 << 32
    result["exact"] = bool(recovered.shape == expected.shape
                           and np.array_equal(recovered, expected))
    result["expected_checksum"] = int(expected.sum() % (1 << 61))
    if spec.get("sum_path"):
        np.save(spec["sum_path"], recovered)


def run_session(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one Flower session described by ``spec``; return its measurements."""
    from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
    from flwr.supercore.task_identity import TaskIdentity

    logging.getLogger("flwr").setLevel(logging.CRITICAL)
    # What a ServerApp process gets from its runtime: the identity stamped on new messages.
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    n, m, seed = int(spec["n"]), int(spec["m"]), int(spec["seed"])
    nodes = list(range(1, n + 1))
    inputs = {u: (make_q(seed, u, m) / float(1 << 18) - CLIP).astype(np.float32) for u in nodes}
    meters = _Meters(nodes)
    grid = _make_grid(nodes, STAGE_OF[spec.get("drop_at", "masked-input")],
                      set(spec.get("dropped", [])), inputs, meters)
    context = _make_context(nodes, grid)
    state = WorkflowState()
    server_by_stage, survivors, failed_stage = _run_stages(
        _make_workflow(spec), grid, context, state, meters)
    active = [u for u in nodes if meters.client_time[u] > 0]
    result: dict[str, Any] = {
        "completed": failed_stage is None,
        "failed_stage": failed_stage,
        "client_errors": meters.client_errors[:5],
        "client_error_count": len(meters.client_errors),
        "n": n, "m": m, "graph": spec["graph"], "k": spec.get("k"), "t": spec["t"],
        "num_shares": state.num_shares, "threshold": state.threshold,
        "server_seconds": sum(server_by_stage.values()),
        "server_seconds_by_stage": server_by_stage,
        "client_seconds_mean": sum(meters.client_time[u] for u in active) / max(1, len(active)),
        "bytes_up_per_client": sum(meters.up.values()) / n,
        "bytes_down_per_client": sum(meters.down.values()) / n,
        "bytes_up_per_round": {k: v / n for k, v in meters.up.items()},
        "masked_bytes_per_element": (sum(meters.masked_bytes) / len(meters.masked_bytes) / m)
        if meters.masked_bytes else None,
        "included_ids": survivors,
        "exact": False,
    }
    if failed_stage is None:
        _check_sum(spec, context, survivors, result)
    return result


def main() -> int:
    """Read one JSON spec on stdin, print one JSON result on stdout."""
    spec = json.load(sys.stdin)
    print(json.dumps(run_session(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

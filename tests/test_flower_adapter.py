"""secagg.flower: our protocol as a drop-in for Flower 1.42's SecAgg+ (mod + workflow).

Flower's simulation engine needs Ray (``flwr[simulation]``), too heavy for CI, so
the ServerApp and ClientApps run in-process through :func:`secagg.flower.run_inprocess`:
the same app objects, every message through Flower's protobuf encoding, one
Context per node, exceptions turned into error replies; a dropping node simply
never answers the message of its round (what a server sees on a timeout).

Federation: 10 clients of scikit-learn's digits (``fl.data``), numpy softmax
regression, 3 FL rounds of FedAvg, two clients dropping every round at
different protocol rounds. Each round's global model must equal the plaintext
weighted FedAvg of the updates of the clients that were included, within the
quantization bound.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

pytest.importorskip("flwr", reason="the secagg[flower] extra (flwr 1.42) is not installed")

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.client import Client, NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters
from flwr.common.secure_aggregation.crypto.shamir import combine_shares
from flwr.common.secure_aggregation.secaggplus_constants import (
    RECORD_KEY_CONFIGS,
    RECORD_KEY_STATE,
    Key,
)
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import SimpleClientManager
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow
from flwr.server.workflow import SecAggPlusWorkflow as FlowerSecAggPlusWorkflow
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg as MessageFedAvg

from fl.data import FederatedData, federate
from fl.models import LogisticRegression
from secagg.config import SessionConfig
from secagg.errors import ConfigError
from secagg.flower import (
    RECORD_KEY,
    InProcessGrid,
    SecAggGrid,
    SecAggPlusMod,
    SecAggPlusWorkflow,
    Stage,
    run_inprocess,
    secaggplus_mod,
)
from secagg.messages import UnmaskRequest
from secagg.quantize import QuantizationConfig, error_bound

N = 10
ROUNDS = 3
CLIP = 8.0
QRANGE = 1 << 22
MAX_WEIGHT = 200  # every client holds < 200 training examples (1,797 * 0.75 / 10)
LR = 0.1
#: Flower's stage names for ours (the drop schedule is written in ours)
FLOWER_STAGE = {
    "advertise-keys": "setup", "share-keys": "share_keys",
    "masked-input": "collect_masked_vectors", "unmask": "unmask",
}
#: partition id -> the protocol round at which that client goes silent, every FL round
LATE_DROPS = {3: "masked-input", 7: "unmask"}  # Flower survives these two
EARLY_DROPS = {2: "advertise-keys", 5: "share-keys"}  # Flower's survivors crash on these


@pytest.fixture(autouse=True)
def _quiet_flower() -> None:
    logging.getLogger("flwr").setLevel(logging.WARNING)


@pytest.fixture(scope="module")
def data() -> FederatedData:
    return federate("digits", N, iid=True, seed=0)


# -- the Flower app: a NumPyClient and a legacy FedAvg ServerApp ------------------------------


@dataclass
class Ledger:
    """What the test sees that the server must not: each client's update per round."""

    updates: dict[tuple[int, int], tuple[list[np.ndarray], int, dict[str, float]]] = field(
        default_factory=dict)
    models: dict[int, list[np.ndarray]] = field(default_factory=dict)
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)


class Trainer(NumPyClient):
    """One epoch of SGD on the client's digits, seeded by (round, partition)."""

    def __init__(self, pid: int, data: FederatedData, ledger: Ledger) -> None:
        self.pid, self.client, self.ledger = pid, data.clients[pid + 1], ledger
        self.model = LogisticRegression(data.num_features, data.num_classes)

    def get_parameters(self, config: dict[str, object]) -> list[np.ndarray]:
        return self.model.get_weights()

    def fit(self, parameters: list[np.ndarray], config: dict[str, object]
            ) -> tuple[list[np.ndarray], int, dict[str, float]]:
        rnd = int(config["round"])  # type: ignore[call-overload]
        self.model.set_weights(parameters)
        self.model.fit(self.client.x_train, self.client.y_train, epochs=1, lr=LR, batch_size=32,
                       mu=0.0, rng=np.random.default_rng([rnd, self.pid]))
        weights = self.model.get_weights()
        m = self.model.evaluate(self.client.x_train, self.client.y_train)
        metrics = {"train_loss": m.loss, "train_accuracy": m.accuracy}
        self.ledger.updates[(rnd, self.pid)] = (weights, self.client.num_examples, metrics)
        return weights, self.client.num_examples, metrics


def client_app(data: FederatedData, ledger: Ledger, mod: Callable[..., Message],
               wire: list[RecordDict] | None = None) -> ClientApp:
    def client_fn(context: Context) -> Client:
        return Trainer(int(context.node_config["partition-id"]), data, ledger).to_client()

    def spy(msg: Message, ctxt: Context, call_next: Callable[..., Message]) -> Message:
        """Outermost mod: sees each reply exactly as it leaves the client."""
        reply = call_next(msg, ctxt)
        if wire is not None and reply.has_content():
            wire.append(reply.content)
        return reply

    return ClientApp(client_fn=client_fn, mods=[spy, mod])


def weighted_mean(metrics: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    total = sum(n for n, _ in metrics)
    return {k: sum(n * m[k] for n, m in metrics) / total for k in metrics[0][1]} if total else {}


def server_app(data: FederatedData, ledger: Ledger, fit_workflow: object) -> ServerApp:
    app = ServerApp()
    init = LogisticRegression(data.num_features, data.num_classes).get_weights()

    def record(rnd: int, parameters: list[np.ndarray], config: dict[str, object]) -> None:
        ledger.models[rnd] = [np.array(p, dtype=np.float64) for p in parameters]

    def fit_metrics(metrics: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
        out = weighted_mean(metrics)
        ledger.metrics[len(ledger.metrics) + 1] = out
        return out

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=N,
                          min_available_clients=N, initial_parameters=ndarrays_to_parameters(init),
                          evaluate_fn=record, on_fit_config_fn=lambda rnd: {"round": rnd},
                          fit_metrics_aggregation_fn=fit_metrics)
        legacy = LegacyContext(context, config=ServerConfig(num_rounds=ROUNDS),
                               strategy=strategy, client_manager=SimpleClientManager())
        DefaultWorkflow(fit_workflow=fit_workflow)(grid, legacy)  # type: ignore[arg-type]

    return app


def drop_rule(schedule: dict[int, str], record_key: str, flower_names: bool
              ) -> Callable[[int, int, Message], bool]:
    """Silence partition p at its scheduled protocol round (every FL round)."""
    def rule(node: int, pid: int, message: Message) -> bool:
        if pid not in schedule or not message.has_content():
            return False
        record = message.content.config_records.get(record_key)
        stage = FLOWER_STAGE[schedule[pid]] if flower_names else schedule[pid]
        return record is not None and record.get("stage") == stage
    return rule


def plaintext_fedavg(ledger: Ledger, rnd: int, clip: float) -> tuple[list[np.ndarray], list[int]]:
    """The oracle: FedAvg of the clipped updates of the clients whose update got in."""
    got = sorted(pid for (r, pid) in ledger.updates if r == rnd)
    total = sum(ledger.updates[(rnd, p)][1] for p in got)
    mean = [sum(ledger.updates[(rnd, p)][1] * np.clip(ledger.updates[(rnd, p)][0][i], -clip, clip)
                for p in got) / total for i in range(2)]
    return mean, got


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def run_federation(data: FederatedData, workflow: object, mod: Callable[..., Message],
                   schedule: dict[int, str], *, flower: bool = False,
                   wire: list[RecordDict] | None = None) -> tuple[Ledger, InProcessGrid]:
    ledger = Ledger()
    rule = drop_rule(schedule, RECORD_KEY_CONFIGS if flower else RECORD_KEY, flower)
    _, grid = run_inprocess(server_app(data, ledger, workflow),
                            client_app(data, ledger, mod, wire), N, seed=7, drop=rule)
    return ledger, grid


def ours(**extra: object) -> SecAggPlusWorkflow:
    """Flower's own constructor call, plus our keyword extras (which may override it)."""
    kwargs: dict[str, object] = {"num_shares": N, "reconstruction_threshold": 6,
                                 "clipping_range": CLIP, "quantization_range": QRANGE,
                                 "max_weight": MAX_WEIGHT}
    return SecAggPlusWorkflow(**{**kwargs, **extra})  # type: ignore[arg-type]


OUR_BOUND = error_bound(QuantizationConfig(clip=CLIP, bits=22, max_clients=N,
                                           max_weight=MAX_WEIGHT))


# -- 1. ten clients, two dropping at different rounds, three FL rounds ------------------------


@pytest.mark.parametrize(("schedule", "mod", "graph"), [
    (LATE_DROPS, secaggplus_mod, {}),
    # early dropouts, and every message replayed from the persisted state (as when
    # Flower runs each message in a fresh process)
    (EARLY_DROPS, SecAggPlusMod(cache=False), {}),
    # SecAgg+: a Harary graph from the parameter finder instead of num_shares = n
    (LATE_DROPS, secaggplus_mod, {"num_shares": None, "reconstruction_threshold": None,
                                  "graph": "harary"}),
], ids=["late-drops", "early-drops-replayed", "harary"])
def test_secure_fedavg_equals_plaintext_fedavg_with_dropouts(
        data: FederatedData, schedule: dict[int, str], mod: SecAggPlusMod,
        graph: dict[str, object]) -> None:
    workflow = ours(secure_metrics=("train_loss", "train_accuracy"), **graph)
    wire: list[RecordDict] = []
    ledger, grid = run_federation(data, workflow, mod, schedule, wire=wire)
    assert len(workflow.outcomes) == ROUNDS
    expected_graph = graph.get("graph", "complete")
    assert all(o.config.graph.value == expected_graph for o in workflow.outcomes)
    for rnd, outcome in enumerate(workflow.outcomes, start=1):
        mean, got = plaintext_fedavg(ledger, rnd, CLIP)
        late = {p for p, s in schedule.items() if s == "unmask"}
        assert got == sorted(set(range(N)) - (set(schedule) - late))
        assert len(outcome.included) == len(got)
        assert max_diff(ledger.models[rnd], mean) <= OUR_BOUND
        # num_examples and metrics came through the secure sum, not in clear
        assert outcome.aggregate is not None
        assert outcome.aggregate.total_weight == sum(ledger.updates[(rnd, p)][1] for p in got)
        plain = weighted_mean([ledger.updates[(rnd, p)][1:] for p in got])
        for key, value in plain.items():
            assert abs(ledger.metrics[rnd][key] - value) <= 100.0 / CLIP * OUR_BOUND
    assert len(grid.silenced) == 2 * ROUNDS  # the schedule did happen
    # no client sent parameters, a count or a metric: only our protocol bytes left it
    assert wire and all(
        not reply.array_records and not reply.metric_records
        and set(reply.config_records) == {RECORD_KEY} for reply in wire)


# -- 2. Flower's own SecAggPlusWorkflow with the same call: the same model -------------------


def test_flower_secaggplus_swapped_in_gives_the_same_model(data: FederatedData) -> None:
    flower_workflow = FlowerSecAggPlusWorkflow(num_shares=N, reconstruction_threshold=6,
                                               clipping_range=CLIP, quantization_range=QRANGE,
                                               max_weight=MAX_WEIGHT)
    from flwr.client.mod import secaggplus_mod as flower_mod

    theirs, _ = run_federation(data, flower_workflow, flower_mod, LATE_DROPS, flower=True)
    mine, _ = run_federation(data, ours(), secaggplus_mod, LATE_DROPS)
    for rnd in range(1, ROUNDS + 1):
        mean_t, got_t = plaintext_fedavg(theirs, rnd, CLIP)
        mean_m, got_m = plaintext_fedavg(mine, rnd, CLIP)
        assert got_t == got_m
        weights = sum(theirs.updates[(rnd, p)][1] / MAX_WEIGHT for p in got_t)
        flower_bound = len(got_t) * 2 * CLIP / QRANGE / weights + 1e-6  # Flower's own rounding
        assert max_diff(theirs.models[rnd], mean_t) <= flower_bound
        assert max_diff(mine.models[rnd], mean_m) <= OUR_BOUND
    # the two runs differ only by quantization noise carried through training (measured:
    # 6e-6 after 3 rounds; the bound allows each round's rounding on both sides, doubled)
    assert max_diff(theirs.models[ROUNDS], mine.models[ROUNDS]) <= 4 * ROUNDS * OUR_BOUND


# -- 3. a server that asks for both shares of a client ---------------------------------------


class BothSharesWorkflow(SecAggPlusWorkflow):
    """Malicious: every unmask request lists a victim both alive and dropped."""

    victim = 1

    def _outgoing(self, stage: Stage, client_id: int, message: object) -> object:
        if isinstance(message, UnmaskRequest) and self.victim in message.alive and (
                client_id != self.victim):
            return UnmaskRequest(message.alive, tuple(sorted({*message.dropped, self.victim})))
        return message


@pytest.mark.parametrize("cache", [True, False], ids=["cached", "replayed"])
def test_our_mod_refuses_a_request_for_both_shares(data: FederatedData, cache: bool) -> None:
    # in one request: every client asked for both shares of client 1 refuses
    workflow = BothSharesWorkflow(clipping_range=CLIP, max_weight=MAX_WEIGHT)
    ledger = Ledger()
    run_inprocess(server_app(data, ledger, workflow),
                  client_app(data, ledger, SecAggPlusMod(cache=cache)), N, seed=3)
    for outcome in workflow.outcomes:
        assert outcome.aggregate is None  # nobody handed anything over: nothing unmasked
        refusals = [f for f in outcome.failures if "both alive and dropped" in f]
        assert len(refusals) == N - 1
    # in a second request, after an honest unmasking: refused as well
    honest = SecAggPlusWorkflow(clipping_range=CLIP, max_weight=MAX_WEIGHT)
    _, grid = run_inprocess(server_app(data, Ledger(), honest),
                            client_app(data, Ledger(), SecAggPlusMod(cache=cache)), N, seed=3)
    assert honest.outcomes[-1].aggregate is not None
    node = sorted(grid.partition)[0]
    request = UnmaskRequest((1,), tuple(range(2, N + 1)))  # now the mask keys of the others
    content = RecordDict({RECORD_KEY: ConfigRecord({"stage": Stage.UNMASK.value,
                                                    "message": request.encode()})})
    reply = next(iter(grid.send_and_receive([Message(content, node, "train")])))
    assert reply.has_error() and "not expected" in reply.error.reason


def test_flowers_mod_hands_over_both_shares(data: FederatedData) -> None:
    """The same attack on Flower 1.42's mod: the server rebuilds both of a victim's secrets."""
    from flwr.client.mod import secaggplus_mod as flower_mod

    captured: list[Message] = []

    class Tamper:  # stands in for the grid during Flower's unmask stage only
        def __init__(self, inner: Grid, victim: int) -> None:
            self.inner, self.victim = inner, victim

        def send_and_receive(self, messages, *, timeout=None):
            batch = list(messages)
            for m in batch:
                cfg = m.content.config_records[RECORD_KEY_CONFIGS]
                cfg[Key.DEAD_NODE_ID_LIST] = [*cfg[Key.DEAD_NODE_ID_LIST], self.victim]
            replies = list(self.inner.send_and_receive(batch, timeout=timeout))
            captured.extend(replies)
            return replies

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

    class Malicious(FlowerSecAggPlusWorkflow):
        def unmask_stage(self, grid, context, state):
            victim = min(state.active_node_ids)
            self.victim = victim
            captured.clear()  # keep the last FL round's (the victim's state is that round's)
            try:
                return super().unmask_stage(Tamper(grid, victim), context, state)
            except Exception:
                return False

    ledger = Ledger()
    workflow = Malicious(num_shares=N, reconstruction_threshold=6, clipping_range=CLIP,
                         max_weight=MAX_WEIGHT)
    app = server_app(data, ledger, workflow)
    _, grid = run_inprocess(app, client_app(data, ledger, flower_mod), N, seed=5)
    victim = workflow.victim
    seeds, keys = [], []
    for reply in captured:
        cfg = reply.content.config_records[RECORD_KEY_CONFIGS]
        shares = [s for nid, s in zip(cfg[Key.NODE_ID_LIST], cfg[Key.SHARE_LIST], strict=True)
                  if nid == victim]
        if reply.metadata.src_node_id != victim:
            assert len(shares) == 2  # both the self-mask seed share and the mask-key share
            seeds.append(shares[0])
            keys.append(shares[1])
    state = grid.contexts[victim].state.config_records[RECORD_KEY_STATE]
    assert combine_shares(seeds[:6]) == state["rd_seed"]
    assert combine_shares(keys[:6]) == state["sk1"]


# -- the message-API strategies (flwr.serverapp.strategy) and plain requests -----------------


def test_message_api_strategy_through_secagg_grid(data: FederatedData) -> None:
    ledger = Ledger()
    init = LogisticRegression(data.num_features, data.num_classes).get_weights()
    workflow = ours(secure_metrics=("train_loss",))
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = MessageFedAvg(fraction_evaluate=0.0, min_train_nodes=N, min_available_nodes=N)
        result = strategy.start(SecAggGrid(grid, workflow), ArrayRecord(init), num_rounds=2)
        context.state.array_records["final"] = result.arrays
        context.state.metric_records["train"] = result.train_metrics_clientapp[2]

    capp = ClientApp(mods=[secaggplus_mod])

    @capp.train()
    def train(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        rnd = int(msg.content["config"]["server-round"])
        weights, n, metrics = Trainer(pid, data, ledger).fit(
            msg.content["arrays"].to_numpy_ndarrays(), {"round": rnd})
        return Message(RecordDict({"arrays": ArrayRecord(weights), "metrics": MetricRecord(
            {"num-examples": n, "train_loss": metrics["train_loss"]})}), reply_to=msg)

    context, _ = run_inprocess(app, capp, N, seed=11,
                               drop=drop_rule({4: "masked-input"}, RECORD_KEY, False))
    final = context.state.array_records["final"].to_numpy_ndarrays()
    mean, got = plaintext_fedavg(ledger, 2, CLIP)
    assert 4 not in got and len(got) == N - 1
    assert max_diff(final, mean) <= OUR_BOUND + 1e-12
    loss = weighted_mean([ledger.updates[(2, p)][1:] for p in got])["train_loss"]
    assert abs(context.state.metric_records["train"]["train_loss"] - loss) <= 1e-3


def test_plain_training_request_is_refused(data: FederatedData) -> None:
    """A server cannot skip secure aggregation and ask for the update in clear."""
    ledger = Ledger()
    app = server_app(data, ledger, None)  # Flower's default fit workflow: plaintext FitRes
    run_inprocess(app, client_app(data, ledger, secaggplus_mod), N, seed=1)
    assert not ledger.updates  # no client trained: every request was refused


def test_unsafe_flower_parameters_are_refused() -> None:
    """Flower's quick-start values (3 shares, threshold 2) cannot tolerate its own dropouts."""
    kind, degree, threshold = SecAggPlusWorkflow(num_shares=3,
                                                 reconstruction_threshold=2).graph_params(N)
    assert (kind.value, degree, threshold) == ("harary", 2, 2)
    # refused for the graph (k = 2 disconnects once the 5 % corrupt client, rounded up to
    # one, and the one dropout are removed) before the threshold is even looked at
    with pytest.raises(ConfigError, match=r"threshold|too small"):
        SessionConfig.create(range(1, N + 1), 8, 1 << 32, graph=kind, degree=degree,
                             threshold=threshold)
    with pytest.raises(ConfigError, match="power of two"):
        SecAggPlusWorkflow(quantization_range=1000)
    with pytest.raises(ConfigError, match="modulus too small"):
        SecAggPlusWorkflow(max_weight=1000, modulus_range=1 << 32).params(N)  # would wrap
    with pytest.raises(ConfigError, match="active mode"):
        SecAggPlusWorkflow(mode="active")


def test_the_example_app_runs(capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/flower: its ServerApp and ClientApp, in-process, with its two dropouts."""
    import importlib
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "examples/flower"))
    monkeypatch.delitem(sys.modules, "run", raising=False)
    run = importlib.import_module("run")
    assert run.main(["--rounds", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    accuracy = {int(r): float(a) for r, a in (line.split() for line in lines[1:4])}
    assert set(accuracy) == {0, 1, 2} and accuracy[2] > accuracy[0] + 0.3
    assert lines[-1].startswith("4 messages left unanswered")

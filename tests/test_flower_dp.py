"""Distributed DP in the Flower adapter (spec §21.12): the workflow plans, binds and
accounts; the mod checks and encodes. In process (secagg.flower.run_inprocess), no Ray.

Each client's update is a fixed vector (its norm around the clip), so the DP mean of a
round can be compared with the plaintext mean of the clipped updates of the clients
the session included.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest

pytest.importorskip("flwr", reason="the secagg[flower] extra (flwr 1.42) is not installed")

from flwr.app import Context, Message, RecordDict
from flwr.client import Client, NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import SimpleClientManager
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow
from flwr.serverapp import Grid, ServerApp

from secagg.dp.accountant import DPAccountant
from secagg.dp.params import DPParams
from secagg.errors import ConfigError, ProtocolError
from secagg.flower import RECORD_KEY, SecAggPlusMod, SecAggPlusWorkflow, run_inprocess
from secagg.flower.dp import (
    EPSILON_METRIC,
    DPOptions,
    check_session,
    dp_floor,
    options_from_run_config,
    unsampled_round_epsilon,
)

N = 10
SHAPES = ((20, 10), (10,))  # 210 parameters
DIM = 210


@pytest.fixture(autouse=True)
def _quiet_flower() -> None:
    logging.getLogger("flwr").setLevel(logging.ERROR)
    logging.getLogger("secagg.flower").setLevel(logging.ERROR)


def update_of(pid: int) -> list[np.ndarray]:
    """Partition ``pid``'s fixed update; some norms above the clip 1.0, some below."""
    rng = np.random.default_rng(pid)
    flat = rng.normal(size=DIM)
    flat *= (0.5 + 0.15 * pid) / np.linalg.norm(flat)
    return [flat[:200].reshape(SHAPES[0]), flat[200:]]


def clipped(pid: int, clip: float) -> np.ndarray:
    flat = np.concatenate([a.ravel() for a in update_of(pid)])
    norm = float(np.linalg.norm(flat))
    return flat * min(1.0, clip / norm)


class Adder(NumPyClient):
    def __init__(self, pid: int) -> None:
        self.pid = pid

    def fit(self, parameters: list[np.ndarray], config: dict[str, object]
            ) -> tuple[list[np.ndarray], int, dict[str, float]]:
        return [p + u for p, u in zip(parameters, update_of(self.pid), strict=True)], \
            17 + self.pid, {}


def client_app(mod_of: Callable[[int], SecAggPlusMod],
               wire: dict[int, list[RecordDict]] | None = None) -> ClientApp:
    def client_fn(context: Context) -> Client:
        return Adder(int(context.node_config["partition-id"])).to_client()

    def by_partition(msg: Message, ctxt: Context, call_next: Callable[..., Message]) -> Message:
        pid = int(ctxt.node_config["partition-id"])
        reply = mod_of(pid)(msg, ctxt, call_next)
        if wire is not None and reply.has_content():
            wire.setdefault(pid, []).append(reply.content)
        return reply

    return ClientApp(client_fn=client_fn, mods=[by_partition])


def server_app(workflow: SecAggPlusWorkflow, rounds: int, history: list[LegacyContext]
               ) -> ServerApp:
    app = ServerApp()
    init = [np.zeros(s) for s in SHAPES]

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=N,
                          min_available_clients=N,
                          initial_parameters=ndarrays_to_parameters(init))
        legacy = LegacyContext(context, config=ServerConfig(num_rounds=rounds),
                               strategy=strategy, client_manager=SimpleClientManager())
        history.append(legacy)
        DefaultWorkflow(fit_workflow=workflow)(grid, legacy)  # type: ignore[arg-type]

    return app


def drop_at_masked_input(per_round: dict[int, set[int]]) -> Callable[[int, int, Message], bool]:
    """Silence partitions ``per_round[r]`` at the masked-input stage of FL round r."""
    def rule(node: int, pid: int, message: Message) -> bool:
        if not message.has_content():
            return False
        record = message.content.config_records.get(RECORD_KEY)
        if record is None or record.get("stage") != "masked-input":
            return False
        return pid in per_round.get(int(message.metadata.group_id), set())
    return rule


def run(options: DPOptions, rounds: int = 1, *, mod_of: Callable[[int], SecAggPlusMod] | None
        = None, drops: dict[int, set[int]] | None = None,
        wire: dict[int, list[RecordDict]] | None = None
        ) -> tuple[SecAggPlusWorkflow, LegacyContext]:
    workflow = SecAggPlusWorkflow(num_shares=N, reconstruction_threshold=6, dp=options)
    own = SecAggPlusMod(dp=options)
    history: list[LegacyContext] = []
    run_inprocess(server_app(workflow, rounds, history),
                  client_app(mod_of or (lambda pid: own), wire), N, seed=3,
                  drop=drop_at_masked_input(drops or {}))
    return workflow, history[0]


def flat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


# -- 1. the mean ---------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["skellam", "ddg"])
def test_dp_mean_is_within_the_predicted_error(mechanism: str) -> None:
    options = DPOptions(mechanism=mechanism, epsilon=8.0, delta=1e-5, rounds=2, clip=1.0,
                        bits=16, expected_dropout=0.1)
    workflow, _ = run(options, rounds=2, drops={2: {4}})
    start = np.zeros(DIM)
    for rnd, outcome in enumerate(workflow.outcomes, start=1):
        assert outcome.aggregate is not None and outcome.dp is not None
        m = len(outcome.included)
        assert m == (N if rnd == 1 else N - 1)
        assert outcome.aggregate.total_weight == m  # uniform weights: the included count
        got = flat(outcome.aggregate.arrays) - start
        dropped = {4} if rnd == 2 else set()
        truth = np.mean([clipped(p, 1.0) for p in range(N) if p not in dropped], axis=0)
        predicted = outcome.dp.predicted_mse * N / m  # planned with all present
        err = float(np.sum((got - truth) ** 2))
        # a sum of DIM squared errors: within 1.5x its mean with overwhelming probability
        assert err < 1.5 * predicted, (err, predicted)
        assert err > 0.3 * predicted  # the noise is there
        start = flat(outcome.aggregate.arrays)


def test_large_epsilon_mean_is_close_to_the_plaintext_mean() -> None:
    workflow, _ = run(DPOptions(epsilon=1000.0, rounds=1, clip=1.0, bits=20))
    outcome = workflow.outcomes[0]
    assert outcome.aggregate is not None
    truth = np.mean([clipped(p, 1.0) for p in range(N)], axis=0)
    assert np.max(np.abs(flat(outcome.aggregate.arrays) - truth)) < 0.05


# -- 2. the client checks before it makes a key ----------------------------------------------


@pytest.mark.parametrize("other", [
    {"epsilon": 4.0}, {"clip": 0.5}, {"mechanism": "ddg"}, {"bits": 18}, {"rounds": 3},
    {"expected_dropout": 0.0}, {"delta": 1e-6},
], ids=lambda d: next(iter(d)))
def test_a_client_with_other_dp_params_refuses_before_any_key(other: dict[str, object]) -> None:
    options = DPOptions(epsilon=8.0, rounds=2, expected_dropout=0.1)
    odd = SecAggPlusMod(dp=replace(options, **other))  # type: ignore[arg-type]
    own = SecAggPlusMod(dp=options)
    wire: dict[int, list[RecordDict]] = {}
    workflow, _ = run(options, mod_of=lambda pid: odd if pid == 0 else own, wire=wire)
    outcome = workflow.outcomes[0]
    assert 0 not in wire  # not one reply with content: no key left partition 0
    assert len(outcome.included) == N - 1
    [line] = outcome.failures
    assert "advertise-keys" in line and "refused" in line


def test_a_client_without_dp_refuses_a_dp_session_and_one_with_dp_a_plain_one() -> None:
    options = DPOptions(epsilon=8.0, expected_dropout=0.1)
    plain, own = SecAggPlusMod(), SecAggPlusMod(dp=options)
    workflow, _ = run(options, mod_of=lambda pid: plain if pid == 0 else own)
    [line] = workflow.outcomes[0].failures
    assert "not configured for" in line
    # a DP client sampled by a workflow without DP: refused at the first stage too
    wf = SecAggPlusWorkflow(num_shares=N, reconstruction_threshold=6, clipping_range=8.0)
    history: list[LegacyContext] = []
    run_inprocess(server_app(wf, 1, history),
                  client_app(lambda pid: own if pid == 0 else plain), N, seed=3)
    [line] = wf.outcomes[0].failures
    assert "only with distributed DP" in line


def test_the_client_refuses_too_little_noise() -> None:
    """Everything as configured but the noise share: the ε check refuses it."""
    options = DPOptions(epsilon=8.0, rounds=2, expected_dropout=0.1)
    workflow, _ = run(options)
    outcome = workflow.outcomes[0]
    assert outcome.dp is not None
    params, config = outcome.dp.params, outcome.config
    check_session(params, options, config)  # the honest parameters pass
    weaker = replace(params, noise=params.noise * Fraction(9, 10))
    with pytest.raises(ProtocolError, match="epsilon"):
        check_session(weaker, options, config)
    with pytest.raises(ProtocolError, match="survivor floor"):
        check_session(replace(params, floor=params.floor + 1), options, config)


# -- 3. accounting ---------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["skellam", "ddg"])
def test_unsampled_epsilon_equals_the_accountant(mechanism: str) -> None:
    params = DPParams(mechanism, DIM, 1.0, 300.0, 16, Fraction(5000), 7, 10,  # type: ignore[arg-type]
                      min_block=16)
    for included in (7, 8, 10):
        acc = DPAccountant(params, 1e-5)
        for _ in range(3):
            acc.charge(included)
        assert unsampled_round_epsilon(params, included, 3, 1e-5) == pytest.approx(
            acc.epsilon, rel=1e-12)


@pytest.mark.parametrize("dropped", [0, 1, 3], ids=["0%", "10%", "30%"])
def test_epsilon_reported_is_the_accountants_over_the_included(dropped: int) -> None:
    options = DPOptions(epsilon=8.0, rounds=3, expected_dropout=0.3)
    drops = {r: set(range(1, 1 + dropped)) if r == 2 else set() for r in (1, 2, 3)}
    workflow, legacy = run(options, rounds=3, drops=drops)
    reports = [o.dp for o in workflow.outcomes]
    assert all(r is not None for r in reports)
    params = reports[0].params  # type: ignore[union-attr]
    acc = DPAccountant(params, options.delta)
    for outcome, report in zip(workflow.outcomes, reports, strict=True):
        assert report is not None and report.params == params
        charge = acc.charge(len(outcome.included))
        assert report.included == len(outcome.included)
        assert report.epsilon_round == pytest.approx(charge.epsilon_round, rel=1e-12)
        assert report.epsilon == pytest.approx(charge.epsilon_total, rel=1e-12)
    assert [len(o.included) for o in workflow.outcomes] == [N, N - dropped, N]
    eps = [r.epsilon_round for r in reports]  # type: ignore[union-attr]
    if dropped:
        assert eps[1] > eps[0] == pytest.approx(eps[2])  # fewer survivors: larger ε
    assert acc.epsilon <= options.epsilon  # the plan holds, dropouts within the floor
    # the strategy's history sees the cumulative ε of every round
    seen = [v for _, v in legacy.history.metrics_distributed_fit[EPSILON_METRIC]]
    assert seen == pytest.approx([r.epsilon for r in reports])  # type: ignore[union-attr]


def test_below_the_floor_the_round_is_refused_and_not_charged() -> None:
    options = DPOptions(epsilon=8.0, rounds=2, expected_dropout=0.1)  # floor 9
    workflow, _ = run(options, rounds=2, drops={1: {2, 5}})
    first, second = workflow.outcomes
    assert first.aggregate is None and first.abort_reason is not None
    assert "below the DP survivor floor 9" in first.abort_reason
    assert first.dp is not None and first.dp.epsilon_round is None and first.dp.epsilon == 0
    assert second.aggregate is not None and second.dp is not None
    assert second.dp.epsilon == pytest.approx(second.dp.epsilon_round)  # one charge only
    assert workflow.dp is not None and len(workflow.dp.charges) == 1


def test_fixed_size_sampling_is_charged_with_amplification() -> None:
    """``sampling="fixed"``: a cohort of n of ``population`` at q = n/population; the
    client checks the amplified claim, and the ε charged is the accountant's at that q."""
    options = DPOptions(epsilon=4.0, rounds=2, sampling="fixed", population=40)
    workflow, _ = run(options, rounds=1)
    report = workflow.outcomes[0].dp
    assert report is not None and report.params.sampling_rate == N / 40
    acc = DPAccountant(report.params, options.delta)
    assert report.epsilon == pytest.approx(acc.charge(N).epsilon_total, rel=1e-12)
    assert report.epsilon <= options.epsilon
    with pytest.raises(ConfigError, match="population"):
        DPOptions(sampling="fixed")


def test_the_budget_covers_the_planned_rounds_only() -> None:
    options = DPOptions(epsilon=8.0, rounds=1)
    with pytest.raises(ConfigError, match="budget"):
        run(options, rounds=2)


def test_a_client_counts_its_own_rounds() -> None:
    """A client sends at most ``rounds`` DP updates in a run, whatever the server plans:
    here the server plans 3 rounds, one client agreed to 1 (more noise than it needs is
    fine), so it takes part in round 1 and refuses rounds 2 and 3 before any key."""
    options = DPOptions(epsilon=8.0, rounds=3, expected_dropout=0.1)
    once = SecAggPlusMod(dp=replace(options, rounds=1))
    own = SecAggPlusMod(dp=options)
    workflow, _ = run(options, rounds=3, mod_of=lambda pid: once if pid == 0 else own)
    assert [len(o.included) for o in workflow.outcomes] == [N, N - 1, N - 1]
    for outcome in workflow.outcomes[1:]:
        [line] = outcome.failures
        assert "budget of 1 rounds is spent" in line and "advertise-keys" in line


# -- 4. options ------------------------------------------------------------------------------


def test_options_from_run_config_and_refusals() -> None:
    assert options_from_run_config({}) is None
    assert options_from_run_config({"dp": "none"}) is None
    got = options_from_run_config({"dp": "ddg", "dp-epsilon": 4.0, "dp-delta": 1e-6,
                                   "dp-clip": 0.5, "dp-bits": 18, "num-server-rounds": 7})
    assert got == DPOptions(mechanism="ddg", epsilon=4.0, delta=1e-6, clip=0.5, bits=18,
                            rounds=7)
    with pytest.raises(ConfigError, match="mechanism"):
        DPOptions(mechanism="laplace")
    with pytest.raises(ConfigError, match="secure_metrics"):
        SecAggPlusWorkflow(dp=DPOptions(), secure_metrics=("loss",))


def test_dp_floor_follows_the_expected_dropout() -> None:
    workflow = SecAggPlusWorkflow(num_shares=N, reconstruction_threshold=6)
    config = workflow.session_config(list(range(1, N + 1)), 16, 1 << 16)
    assert [dp_floor(config, e) for e in (0.0, 0.1, 0.35, 0.9)] == [10, 9, 7, 6]


# -- 5. the client path stays light ----------------------------------------------------------


def test_the_dp_client_path_loads_no_scipy() -> None:
    """The client's check and encoding (the mod's DP path) import neither scipy nor
    dp-accounting; the check can fail (the accountant does import scipy)."""
    code = """
import sys
from fractions import Fraction
import numpy as np
from secagg.config import SessionConfig, SessionSettings
from secagg.dp.params import DPParams
from secagg.flower.dp import DPOptions, check_session, encode_update
config = SessionConfig.create(list(range(1, 11)), 224, 1 << 16,
                              settings=SessionSettings.build(None), check_memory=False)
options = DPOptions(epsilon=1e6, rounds=1)
params = DPParams("skellam", 210, 1.0, 300.0, 16, Fraction(5000), 10, 10, min_block=16)
check_session(params, options, config)
out = encode_update([np.ones(210)], [np.zeros(210)], params, config)
assert out.shape == (224,), out.shape
print(sorted({m.split(".")[0] for m in sys.modules} & {"scipy", "dp_accounting"}))
if len(sys.argv) > 1:
    import secagg.dp.accountant
    print(sorted({m.split(".")[0] for m in sys.modules} & {"scipy", "dp_accounting"}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    out = subprocess.run([sys.executable, "-c", code, "control"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "['scipy']"


def test_message_api_strategy_gets_the_dp_mean_and_epsilon() -> None:
    """``strategy.start(SecAggGrid(grid, workflow))``: the one reply holds the DP model,
    the included count as its weight and the cumulative ε among its metrics."""
    from flwr.app import ArrayRecord, MetricRecord
    from flwr.serverapp.strategy import FedAvg as MessageFedAvg

    from secagg.flower import SecAggGrid

    options = DPOptions(epsilon=1000.0, rounds=2, clip=1.0, bits=20)
    workflow = SecAggPlusWorkflow(num_shares=N, reconstruction_threshold=6, dp=options)
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = MessageFedAvg(fraction_evaluate=0.0, min_train_nodes=N, min_available_nodes=N)
        result = strategy.start(SecAggGrid(grid, workflow),
                                ArrayRecord([np.zeros(s) for s in SHAPES]), num_rounds=2)
        context.state.array_records["final"] = result.arrays
        context.state.metric_records["train"] = result.train_metrics_clientapp[2]

    capp = ClientApp(mods=[SecAggPlusMod(dp=options)])

    @capp.train()
    def train(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        arrays = msg.content["arrays"].to_numpy_ndarrays()
        new = [a + u for a, u in zip(arrays, update_of(pid), strict=True)]
        return Message(RecordDict({"arrays": ArrayRecord(new), "metrics": MetricRecord(
            {"num-examples": 5 + pid})}), reply_to=msg)

    context, _ = run_inprocess(app, capp, N, seed=5)
    final = flat(context.state.array_records["final"].to_numpy_ndarrays())
    truth = 2 * np.mean([clipped(p, 1.0) for p in range(N)], axis=0)
    assert np.max(np.abs(final - truth)) < 0.05
    metrics = context.state.metric_records["train"]
    assert workflow.dp is not None
    assert metrics[EPSILON_METRIC] == pytest.approx(workflow.dp.epsilon)
    assert [o.aggregate.total_weight for o in workflow.outcomes if o.aggregate] == [N, N]


# -- 6. the example app ----------------------------------------------------------------------


def test_the_example_app_runs_with_dp(capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/flower with ``--dp skellam``: its dp-* run config reaches the workflow and
    every client's mod; one dropout a round is within the floor; ε spent <= the target."""
    import importlib
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "examples/flower"))
    monkeypatch.delitem(sys.modules, "run", raising=False)
    example = importlib.import_module("run")
    assert example.main(["--rounds", "2", "--dp", "skellam", "--epsilon", "8"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("distributed DP (skellam): epsilon ")
    assert 0 < float(last.split()[4]) <= 8.0

"""secagg.flower, issue 14 §1: what a Flower user is told, and secure evaluation.

* A node that drops at the unmask stage sent its masked input: its input is in the
  sum, and the logs and the outcome say so instead of calling it left out.
* Flower's quick-start values (num_shares=3, reconstruction_threshold=2) are refused
  with values that pass the same checks, and those values do work.
* ``secure_evaluate=True``: evaluation rounds run as sessions too; the strategy gets
  the secure weighted means of the loss and the declared metrics, and no client's
  evaluation result leaves it in clear.

A tiny federation (10 nodes, a 20-scalar "model", deterministic client results)
run in-process through :func:`secagg.flower.run_inprocess`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import numpy as np
import pytest

pytest.importorskip("flwr", reason="the secagg[flower] extra (flwr 1.42) is not installed")

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.client import Client, NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import SimpleClientManager
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg as MessageFedAvg

from secagg.errors import ConfigError
from secagg.flower import RECORD_KEY, SecAggGrid, SecAggPlusWorkflow, run_inprocess, secaggplus_mod

N = 10
DIM = 20
CLIP = 4.0


def loss_of(pid: int) -> float:
    return 0.5 + 0.1 * pid


def accuracy_of(pid: int) -> float:
    return 0.05 * pid


def examples_of(pid: int) -> int:
    return 5 + pid


class Numbers(NumPyClient):
    """Deterministic per-partition results, so the test knows every client's input."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def fit(self, parameters: list[np.ndarray], config: dict[str, object]
            ) -> tuple[list[np.ndarray], int, dict[str, float]]:
        return [p + 0.01 * self.pid for p in parameters], examples_of(self.pid), {}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, object]
                 ) -> tuple[float, int, dict[str, float]]:
        return loss_of(self.pid), examples_of(self.pid), {"accuracy": accuracy_of(self.pid),
                                                            "private": 123.0}


def client_app(wire: list[tuple[str, RecordDict]]) -> ClientApp:
    def client_fn(context: Context) -> Client:
        return Numbers(int(context.node_config["partition-id"])).to_client()

    def spy(msg: Message, ctxt: Context, call_next: Callable[..., Message]) -> Message:
        reply = call_next(msg, ctxt)
        if reply.has_content():
            wire.append((msg.metadata.message_type, reply.content))
        return reply

    return ClientApp(client_fn=client_fn, mods=[spy, secaggplus_mod])


def server_app(workflow: SecAggPlusWorkflow, seen: dict[str, object],
               secure_evaluate: bool) -> ServerApp:
    app = ServerApp()

    def evaluate_metrics(metrics: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
        seen["evaluate_results"] = metrics
        total = sum(n for n, _ in metrics)
        return {"accuracy": sum(n * m["accuracy"] for n, m in metrics) / total}

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=1.0, min_fit_clients=N,
                          min_evaluate_clients=N, min_available_clients=N,
                          initial_parameters=ndarrays_to_parameters([np.zeros(DIM)]),
                          evaluate_metrics_aggregation_fn=evaluate_metrics)
        legacy = LegacyContext(context, config=ServerConfig(num_rounds=1), strategy=strategy,
                               client_manager=SimpleClientManager())
        evaluate = workflow.evaluate if secure_evaluate else None
        DefaultWorkflow(fit_workflow=workflow, evaluate_workflow=evaluate)(  # type: ignore[arg-type]
            grid, legacy)
        seen["history"] = legacy.history

    return app


def silence_at(pid_stage: dict[int, str]) -> Callable[[int, int, Message], bool]:
    def rule(node: int, pid: int, message: Message) -> bool:
        record = message.content.config_records.get(RECORD_KEY) if message.has_content() \
            else None
        return record is not None and record.get("stage") == pid_stage.get(pid)
    return rule


# -- (a) a dropout at unmask is in the sum ------------------------------------------------------


def test_a_node_dropping_at_unmask_is_reported_in_the_sum(caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    workflow = SecAggPlusWorkflow(clipping_range=CLIP, max_weight=100)
    seen: dict[str, object] = {}
    with caplog.at_level(logging.INFO, logger="secagg.flower"):
        _, grid = run_inprocess(server_app(workflow, seen, False), client_app([]), N, seed=5,
                                drop=silence_at({4: "unmask", 6: "masked-input"}))
    outcome = workflow.outcomes[0]
    late_node = next(node for node, pid in grid.partition.items() if pid == 4)
    gone_node = next(node for node, pid in grid.partition.items() if pid == 6)
    assert late_node in outcome.included and gone_node not in outcome.included
    assert len(outcome.late_dropouts) == 1
    assert f"node {late_node} dropped at unmask; its input is in the sum" in \
        outcome.late_dropouts[0]
    assert not any(str(late_node) in f for f in outcome.failures)
    assert any(str(gone_node) in f for f in outcome.failures)
    warnings = [r.getMessage() for r in caplog.records if r.name == "secagg.flower"]
    assert any("its input is in the sum" in w for w in warnings)
    assert not any("left out" in w and f"node {late_node} " in w for w in warnings)
    # and it is: the total weight counts the late node's examples, not the gone one's
    assert outcome.aggregate is not None
    assert outcome.aggregate.total_weight == sum(examples_of(p) for p in range(N) if p != 6)


# -- (b) the quick-start values are refused with values that work -------------------------------


@pytest.mark.parametrize("n", [10, 100])
def test_quickstart_refusal_names_values_that_work(n: int) -> None:
    cohort = list(range(1, n + 1))
    with pytest.raises(ConfigError) as refused:
        SecAggPlusWorkflow(num_shares=3, reconstruction_threshold=2).session_config(
            cohort, 8, 1 << 32)
    message = str(refused.value)
    assert "degree k=2 is too small" in message  # the reason comes first, unchanged
    found = re.search(
        r"num_shares=(\d+) with reconstruction_threshold (\d+)(?: to (\d+))?", message)
    assert found is not None, message
    shares, low = int(found.group(1)), int(found.group(2))
    high = int(found.group(3) or low)
    for threshold in (low, high):  # the named values pass the same checks
        config = SecAggPlusWorkflow(num_shares=shares, reconstruction_threshold=threshold
                                    ).session_config(cohort, 8, 1 << 32)
        assert (config.degree, config.threshold) == (shares - 1, threshold)
    for threshold in (low - 1, high + 1):  # and the range is exact
        if threshold >= 2:
            with pytest.raises(ConfigError):
                SecAggPlusWorkflow(num_shares=shares, reconstruction_threshold=threshold
                                   ).session_config(cohort, 8, 1 << 32)


def test_complete_graph_threshold_refusal_names_the_range() -> None:
    with pytest.raises(ConfigError, match=r"reconstruction_threshold 6 to 9 would work"):
        SecAggPlusWorkflow(num_shares=10, reconstruction_threshold=2).session_config(
            list(range(1, 11)), 8, 1 << 32)


def test_a_refusal_with_nothing_to_correct_stands() -> None:
    with pytest.raises(ConfigError, match="below the minimum") as refused:
        SecAggPlusWorkflow(num_shares=3, reconstruction_threshold=2).session_config(
            [1, 2, 3, 4, 5], 8, 1 << 32)
    assert "would work" not in str(refused.value)


# -- (c) secure evaluation ----------------------------------------------------------------------


def weighted(values: dict[int, float], pids: list[int]) -> float:
    total = sum(examples_of(p) for p in pids)
    return sum(examples_of(p) * values[p] for p in pids) / total


def test_secure_evaluation_legacy_strategy() -> None:
    workflow = SecAggPlusWorkflow(clipping_range=CLIP, max_weight=100, secure_evaluate=True,
                                  evaluate_metrics=("accuracy",))
    seen: dict[str, object] = {}
    wire: list[tuple[str, RecordDict]] = []
    run_inprocess(server_app(workflow, seen, True), client_app(wire), N, seed=3,
                  drop=silence_at({2: "share-keys"}))
    _fit, evaluation = workflow.outcomes
    assert evaluation.aggregate is not None and len(evaluation.included) == N - 1
    included = [p for p in range(N) if p != 2]
    # the strategy saw one result: the secure means and the total example count
    (count, metrics), = seen["evaluate_results"]  # type: ignore[misc]
    assert count == sum(examples_of(p) for p in included)
    bound = 100.0 / CLIP * 2 * CLIP / (1 << 22) * 4  # a few quantization steps, scaled back
    assert metrics["accuracy"] == pytest.approx(weighted(
        {p: accuracy_of(p) for p in range(N)}, included), abs=bound)
    history = seen["history"]
    (_, loss), = history.losses_distributed  # type: ignore[attr-defined]
    assert loss == pytest.approx(weighted({p: loss_of(p) for p in range(N)}, included),
                                 abs=bound)
    # every evaluation reply carried only our protocol record: no loss, count or metric
    evaluate_replies = [content for kind, content in wire if kind.startswith("evaluate")]
    assert len(evaluate_replies) >= 4 * (N - 1)
    assert all(set(c.config_records) == {RECORD_KEY} and not c.metric_records
               and not c.array_records for c in evaluate_replies)


def test_evaluation_stays_in_clear_unless_asked() -> None:
    workflow = SecAggPlusWorkflow(clipping_range=CLIP, max_weight=100)
    seen: dict[str, object] = {}
    wire: list[tuple[str, RecordDict]] = []
    run_inprocess(server_app(workflow, seen, False), client_app(wire), N, seed=3)
    assert len(seen["evaluate_results"]) == N  # type: ignore[arg-type]  # Flower's own path
    with pytest.raises(ConfigError, match="secure_evaluate=True"):
        workflow.evaluate(None, LegacyContext(Context(0, 0, {}, RecordDict(), {}),  # type: ignore[arg-type]
                                              config=ServerConfig(num_rounds=1)))


def test_secure_evaluation_message_api_strategy() -> None:
    workflow = SecAggPlusWorkflow(clipping_range=CLIP, max_weight=100, secure_evaluate=True,
                                  evaluate_metrics=("eval_loss",))
    app = ClientApp(mods=[secaggplus_mod])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        arrays = msg.content["arrays"].to_numpy_ndarrays()  # type: ignore[union-attr]
        pid = int(context.node_config["partition-id"])
        return Message(RecordDict({"arrays": ArrayRecord([a + 0.01 for a in arrays]),
                                   "metrics": MetricRecord({"num-examples": examples_of(pid)})}),
                       reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        return Message(RecordDict({"metrics": MetricRecord({
            "eval_loss": loss_of(pid), "num-examples": examples_of(pid)})}), reply_to=msg)

    server = ServerApp()
    seen: dict[str, object] = {}

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = MessageFedAvg(fraction_evaluate=1.0, min_train_nodes=N,
                                 min_evaluate_nodes=N, min_available_nodes=N)
        result = strategy.start(SecAggGrid(grid, workflow), ArrayRecord([np.zeros(DIM)]),
                                num_rounds=1)
        seen["result"] = result

    run_inprocess(server, app, N, seed=4)
    assert [o.config.n for o in workflow.outcomes] == [N, N]
    result = seen["result"]
    (loss,) = [m["eval_loss"] for m in result.evaluate_metrics_clientapp.values()]  # type: ignore[attr-defined]
    assert loss == pytest.approx(weighted({p: loss_of(p) for p in range(N)}, list(range(N))),
                                 abs=1e-4)

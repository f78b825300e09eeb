"""ServerApp: Flower's legacy FedAvg with secagg's SecAggPlusWorkflow as the fit workflow.

This is the shape of Flower's own secure-aggregation example; only the import
of ``SecAggPlusWorkflow`` changes (and the extras ``secure_metrics``, which
puts the training metrics inside the secure sum): ``secure.make_workflow`` takes
it from ``secagg.flower``, or from Flower with run-config ``secagg-impl = "flower"``.
After each round the global model is evaluated on the union of the clients'
test parts, on the server.

Run-config options beyond the task's (empty string / 0: off):

* ``transcript-dir``: every session's public transcript is written there, for
  ``secagg audit`` (spec §18.5);
* ``results-dir``: after the run, ``results.json`` there lists per round the
  wall time, the secure-aggregation stages' times and, with secagg, who was
  included or dropped (``FlowerRoundOutcome``), and ``global-r{round}.npz`` holds
  the global model after each round;
* ``min-nodes``: how many connected nodes a round needs (default: all
  ``num-partitions``), so a deployment can go on after nodes leave;
* ``stage-timeout``: seconds each stage waits for replies (default: until all
  reply or Flower reports the node gone); ``dim``: pad the model to that many
  parameters (benchmarks);
* ``dp`` (``"skellam"``/``"ddg"``) and ``dp-*``: distributed DP (README.md here).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context, MetricRecord
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow
from flwr.serverapp import Grid, ServerApp

from secagg_flower_example.secure import make_workflow, stage_of
from secagg_flower_example.task import federation, initial_weights, new_model

app = ServerApp()


def weighted_mean(metrics: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    """Flower's usual metric aggregation; here it receives the one secure aggregate."""
    total = sum(n for n, _ in metrics)
    return {k: sum(n * m[k] for n, m in metrics) / total for k in metrics[0][1]} if total else {}


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    # the simulation engine registers its nodes after the ServerApp starts: take the
    # federation size from the config and let FedAvg wait for that many nodes
    num_nodes = int(cfg.get("num-partitions", 10))  # type: ignore[arg-type]
    min_nodes = int(cfg.get("min-nodes", 0)) or num_nodes  # type: ignore[arg-type]
    results_dir = str(cfg.get("results-dir", "") or "")
    data = federation(num_nodes)
    model = new_model(data)
    own = len(model.get_weights())
    log = RunLog(results_dir)

    def evaluate(rnd: int, parameters: list[np.ndarray], config: dict[str, object]
                 ) -> tuple[float, dict[str, float]]:
        log.round_done(rnd, parameters)
        model.set_weights(parameters[:own])  # the rest is the benchmark's padding
        m = model.evaluate(data.x_test, data.y_test)
        context.state.metric_records[f"round-{rnd}"] = MetricRecord({"accuracy": m.accuracy})
        log.rounds[-1]["accuracy"] = m.accuracy
        return m.loss, {"accuracy": m.accuracy}

    strategy = FedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=min_nodes,
        min_available_clients=min_nodes,
        initial_parameters=ndarrays_to_parameters(
            initial_weights(num_nodes, int(cfg.get("dim", 0)))),  # type: ignore[arg-type]
        on_fit_config_fn=lambda rnd: {"round": rnd}, evaluate_fn=evaluate,
        fit_metrics_aggregation_fn=weighted_mean,
    )
    legacy = LegacyContext(context, config=ServerConfig(
        num_rounds=int(cfg.get("num-server-rounds", 5))), strategy=strategy)  # type: ignore[arg-type]
    workflow = make_workflow(cfg, num_nodes)
    DefaultWorkflow(fit_workflow=workflow)(TimedGrid(grid, log) if results_dir else grid, legacy)
    dp = getattr(workflow, "dp", None)  # distributed DP: what the run spent
    if dp is not None:
        context.state.metric_records["dp"] = MetricRecord({"epsilon": dp.epsilon,
                                                           "delta": dp.options.delta})
    log.write(workflow)


class RunLog:
    """What ``results-dir`` receives: per-round times, stage times, outcomes, global models."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder) if folder else None
        self.rounds: list[dict[str, Any]] = []
        self.stages: list[tuple[str, float]] = []  # (stage, seconds) since the last round
        self.last = time.perf_counter()

    def round_done(self, rnd: int, parameters: list[np.ndarray]) -> None:
        now = time.perf_counter()
        self.rounds.append({"round": rnd, "seconds": now - self.last,
                            "stages": [{"stage": s, "seconds": t} for s, t in self.stages]})
        self.last, self.stages = now, []
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            np.savez(self.folder / f"global-r{rnd}.npz", *parameters)

    def write(self, workflow: Any) -> None:
        if self.folder is None:
            return
        # one quantization level in model units (secagg's workflow only: Flower's has no
        # outcomes to report)
        step = (2.0 * workflow.clipping_range / (2 ** workflow.quantization_bits - 1)
                if hasattr(workflow, "quantization_bits") else None)
        outcomes = [{"included": list(o.included), "dropped": list(o.dropped),
                     "aborted": o.abort_reason, "failures": list(o.failures),
                     "threshold": o.config.threshold, "step": step,
                     # distributed DP: this round's and the run's epsilon (None without)
                     "epsilon_round": getattr(o.dp, "epsilon_round", None),
                     "epsilon": getattr(o.dp, "epsilon", None)}
                    for o in getattr(workflow, "outcomes", [])]
        (self.folder / "results.json").write_text(json.dumps(
            {"rounds": self.rounds, "outcomes": outcomes}, indent=1), encoding="utf-8")


class TimedGrid:
    """The run's Grid, timing each send-and-receive by the stage its messages carry."""

    def __init__(self, grid: Grid, log: RunLog) -> None:
        self._grid, self._log = grid, log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> Any:
        messages = list(messages)
        stage = stage_of(messages[0]) if messages else "none"
        start = time.perf_counter()
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        self._log.stages.append((stage, time.perf_counter() - start))
        return replies

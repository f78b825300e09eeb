"""ServerApp: Flower's legacy FedAvg with secagg's SecAggPlusWorkflow as the fit workflow.

This is the shape of Flower's own secure-aggregation example; only the import
of ``SecAggPlusWorkflow`` changes (and the extras ``secure_metrics``, which
puts the training metrics inside the secure sum). After each round the global
model is evaluated on the union of the clients' test parts, on the server.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Context, MetricRecord
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow
from flwr.serverapp import Grid, ServerApp

from secagg.flower import SecAggPlusWorkflow
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
    data = federation(num_nodes)
    model = new_model(data)

    def evaluate(rnd: int, parameters: list[np.ndarray], config: dict[str, object]
                 ) -> tuple[float, dict[str, float]]:
        model.set_weights(parameters)
        m = model.evaluate(data.x_test, data.y_test)
        context.state.metric_records[f"round-{rnd}"] = MetricRecord({"accuracy": m.accuracy})
        return m.loss, {"accuracy": m.accuracy}

    strategy = FedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=num_nodes,
        min_available_clients=num_nodes,
        initial_parameters=ndarrays_to_parameters(initial_weights(num_nodes)),
        on_fit_config_fn=lambda rnd: {"round": rnd}, evaluate_fn=evaluate,
        fit_metrics_aggregation_fn=weighted_mean,
    )
    legacy = LegacyContext(context, config=ServerConfig(
        num_rounds=int(cfg.get("num-server-rounds", 5))), strategy=strategy)  # type: ignore[arg-type]
    workflow = SecAggPlusWorkflow(
        num_shares=int(cfg.get("num-shares", num_nodes)),  # type: ignore[arg-type]
        reconstruction_threshold=int(cfg.get("reconstruction-threshold", 6)),  # type: ignore[arg-type]
        clipping_range=float(cfg.get("clipping-range", 8.0)),  # type: ignore[arg-type]
        max_weight=int(cfg.get("max-weight", 2000)),  # type: ignore[arg-type]
        secure_metrics=("train_loss", "train_accuracy"),
    )
    DefaultWorkflow(fit_workflow=workflow)(grid, legacy)

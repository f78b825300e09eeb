"""ClientApp: local SGD on the node's partition, behind secagg's secure-aggregation mod.

The only line that differs from a plain Flower client is ``mods=[secaggplus_mod]``
(imported from ``secagg.flower`` instead of ``flwr.client.mod``): the update,
the example count and the training metrics leave the node only inside the
masked vector.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Context
from flwr.client import Client, NumPyClient
from flwr.clientapp import ClientApp

from secagg.flower import secaggplus_mod
from secagg_flower_example.task import federation, new_model


class DigitsClient(NumPyClient):
    """Trains the global model on one partition for ``local-epochs`` epochs."""

    def __init__(self, partition: int, num_partitions: int, epochs: int, lr: float) -> None:
        self.partition = partition
        data = federation(num_partitions)
        self.data = data.clients[partition + 1]  # fl.data numbers clients from 1
        self.model = new_model(data)
        self.epochs, self.lr = epochs, lr

    def get_parameters(self, config: dict[str, object]) -> list[np.ndarray]:
        return self.model.get_weights()

    def fit(self, parameters: list[np.ndarray], config: dict[str, object]
            ) -> tuple[list[np.ndarray], int, dict[str, float]]:
        rnd = int(config.get("round", 0))  # type: ignore[call-overload]
        self.model.set_weights(parameters)
        self.model.fit(self.data.x_train, self.data.y_train, epochs=self.epochs, lr=self.lr,
                       batch_size=16, mu=0.0, rng=np.random.default_rng([rnd, self.partition]))
        metrics = self.model.evaluate(self.data.x_train, self.data.y_train)
        return (self.model.get_weights(), self.data.num_examples,
                {"train_loss": metrics.loss, "train_accuracy": metrics.accuracy})


def client_fn(context: Context) -> Client:
    cfg = context.run_config
    return DigitsClient(int(context.node_config["partition-id"]),
                        int(context.node_config["num-partitions"]),
                        int(cfg.get("local-epochs", 2)),  # type: ignore[arg-type]
                        float(cfg.get("lr", 0.1))).to_client()  # type: ignore[arg-type]


app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])

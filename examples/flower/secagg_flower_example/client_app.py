"""ClientApp: local SGD on the node's partition, behind secagg's secure-aggregation mod.

The only line that differs from a plain Flower client is the mod: here
``secure.select_mod``, which is ``secagg.flower.secaggplus_mod`` (or, with
run-config ``secagg-impl = "flower"``, Flower's own ``flwr.client.mod.secaggplus_mod``,
for side-by-side benchmarks). The update, the example count and the training
metrics leave the node only inside the masked vector.

Test-only run-config ``updates-dir`` (empty: off): each fit also saves the
node's plaintext update there (``update-r{round}-n{node}.npz``), so a test can
recompute plaintext FedAvg over the clients the secure sum included. It defeats
the purpose of secure aggregation and exists only for that check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flwr.app import Context
from flwr.client import Client, NumPyClient
from flwr.clientapp import ClientApp

from secagg_flower_example.secure import select_mod


class DigitsClient(NumPyClient):
    """Trains the global model on one partition for ``local-epochs`` epochs."""

    def __init__(self, partition: int, num_partitions: int, epochs: int, lr: float,
                 dim: int = 0) -> None:
        # imported here, not at the top: in Flower's deployment engine every message
        # starts a fresh ClientApp process, and only the training message needs the task
        from secagg_flower_example.task import federation, new_model, padding

        self.partition = partition
        data = federation(num_partitions)
        self.data = data.clients[partition + 1]  # fl.data numbers clients from 1
        self.model = new_model(data)
        self.padding = padding(data, dim)
        self.epochs, self.lr = epochs, lr
        self.node_id, self.updates_dir = 0, ""

    def get_parameters(self, config: dict[str, object]) -> list[np.ndarray]:
        return self.model.get_weights() + self.padding

    def fit(self, parameters: list[np.ndarray], config: dict[str, object]
            ) -> tuple[list[np.ndarray], int, dict[str, float]]:
        rnd = int(config.get("round", 0))  # type: ignore[call-overload]
        own = len(parameters) - len(self.padding)
        self.model.set_weights(parameters[:own])
        self.model.fit(self.data.x_train, self.data.y_train, epochs=self.epochs, lr=self.lr,
                       batch_size=16, mu=0.0, rng=np.random.default_rng([rnd, self.partition]))
        metrics = self.model.evaluate(self.data.x_train, self.data.y_train)
        update = self.model.get_weights() + list(parameters[own:])  # padding sent back as is
        if self.updates_dir:
            self._save(rnd, update)
        return (update, self.data.num_examples,
                {"train_loss": metrics.loss, "train_accuracy": metrics.accuracy})

    def _save(self, rnd: int, update: list[np.ndarray]) -> None:
        """Test only: this node's plaintext update (written whole, then renamed)."""
        folder = Path(self.updates_dir)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"update-r{rnd}-n{self.node_id}.npz"
        partial = folder / f".{final.name}.partial.npz"
        np.savez(partial, *update, node=self.node_id, partition=self.partition,
                 weight=self.data.num_examples)
        partial.replace(final)


def client_fn(context: Context) -> Client:
    cfg = context.run_config
    client = DigitsClient(int(context.node_config["partition-id"]),
                          int(context.node_config["num-partitions"]),
                          int(cfg.get("local-epochs", 2)),  # type: ignore[arg-type]
                          float(cfg.get("lr", 0.1)),  # type: ignore[arg-type]
                          int(cfg.get("dim", 0)))  # type: ignore[arg-type]
    client.node_id = context.node_id
    client.updates_dir = str(cfg.get("updates-dir", "") or "")
    return client.to_client()


app = ClientApp(client_fn=client_fn, mods=[select_mod])

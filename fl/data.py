"""Federated data sets from scikit-learn's bundled data (no download).

Two scenarios ship with scikit-learn itself, so training runs anywhere:

- ``digits``: 1,797 8x8 handwritten digits, 10 classes (pixels scaled to [0, 1]);
- ``breast_cancer``: 569 patients, 30 features, 2 classes, as if each client
  were a hospital holding its own patients' records.

:func:`federate` splits a data set across clients either IID (a random equal
split) or non-IID by a Dirichlet(alpha) draw over labels per class, the usual
benchmark for label skew (Hsu et al. 2019): small ``alpha`` gives clients
dominated by a few classes. Each client's examples are then split into its own
train and test parts; the global test set is the union of the clients' test
parts, so "test accuracy" is the accuracy over every client's held-out data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

from secagg.errors import ConfigError

DATASETS: Final = ("digits", "breast_cancer")
#: Partitions with a client below this many examples are redrawn (a client with
#: two examples cannot hold a train and a test part worth the name).
MIN_CLIENT_EXAMPLES: Final = 8
_MAX_REDRAWS: Final = 1000


@dataclass(frozen=True, eq=False)
class ClientData:
    """One client's local data: its train part (what it trains on) and test part."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_examples(self) -> int:
        """Number of training examples: the client's FedAvg weight."""
        return int(self.y_train.shape[0])


@dataclass(frozen=True, eq=False)
class FederatedData:
    """A data set split across clients with ids ``1 .. n`` (secagg client ids start at 1)."""

    name: str
    clients: dict[int, ClientData]
    num_features: int
    num_classes: int

    @property
    def x_test(self) -> np.ndarray:
        """Union of the clients' test parts (in client-id order)."""
        return np.concatenate([c.x_test for _, c in sorted(self.clients.items())])

    @property
    def y_test(self) -> np.ndarray:
        return np.concatenate([c.y_test for _, c in sorted(self.clients.items())])

    @property
    def num_train(self) -> int:
        """Total training examples over all clients."""
        return sum(c.num_examples for c in self.clients.values())


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Features (float64) and integer labels of a bundled data set.

    Digits pixels (0..16) are scaled to [0, 1]. Breast-cancer features span
    five orders of magnitude, so they are standardized with the data set's own
    mean and deviation; a real federation would compute those by a secure sum
    of per-client moments, which gives the same numbers, so the simulation
    takes the shortcut.
    """
    loaders = _loaders()
    if name not in loaders:
        raise ConfigError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    bunch = loaders[name]()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    if name == "digits":
        x = x / 16.0
    else:
        std = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return x, y


def _loaders() -> dict[str, Callable[[], object]]:
    # imported here: scikit-learn takes ~1 s to import, only this module needs it, and
    # it is the optional `train` extra (a one-line MissingExtraError when absent)
    from secagg.extras import require

    datasets = require("sklearn.datasets", "train", "fl.data's bundled data sets")
    return {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer}


def partition(
    labels: np.ndarray,
    num_clients: int,
    *,
    rng: np.random.Generator,
    iid: bool = False,
    alpha: float = 0.5,
    min_examples: int = MIN_CLIENT_EXAMPLES,
) -> list[np.ndarray]:
    """Indices of each client's examples.

    IID: a random permutation cut into ``num_clients`` near-equal parts.
    Non-IID: for every class, its examples are divided among the clients in
    proportions drawn from Dirichlet(alpha, ..., alpha); the whole draw is
    repeated until every client has at least ``min_examples`` examples (the
    standard remedy, since a tiny ``alpha`` can leave a client empty).
    """
    y = np.asarray(labels)
    if not isinstance(num_clients, int) or num_clients < 1:
        raise ConfigError("num_clients must be a positive int")
    if num_clients * min_examples > y.shape[0]:
        raise ConfigError(
            f"{y.shape[0]} examples cannot give {num_clients} clients {min_examples} each"
        )
    if iid:
        return [np.sort(p) for p in np.array_split(rng.permutation(y.shape[0]), num_clients)]
    if not alpha > 0.0 or not np.isfinite(alpha):
        raise ConfigError("alpha must be a finite number > 0")
    classes = np.unique(y)
    for _ in range(_MAX_REDRAWS):
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(y == c))
            shares = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * idx.shape[0]).astype(np.int64)
            for client, chunk in enumerate(np.split(idx, cuts)):
                parts[client].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_examples:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise ConfigError(
        f"no Dirichlet(alpha={alpha}) partition gave every one of {num_clients} clients "
        f"{min_examples} examples in {_MAX_REDRAWS} draws; raise alpha or lower the clients"
    )


def federate(
    name: str = "digits",
    num_clients: int = 20,
    *,
    iid: bool = False,
    alpha: float = 0.5,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> FederatedData:
    """Load a bundled data set and split it across ``num_clients`` clients.

    Each client keeps ``test_fraction`` of its own examples (at least one, and
    at least one for training) as its test part. Deterministic in ``seed``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError("test_fraction must be in (0, 1)")
    x, y = load(name)
    rng = np.random.default_rng([seed, 0xDA7A])
    parts = partition(y, num_clients, rng=rng, iid=iid, alpha=alpha)
    clients: dict[int, ClientData] = {}
    for cid, idx in enumerate(parts, start=1):
        idx = rng.permutation(idx)
        n_test = min(max(1, round(test_fraction * idx.shape[0])), idx.shape[0] - 1)
        test, train = idx[:n_test], idx[n_test:]
        clients[cid] = ClientData(x[train], y[train], x[test], y[test])
    return FederatedData(
        name=name,
        clients=clients,
        num_features=int(x.shape[1]),
        num_classes=int(np.unique(y).shape[0]),
    )

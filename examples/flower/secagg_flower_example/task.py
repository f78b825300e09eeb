"""The learning task: softmax regression (numpy) on scikit-learn's bundled digits.

Each Flower node is one partition of ``fl.data.federate("digits", n)``: a
Dirichlet(0.5) label-skewed split, so clients see different digit mixes, and
the global test set is the union of the clients' held-out parts.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from fl.data import FederatedData, federate
from fl.models import LogisticRegression


@lru_cache(maxsize=4)
def federation(num_partitions: int, seed: int = 0) -> FederatedData:
    """The split, computed once per process (every node derives the same one)."""
    return federate("digits", num_partitions, alpha=0.5, seed=seed)


def new_model(data: FederatedData) -> LogisticRegression:
    """The model every run starts from (zeros: the loss is convex)."""
    return LogisticRegression(data.num_features, data.num_classes)


def padding(data: FederatedData, dim: int) -> list[np.ndarray]:
    """Zeros that bring the model to ``dim`` parameters (run-config ``dim``; 0: none).

    Benchmarks use it to reach a model size m without a larger task: clients
    send the padding back unchanged, so it costs the aggregation what m
    parameters cost and leaves the learning untouched.
    """
    size = sum(w.size for w in new_model(data).get_weights())
    return [np.zeros(dim - size, dtype=np.float64)] if dim > size else []


def initial_weights(num_partitions: int, dim: int = 0) -> list[np.ndarray]:
    data = federation(num_partitions)
    return new_model(data).get_weights() + padding(data, dim)

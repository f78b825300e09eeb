"""Federated splits of the bundled data: disjoint, complete, skewed as asked, reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from fl.data import DATASETS, MIN_CLIENT_EXAMPLES, federate, load, partition
from secagg.errors import ConfigError


def label_skew(parts: list[np.ndarray], y: np.ndarray) -> float:
    """Mean over clients of the share of the client's most common label."""
    return float(np.mean([np.bincount(y[p]).max() / p.shape[0] for p in parts]))


@pytest.mark.parametrize("iid", [True, False])
def test_partition_is_disjoint_and_complete(iid: bool) -> None:
    _, y = load("digits")
    parts = partition(y, 20, rng=np.random.default_rng(0), iid=iid, alpha=0.5)
    joined = np.concatenate(parts)
    assert np.array_equal(np.sort(joined), np.arange(y.shape[0]))
    assert min(p.shape[0] for p in parts) >= MIN_CLIENT_EXAMPLES
    if iid:
        sizes = [p.shape[0] for p in parts]
        assert max(sizes) - min(sizes) <= 1


def test_smaller_alpha_is_more_skewed() -> None:
    _, y = load("digits")
    skew = {a: label_skew(partition(y, 20, rng=np.random.default_rng(1), alpha=a), y)
            for a in (0.1, 1.0, 100.0)}
    iid = label_skew(partition(y, 20, rng=np.random.default_rng(1), iid=True), y)
    assert skew[0.1] > skew[1.0] > skew[100.0]
    assert skew[100.0] < 0.25 and iid < 0.25  # ten classes: close to 1/10 each
    assert skew[0.1] > 0.6


def test_federate_splits_each_client_and_is_deterministic() -> None:
    a = federate("digits", 20, alpha=0.5, seed=3)
    b = federate("digits", 20, alpha=0.5, seed=3)
    c = federate("digits", 20, alpha=0.5, seed=4)
    assert sorted(a.clients) == list(range(1, 21))
    assert a.num_features == 64 and a.num_classes == 10
    total = sum(cd.num_examples + cd.y_test.shape[0] for cd in a.clients.values())
    assert total == 1797
    assert a.x_test.shape[0] == a.y_test.shape[0] == 1797 - a.num_train
    for u, cd in a.clients.items():
        assert cd.num_examples >= 1 and cd.y_test.shape[0] >= 1
        assert np.array_equal(cd.x_train, b.clients[u].x_train)
        assert cd.x_train.min() >= 0.0 and cd.x_train.max() <= 1.0
    assert any(not np.array_equal(a.clients[u].y_train, c.clients[u].y_train) for u in a.clients)


def test_breast_cancer_hospitals() -> None:
    data = federate("breast_cancer", 10, iid=True, seed=0)
    assert data.num_features == 30 and data.num_classes == 2
    x, _ = load("breast_cancer")
    assert np.allclose(x.mean(axis=0), 0.0, atol=1e-9) and np.allclose(x.std(axis=0), 1.0)
    assert set(DATASETS) == {"digits", "breast_cancer"}


def test_refusals() -> None:
    _, y = load("digits")
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="unknown data set"):
        load("mnist")
    with pytest.raises(ConfigError, match="alpha"):
        partition(y, 10, rng=rng, alpha=0.0)
    with pytest.raises(ConfigError, match="cannot give"):
        partition(y, 1000, rng=rng)
    with pytest.raises(ConfigError, match="no Dirichlet"):
        partition(y[:200], 20, rng=rng, alpha=0.001)
    with pytest.raises(ConfigError, match="test_fraction"):
        federate("digits", 10, test_fraction=1.0)

"""The numpy models: exact gradients, SGD that learns, FedProx's pull towards the received model."""

from __future__ import annotations

import numpy as np
import pytest

from fl.models import MLP, MODELS, LogisticRegression, Model, make_model
from secagg.errors import ConfigError


def toy(seed: int = 0, n: int = 40, d: int = 5, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = (x[:, :k] + 0.3 * rng.normal(size=(n, k))).argmax(axis=1)
    return x, y


@pytest.mark.parametrize("name", MODELS)
def test_gradients_match_finite_differences(name: str) -> None:
    x, y = toy()
    model = make_model(name, 5, 3, seed=1)
    assert isinstance(model, Model)
    rng = np.random.default_rng(2)
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
    _, grads = model._loss_and_grads(x, y)  # type: ignore[attr-defined]
    eps = 1e-6
    for i, w in enumerate(model.get_weights()):
        for idx in list(np.ndindex(w.shape))[:6]:
            plus = [a.copy() for a in model.get_weights()]
            minus = [a.copy() for a in model.get_weights()]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            saved = model.get_weights()
            model.set_weights(plus)
            lp = model.evaluate(x, y).loss
            model.set_weights(minus)
            lm = model.evaluate(x, y).loss
            model.set_weights(saved)
            assert abs((lp - lm) / (2 * eps) - grads[i][idx]) < 1e-6


@pytest.mark.parametrize("name", MODELS)
def test_sgd_learns_and_is_deterministic(name: str) -> None:
    x, y = toy(n=200)
    a, b = make_model(name, 5, 3, seed=0), make_model(name, 5, 3, seed=0)
    before = a.evaluate(x, y)
    for m in (a, b):
        m.fit(x, y, epochs=20, lr=0.2, batch_size=16, mu=0.0, rng=np.random.default_rng(9))
    after = a.evaluate(x, y)
    assert after.loss < before.loss and after.accuracy > 0.85
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        assert np.array_equal(wa, wb)


def test_fedprox_mu_zero_is_sgd_and_mu_pulls_towards_the_received_model() -> None:
    x, y = toy(n=100)
    start = [np.full((5, 3), 0.5), np.zeros(3)]
    dist = {}
    for mu in (0.0, 1.0, 10.0):
        m = LogisticRegression(5, 3)
        m.set_weights(start)
        m.fit(x, y, epochs=10, lr=0.05, batch_size=10, mu=mu, rng=np.random.default_rng(1))
        dist[mu] = sum(float(np.sum((w - s) ** 2)) for w, s in zip(m.get_weights(), start,
                                                                 strict=True))
    assert dist[0.0] > dist[1.0] > dist[10.0] > 0.0


def test_weights_are_copies_and_refusals() -> None:
    m = MLP(4, 2, hidden=3)
    w = m.get_weights()
    w[0][...] = 7.0
    assert not np.any(m.get_weights()[0] == 7.0)
    with pytest.raises(ConfigError, match="expected 4 arrays"):
        m.set_weights(w[:3])
    with pytest.raises(ConfigError, match="shape"):
        m.set_weights([np.zeros((3, 4)), *w[1:]])
    x, y = toy(d=4, k=2)
    for bad in ({"epochs": -1}, {"lr": 0.0}, {"batch_size": 0}, {"mu": -1.0}):
        kw = {"epochs": 1, "lr": 0.1, "batch_size": 4, "mu": 0.0, **bad}
        with pytest.raises(ConfigError):
            m.fit(x, y, rng=np.random.default_rng(0), **kw)
    with pytest.raises(ConfigError, match="unknown model"):
        make_model("cnn", 4, 2)
    with pytest.raises(ConfigError):
        LogisticRegression(4, 1)

"""Models as the FedAvg loop sees them: parameters in, local SGD, parameters out.

The loop only needs :class:`Model`: ``get_weights`` / ``set_weights`` exchange
parameters as ``list[np.ndarray]`` (Flower's ``NDArrays`` convention), so any
framework plugs in by wrapping its model; ``fit`` runs local SGD; ``evaluate``
scores on held-out data. Two numpy models ship here, with no dependency beyond
numpy: multinomial logistic regression (softmax) and a one-hidden-layer MLP.
``fl.torch_adapter.TorchModel`` wraps any PyTorch ``nn.Module``.

FedProx (Li et al. 2020) is the ``mu`` argument of ``fit``: every step adds the
gradient of ``mu/2 * ||w - w_global||^2``, where ``w_global`` is the model the
client received (the weights when ``fit`` starts). With ``mu = 0`` the step is
exactly FedAvg's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from secagg.errors import ConfigError


@dataclass(frozen=True)
class Metrics:
    """Mean cross-entropy loss and accuracy (fraction in [0, 1]) on a data set."""

    loss: float
    accuracy: float


@runtime_checkable
class Model(Protocol):
    """What the FedAvg loop needs from a model (any framework)."""

    def get_weights(self) -> list[np.ndarray]:
        """The parameters as arrays (copies: the caller may keep them)."""
        ...

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Replace the parameters (same shapes and dtypes as ``get_weights``)."""
        ...

    def fit(self, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, batch_size: int,
            mu: float, rng: np.random.Generator) -> None:
        """Local training: ``epochs`` passes of minibatch SGD, FedProx term ``mu``."""
        ...

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> Metrics:
        """Loss and accuracy on ``(x, y)``."""
        ...


def check_training_args(epochs: int, lr: float, batch_size: int, mu: float) -> None:
    """Refuse hyper-parameters that would make SGD meaningless (ConfigError)."""
    if not isinstance(epochs, int) or epochs < 0:
        raise ConfigError("epochs must be an int >= 0")
    if not (np.isfinite(lr) and lr > 0):
        raise ConfigError("lr must be a finite number > 0")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError("batch_size must be an int >= 1")
    if not (np.isfinite(mu) and mu >= 0):
        raise ConfigError("mu must be a finite number >= 0")


def _softmax_xent(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and its gradient w.r.t. the logits (numerically stable)."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    rows = np.arange(y.shape[0])
    loss = float(-np.log(np.maximum(p[rows, y], 1e-300)).mean())
    grad = p
    grad[rows, y] -= 1.0
    grad /= y.shape[0]
    return loss, grad


class _NumpyModel:
    """Shared SGD loop; subclasses define the parameters, forward pass and gradients."""

    params: list[np.ndarray]

    def get_weights(self) -> list[np.ndarray]:
        return [p.copy() for p in self.params]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        if len(weights) != len(self.params):
            raise ConfigError(f"expected {len(self.params)} arrays, got {len(weights)}")
        new = []
        for i, (w, p) in enumerate(zip(weights, self.params, strict=True)):
            a = np.asarray(w)
            if a.shape != p.shape:
                raise ConfigError(f"array {i} has shape {a.shape}, expected {p.shape}")
            new.append(np.array(a, dtype=np.float64))
        self.params = new

    def _logits(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        raise NotImplementedError

    def fit(self, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, batch_size: int,
            mu: float, rng: np.random.Generator,
            correction: Sequence[np.ndarray] | None = None) -> None:
        """Local SGD. ``correction`` (SCAFFOLD's ``c - c_i``, one array per parameter) is
        added to every step's gradient; None adds nothing (FedAvg / FedProx)."""
        check_training_args(epochs, lr, batch_size, mu)
        # the proximal gradient is always applied, also for mu = 0 (where it adds
        # exactly zero), so "FedProx with mu = 0 is FedAvg" is tested, not assumed
        anchor = self.get_weights()
        corr = None if correction is None else [np.asarray(c, dtype=np.float64)
                                                for c in correction]
        if corr is not None and [c.shape for c in corr] != [p.shape for p in self.params]:
            raise ConfigError("correction must have the parameters' shapes")
        n = y.shape[0]
        for _ in range(epochs):
            order = rng.permutation(n)
            for start in range(0, n, batch_size):
                batch = order[start : start + batch_size]
                _, grads = self._loss_and_grads(x[batch], y[batch])
                for i, (p, g, a) in enumerate(zip(self.params, grads, anchor, strict=True)):
                    step = g + mu * (p - a)
                    if corr is not None:
                        step = step + corr[i]
                    p -= lr * step

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> Metrics:
        logits = self._logits(x)
        loss, _ = _softmax_xent(logits, y)
        accuracy = float((logits.argmax(axis=1) == y).mean()) if y.shape[0] else 0.0
        return Metrics(loss=loss, accuracy=accuracy)


class LogisticRegression(_NumpyModel):
    """Multinomial (softmax) logistic regression: parameters ``[W (d, k), b (k,)]``.

    Starts at zero: the loss is convex, so the start does not matter, and zero
    makes every run with the same data and seeds identical.
    """

    def __init__(self, num_features: int, num_classes: int) -> None:
        if num_features < 1 or num_classes < 2:
            raise ConfigError("need at least one feature and two classes")
        self.params = [np.zeros((num_features, num_classes)), np.zeros(num_classes)]

    def _logits(self, x: np.ndarray) -> np.ndarray:
        W, b = self.params
        return x @ W + b

    def _loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        loss, d = _softmax_xent(self._logits(x), y)
        return loss, [x.T @ d, d.sum(axis=0)]


class MLP(_NumpyModel):
    """One hidden ReLU layer: parameters ``[W1 (d, h), b1 (h,), W2 (h, k), b2 (k,)]``.

    He-initialised from ``seed``, so the secure and the plaintext run (and any
    rerun) start from the same model.
    """

    def __init__(self, num_features: int, num_classes: int, *, hidden: int = 32,
                 seed: int = 0) -> None:
        if num_features < 1 or num_classes < 2 or hidden < 1:
            raise ConfigError("need at least one feature, two classes and one hidden unit")
        rng = np.random.default_rng([seed, 0x31A])
        self.params = [
            rng.normal(0.0, np.sqrt(2.0 / num_features), (num_features, hidden)),
            np.zeros(hidden),
            rng.normal(0.0, np.sqrt(1.0 / hidden), (hidden, num_classes)),
            np.zeros(num_classes),
        ]

    def _logits(self, x: np.ndarray) -> np.ndarray:
        W1, b1, W2, b2 = self.params
        return np.maximum(x @ W1 + b1, 0.0) @ W2 + b2

    def _loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        W1, b1, W2, b2 = self.params
        pre = x @ W1 + b1
        h = np.maximum(pre, 0.0)
        loss, d = _softmax_xent(h @ W2 + b2, y)
        dh = (d @ W2.T) * (pre > 0.0)
        return loss, [x.T @ dh, dh.sum(axis=0), h.T @ d, d.sum(axis=0)]


MODELS = ("logreg", "mlp")


def make_model(name: str, num_features: int, num_classes: int, *, seed: int = 0) -> Model:
    """A numpy model by name: ``logreg`` or ``mlp``."""
    if name == "logreg":
        return LogisticRegression(num_features, num_classes)
    if name == "mlp":
        return MLP(num_features, num_classes, seed=seed)
    raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")

"""What each FL algorithm trains locally, sends, and does with the secure means.

The round loop (:mod:`fl.fedavg`) is the same for every algorithm: sample a
cohort, train each client locally, aggregate the clients' *parts* by secure
aggregation (one session; :mod:`fl.parts` gives each part its own clipping
range), apply the means. This module holds the algorithm-specific pieces, for
one run's state (:class:`RunState`: the secure run and its plaintext twin keep
one each).

- ``fedavg`` (McMahan et al. 2017): part = the model delta ``w_u - w``.
- ``fedprox`` (Li et al. 2020): the same with the proximal term ``mu > 0``.
- ``scaffold`` (Karimireddy et al. 2020, option II): the client trains with the
  gradient corrected by ``c - c_u``, then ``c_u+ = c_u - c + (w - y_u) / (K lr)``
  (``K`` its local SGD steps). Parts: the model delta and the control delta
  ``c_u+ - c_u``, in one secure session. The server sets ``w += mean(delta)``
  and ``c += (W_S / W) mean(dc)``, with the means weighted by example counts
  ``n_u``, ``W_S`` the included clients' total weight (which the server learns
  anyway) and ``W`` the federation's: this keeps ``c`` the ``n``-weighted mean
  of all clients' ``c_u`` (the paper's ``|S|/N`` with unit weights).
  Dropouts are the paper's partial participation: a client whose masked input
  is not in the sum keeps its old ``c_u`` (it discards the round, as if it had
  not been sampled), so the invariant on ``c`` holds.
- ``fedper`` (Arivazhagan et al. 2019): the last :data:`HEAD_ARRAYS` arrays
  (the output layer) are each client's own head and never leave it; only the
  body's delta is aggregated. A client adopts its trained head only when its
  input is in the sum (same partial-participation rule). Needs a model with a
  body (``mlp``, not ``logreg``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from fl.data import ClientData, FederatedData
from fl.models import Metrics, Model
from secagg.errors import ConfigError

ALGORITHMS: Final = ("fedavg", "fedprox", "scaffold", "fedper")
#: FedPer: how many trailing weight arrays form the personal head (weight and bias)
HEAD_ARRAYS: Final = 2

Arrays = list[np.ndarray]


@dataclass
class RunState:
    """One run's state across rounds (the secure run and the plaintext twin keep one each).

    ``weights`` is the global model (FedPer: its body is shared and its head is
    the initial head every client starts from); ``control`` the SCAFFOLD server
    control variate ``c``; ``client_controls`` each client's ``c_u`` (absent: zero);
    ``heads`` each FedPer client's own head (absent: the initial head).
    """

    weights: Arrays
    control: Arrays | None = None
    client_controls: dict[int, Arrays] = field(default_factory=dict)
    heads: dict[int, Arrays] = field(default_factory=dict)

    @classmethod
    def start(cls, weights: Sequence[np.ndarray], algorithm: str) -> RunState:
        w = [np.array(a) for a in weights]
        control = ([np.zeros(a.shape, dtype=np.float64) for a in w]
                   if algorithm == "scaffold" else None)
        return cls(w, control)

    def client_weights(self, u: int, algorithm: str) -> Arrays:
        """The model client ``u`` trains from and predicts with."""
        if algorithm != "fedper":
            return self.weights
        head = self.heads.get(u, self.weights[-HEAD_ARRAYS:])
        return [*self.weights[:-HEAD_ARRAYS], *head]


@dataclass
class ClientUpdate:
    """One client's round: the parts it sends, and the state it adopts if included."""

    parts: list[Arrays]
    control: Arrays | None = None
    head: Arrays | None = None


def check_algorithm(algorithm: str, mu: float) -> None:
    """Refuse an unknown algorithm, or FedProx without a proximal term (ConfigError)."""
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"algorithm must be one of {', '.join(ALGORITHMS)}")
    if algorithm == "fedprox" and not mu > 0:
        raise ConfigError("fedprox needs mu > 0")


def check_model(model: Model, algorithm: str) -> None:
    """Refuse a model the algorithm cannot train (ConfigError), before any round."""
    if algorithm == "scaffold" and "correction" not in inspect.signature(model.fit).parameters:
        raise ConfigError("scaffold needs a model whose fit takes a gradient correction")
    if algorithm == "fedper" and len(model.get_weights()) <= HEAD_ARRAYS:
        raise ConfigError("fedper needs a model with a body and a head (e.g. mlp, not logreg)")


def num_parts(algorithm: str) -> int:
    return 2 if algorithm == "scaffold" else 1


def local_update(model: Model, client: ClientData, state: RunState, u: int, algorithm: str,
                 *, epochs: int, lr: float, batch_size: int, mu: float,
                 rng: np.random.Generator) -> ClientUpdate:
    """Client ``u``'s local training from ``state`` and what it sends."""
    start = state.client_weights(u, algorithm)
    model.set_weights(start)
    kw = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "mu": mu, "rng": rng}
    if algorithm == "scaffold":
        assert state.control is not None
        c_u = state.client_controls.get(u) or [np.zeros_like(c) for c in state.control]
        model.fit(client.x_train, client.y_train,
                  correction=[c - ci for c, ci in zip(state.control, c_u, strict=True)], **kw)
    else:
        model.fit(client.x_train, client.y_train, **kw)
    new = model.get_weights()
    delta = [np.asarray(w) - np.asarray(s) for w, s in zip(new, start, strict=True)]
    if algorithm == "fedper":
        return ClientUpdate([delta[:-HEAD_ARRAYS]], head=[np.array(h)
                                                          for h in new[-HEAD_ARRAYS:]])
    if algorithm != "scaffold":
        return ClientUpdate([delta])
    steps = epochs * math.ceil(client.y_train.shape[0] / batch_size)
    if steps == 0:  # no local step: nothing learnt about the client's gradient
        dc = [np.zeros_like(ci) for ci in c_u]
    else:  # c_u+ - c_u = -c + (w - y_u) / (K lr) = -c - delta / (K lr)
        dc = [-c - np.asarray(d, dtype=np.float64) / (steps * lr)
              for c, d in zip(state.control, delta, strict=True)]
    new_c = [ci + d for ci, d in zip(c_u, dc, strict=True)]
    return ClientUpdate([delta, dc], control=new_c)


def apply(state: RunState, means: list[Arrays], updates: dict[int, ClientUpdate],
          included: Sequence[int], included_weight: int, total_weight: int,
          algorithm: str) -> None:
    """The server's step with the parts' means, and the included clients' new local state."""
    delta = means[0]
    if algorithm == "fedper":
        body = len(state.weights) - HEAD_ARRAYS
        delta = [*delta, *(np.zeros_like(w) for w in state.weights[body:])]
    state.weights = [np.asarray(w + d).astype(w.dtype, copy=False)
                     for w, d in zip(state.weights, delta, strict=True)]
    if algorithm == "scaffold":
        assert state.control is not None
        share = included_weight / total_weight
        state.control = [c + share * np.asarray(d, dtype=np.float64)
                         for c, d in zip(state.control, means[1], strict=True)]
    for u in included:
        if updates[u].control is not None:
            state.client_controls[u] = updates[u].control  # type: ignore[assignment]
        if updates[u].head is not None:
            state.heads[u] = updates[u].head  # type: ignore[assignment]


def client_metrics(model: Model, data: FederatedData, state: RunState,
                   algorithm: str) -> dict[int, Metrics]:
    """Each client's loss and accuracy on its own test part, with the model it would use."""
    out: dict[int, Metrics] = {}
    for u, client in sorted(data.clients.items()):
        model.set_weights(state.client_weights(u, algorithm))
        out[u] = model.evaluate(client.x_test, client.y_test)
    return out


def evaluate(model: Model, data: FederatedData, state: RunState, algorithm: str) -> Metrics:
    """Test metrics over every client's test part: the global model on their union, or
    (FedPer) each client's own model on its own part, pooled by test-set size."""
    if algorithm != "fedper":
        model.set_weights(state.weights)
        return model.evaluate(data.x_test, data.y_test)
    per = client_metrics(model, data, state, algorithm)
    sizes = {u: c.y_test.shape[0] for u, c in data.clients.items()}
    n = sum(sizes.values())
    return Metrics(loss=sum(m.loss * sizes[u] for u, m in per.items()) / n,
                   accuracy=sum(m.accuracy * sizes[u] for u, m in per.items()) / n)


def worst_fraction_mean(values: Sequence[float], fraction: float = 0.1) -> float:
    """Mean of the lowest ``ceil(fraction * n)`` values (at least one): "worst 10%"."""
    if not values:
        raise ConfigError("no values")
    k = max(1, math.ceil(fraction * len(values)))
    return float(np.mean(sorted(values)[:k]))

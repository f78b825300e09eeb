"""FedAvg around secure aggregation: every round's secure mean is the plaintext weighted
mean of the same clients within the quantization bound, the default job learns digits,
FedProx with mu = 0 is FedAvg, and aborted rounds keep the model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pytest

import fl.fedavg as fedavg_mod
from fl.data import FederatedData, federate
from fl.fedavg import FedAvgConfig, TrainingHistory, run_fedavg
from fl.models import LogisticRegression, make_model
from secagg.aggregator import AggregationResult, SecureAggregator
from secagg.errors import ConfigError


class SpyAggregator(SecureAggregator):
    """Records every aggregation's inputs and result, to check them independently."""

    calls: ClassVar[list[tuple[dict[int, list[np.ndarray]], dict[int, int],
                               AggregationResult]]] = []

    def aggregate(self, updates_by_client: Mapping[int, Sequence[np.ndarray]],
                  weights: Mapping[int, int] | None = None, **kw: Any) -> AggregationResult:
        result = super().aggregate(updates_by_client, weights, **kw)
        type(self).calls.append(({u: [a.copy() for a in v] for u, v in updates_by_client.items()},
                                 dict(weights or {}), result))
        return result


@pytest.fixture(scope="module")
def digits() -> FederatedData:
    return federate("digits", 20, alpha=0.5, seed=0)


@pytest.fixture(scope="module")
def default_run(digits: FederatedData) -> tuple[TrainingHistory, list]:
    """The `secagg train` defaults: 20 clients, Dirichlet 0.5, 10 rounds, 20% dropout at a
    random protocol round, SecAgg+ graph, logistic regression."""
    mp = pytest.MonkeyPatch()
    SpyAggregator.calls = []
    mp.setattr(fedavg_mod, "SecureAggregator", SpyAggregator)
    try:
        model = make_model("logreg", digits.num_features, digits.num_classes)
        history = run_fedavg(digits, model, FedAvgConfig())
    finally:
        mp.undo()
    return history, list(SpyAggregator.calls)


def test_every_round_secure_mean_equals_plaintext_weighted_mean(
        default_run: tuple[TrainingHistory, list], digits: FederatedData) -> None:
    history, calls = default_run
    config = history.config
    assert config.graph == "harary" and config.dropout == 0.2
    assert len(calls) == config.rounds == len(history.rounds)
    points = set()
    for record, (updates, weights, result) in zip(history.rounds, calls, strict=True):
        assert not record.aborted
        points.add(record.drop_at)
        # weights are the clients' example counts, and the dropouts really happened
        assert weights == {u: digits.clients[u].num_examples for u in record.cohort}
        assert len(record.cohort) - len(record.included) in (0, 4)
        assert list(result.included) == record.included
        # independent oracle: numpy weighted mean of the clipped updates of the included
        w = np.array([weights[u] for u in result.included], dtype=np.float64)
        assert result.total_weight == int(w.sum())
        for i, secure in enumerate(result.mean):
            stack = np.stack([np.clip(updates[u][i], -config.clip, config.clip)
                              for u in result.included])
            plain = np.tensordot(w, stack, axes=1) / w.sum()
            assert np.abs(secure - plain).max() <= record.error_bound
        assert record.aggregation_error is not None
        assert record.aggregation_error <= record.error_bound
    assert len(points) > 1  # "random" really varied the protocol round
    assert history.within_bound


def test_default_job_learns_digits(default_run: tuple[TrainingHistory, list]) -> None:
    history, _ = default_run
    secure, plain = history.final_accuracy_secure, history.final_accuracy_plaintext
    assert plain is not None
    assert secure >= 0.90
    assert abs(secure - plain) <= 0.01
    assert history.initial_accuracy < 0.3
    summary = history.to_dict()
    assert summary["final_accuracy_secure"] == secure
    assert len(summary["rounds"]) == 10 and summary["secagg_seconds"] > 0


class PlainSGD(LogisticRegression):
    """Reference FedAvg client: textbook minibatch SGD with no proximal code at all."""

    def fit(self, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, batch_size: int,
            mu: float, rng: np.random.Generator) -> None:
        for _ in range(epochs):
            order = rng.permutation(y.shape[0])
            for start in range(0, y.shape[0], batch_size):
                batch = order[start : start + batch_size]
                _, grads = self._loss_and_grads(x[batch], y[batch])
                for p, g in zip(self.params, grads, strict=True):
                    p -= lr * g


def test_fedprox_with_mu_zero_equals_fedavg(digits: FederatedData) -> None:
    config = FedAvgConfig(rounds=3, local_epochs=2, mu=0.0, plaintext_baseline=False)
    prox, ref = LogisticRegression(64, 10), PlainSGD(64, 10)
    h_prox = run_fedavg(digits, prox, config)
    h_ref = run_fedavg(digits, ref, config)
    for a, b in zip(prox.get_weights(), ref.get_weights(), strict=True):
        assert np.array_equal(a, b)
    assert [r.accuracy_secure for r in h_prox.rounds] == [r.accuracy_secure for r in h_ref.rounds]
    # and mu > 0 does change the training
    other = LogisticRegression(64, 10)
    run_fedavg(digits, other, FedAvgConfig(rounds=3, local_epochs=2, mu=0.5,
                                           plaintext_baseline=False))
    assert not np.array_equal(other.get_weights()[0], prox.get_weights()[0])


class AbortRoundTwo(SecureAggregator):
    """Drops 15 of the cohort at masked-input in round 2: fewer than t, so it aborts."""

    def aggregate(self, updates_by_client: Mapping[int, Sequence[np.ndarray]],
                  weights: Mapping[int, int] | None = None, **kw: Any) -> AggregationResult:
        if kw.get("round_index") == 2:
            kw["dropouts"] = {"masked-input": sorted(updates_by_client)[:15]}
        return super().aggregate(updates_by_client, weights, **kw)


def test_aborted_round_keeps_the_model_and_training_goes_on(
        digits: FederatedData, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fedavg_mod, "SecureAggregator", AbortRoundTwo)
    config = FedAvgConfig(rounds=3, local_epochs=1, graph="complete", dropout=0.1)
    history = run_fedavg(digits, LogisticRegression(64, 10), config)
    r1, r2, r3 = history.rounds
    assert not r1.aborted and r2.aborted and not r3.aborted
    assert r2.abort_reason and "fewer than t" in r2.abort_reason
    assert r2.included == [] and r2.aggregation_error is None and r2.total_weight == 0
    assert r2.accuracy_secure == r1.accuracy_secure
    assert r2.accuracy_plaintext == r1.accuracy_plaintext  # the baseline skips it too
    assert r3.accuracy_secure != r2.accuracy_secure
    assert history.to_dict()["aborted_rounds"] == [2]


def test_cohort_sampling_and_fixed_drop_point(digits: FederatedData) -> None:
    config = FedAvgConfig(rounds=3, cohort_size=12, local_epochs=1, drop_at="unmask",
                          dropout=0.25, graph="complete")
    history = run_fedavg(digits, make_model("mlp", 64, 10), config)
    cohorts = [r.cohort for r in history.rounds]
    for r in history.rounds:
        assert len(r.cohort) == 12 and set(r.cohort) <= set(range(1, 21))
        assert r.drop_at == "unmask"
        assert r.included == r.cohort  # dropping at unmasking leaves the input in
        assert r.aggregation_error is not None and r.aggregation_error <= r.error_bound
    assert cohorts[0] != cohorts[1]


def test_refusals(digits: FederatedData) -> None:
    model = LogisticRegression(64, 10)
    with pytest.raises(ConfigError, match="exceeds"):
        run_fedavg(digits, model, FedAvgConfig(cohort_size=21))
    with pytest.raises(ConfigError, match="below the minimum"):
        run_fedavg(digits, model, FedAvgConfig(cohort_size=5))
    small = federate("breast_cancer", 4, iid=True)
    with pytest.raises(ConfigError, match="below the minimum"):
        run_fedavg(small, LogisticRegression(30, 2), FedAvgConfig(graph="complete"))
    with pytest.raises(ConfigError, match="Harary"):
        run_fedavg(small, LogisticRegression(30, 2), FedAvgConfig())
    for bad in ({"rounds": 0}, {"dropout": 1.0}, {"drop_at": "lunch"}, {"lr": -1.0},
                {"cohort_size": 0}, {"local_epochs": -1}):
        with pytest.raises(ConfigError):
            FedAvgConfig(**bad)

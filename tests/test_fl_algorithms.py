"""SCAFFOLD, FedPer and per-part clipping ranges (fl.algorithms, fl.parts).

SCAFFOLD is checked against a direct plaintext implementation written here
from the paper (option II), replayed on the clients the secure rounds
included: the plaintext twin must match it to float precision and the secure
run within the quantization bound; the control variates must follow the
paper's partial-participation rule under dropouts. FedPer must never send a
head, and reports per-client accuracies.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import fl.fedavg as fedavg_mod
from fl import parts
from fl.algorithms import HEAD_ARRAYS, worst_fraction_mean
from fl.data import FederatedData, federate
from fl.fedavg import FedAvgConfig, _Trainer, run_fedavg
from fl.models import LogisticRegression, make_model
from secagg.aggregator import AggregationResult, SecureAggregator
from secagg.cli import main
from secagg.errors import ConfigError

SEED = 3


@pytest.fixture(scope="module")
def tiny() -> FederatedData:
    return federate("digits", 10, alpha=0.3, seed=SEED)


def tiny_config(**kw: Any) -> FedAvgConfig:
    base: dict[str, Any] = {"rounds": 3, "local_epochs": 1, "dropout": 0.2,
                            "drop_at": "masked-input", "seed": SEED, "algorithm": "scaffold"}
    return FedAvgConfig(**{**base, **kw})


# --------------------------------------------------------------------- per-part ranges


def test_pack_unpack_round_trip_and_bounds() -> None:
    rng = np.random.default_rng(0)
    model = [rng.normal(0, 1, (3, 2)), rng.normal(0, 1, 4)]
    control = [rng.normal(0, 0.01, (3, 2))]
    packed = parts.pack([model, control], [2.0, 0.05], 2.0)
    assert len(packed) == 3
    np.testing.assert_array_equal(packed[0], model[0])  # scale 1: as it is
    np.testing.assert_allclose(packed[2], control[0] * 40.0)
    back = parts.unpack(packed, [2, 1], [2.0, 0.05], 2.0)
    np.testing.assert_allclose(back[1][0], control[0], rtol=1e-15)
    assert parts.part_bounds(1e-4, [2.0, 0.05], 2.0) == pytest.approx([1e-4, 2.5e-6])
    with pytest.raises(ConfigError):
        parts.pack([model], [2.0, 1.0], 2.0)
    with pytest.raises(ConfigError):
        parts.pack([model], [0.0], 2.0)


def test_one_session_gives_each_part_its_own_range_and_step() -> None:
    """Small control deltas aggregated next to large model deltas keep their precision
    (a single range of 2.0 would give them an error near 3e-5, larger than their size)."""
    rng = np.random.default_rng(1)
    ids = list(range(1, 11))
    model = {u: [rng.uniform(-1.5, 1.5, 50)] for u in ids}
    control = {u: [rng.uniform(-0.02, 0.02, 50) + (0.5 if u == 1 else 0.0)] for u in ids}
    clips = [2.0, 0.05]
    agg = SecureAggregator(clip=2.0, bits=16, max_weight=5, seed=0)
    weights = {u: 1 + u % 5 for u in ids}
    packed = {u: parts.pack([model[u], control[u]], clips, 2.0) for u in ids}
    result = agg.aggregate(packed, weights)
    m_model, m_control = parts.unpack(result.mean, [1, 1], clips, 2.0)
    b_model, b_control = parts.part_bounds(agg.error_bound, clips, 2.0)
    total = sum(weights.values())
    want_model = sum(weights[u] * model[u][0] for u in ids) / total
    # the control part is clipped to its own range (client 1's +0.5 is cut at 0.05)
    want_control = sum(weights[u] * np.clip(control[u][0], -0.05, 0.05) for u in ids) / total
    assert np.max(np.abs(m_model[0] - want_model)) <= b_model
    assert np.max(np.abs(m_control[0] - want_control)) <= b_control < 2e-6


# --------------------------------------------------------------------- SCAFFOLD


def _softmax_grads(W: np.ndarray, b: np.ndarray, x: np.ndarray,
                   y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = x @ W + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(y.shape[0]), y] -= 1.0
    p /= y.shape[0]
    return x.T @ p, p.sum(axis=0)


def direct_scaffold(data: FederatedData, included_per_round: Sequence[Sequence[int]],
                    config: FedAvgConfig) -> tuple[list[np.ndarray], list[np.ndarray],
                                                   dict[int, list[np.ndarray]]]:
    """SCAFFOLD option II (Karimireddy et al. 2020, Alg. 1) on softmax regression, from the
    paper, with n_u-weighted means and c += (W_S / W) mean(dc) (partial participation)."""
    d, k = data.num_features, data.num_classes
    x_glob = [np.zeros((d, k)), np.zeros(k)]
    c = [np.zeros((d, k)), np.zeros(k)]
    c_u: dict[int, list[np.ndarray]] = {u: [np.zeros((d, k)), np.zeros(k)] for u in data.clients}
    total = data.num_train
    lr, bs = config.lr, config.batch_size
    for r, included in enumerate(included_per_round, start=1):
        deltas, dcs, n = {}, {}, {}
        for u in included:
            client = data.clients[u]
            y_w = [a.copy() for a in x_glob]
            rng = np.random.default_rng([config.seed, r, u])
            steps = 0
            for _ in range(config.local_epochs):
                order = rng.permutation(client.y_train.shape[0])
                for s in range(0, order.shape[0], bs):
                    batch = order[s : s + bs]
                    g = _softmax_grads(y_w[0], y_w[1], client.x_train[batch],
                                       client.y_train[batch])
                    for i in range(2):
                        y_w[i] -= lr * (g[i] + (c[i] - c_u[u][i]))
                    steps += 1
            deltas[u] = [y_w[i] - x_glob[i] for i in range(2)]
            new_c = [c_u[u][i] - c[i] + (x_glob[i] - y_w[i]) / (steps * lr) for i in range(2)]
            dcs[u] = [new_c[i] - c_u[u][i] for i in range(2)]
            c_u[u] = new_c
            n[u] = client.num_examples
        if not included:
            continue
        w_s = sum(n.values())
        for i in range(2):
            x_glob[i] = x_glob[i] + sum(n[u] * deltas[u][i] for u in included) / w_s
            c[i] = c[i] + (w_s / total) * sum(n[u] * dcs[u][i] for u in included) / w_s
    return x_glob, c, c_u


@pytest.fixture(scope="module")
def scaffold_run(tiny: FederatedData) -> tuple[_Trainer, list]:
    config = tiny_config()
    model = make_model("logreg", tiny.num_features, tiny.num_classes)
    trainer = _Trainer(tiny, model, config, None)
    records = [trainer.round(r) for r in range(1, config.rounds + 1)]
    return trainer, records


def test_scaffold_matches_a_direct_plaintext_implementation(
        scaffold_run: tuple[_Trainer, list], tiny: FederatedData) -> None:
    trainer, records = scaffold_run
    assert any(r.dropped for r in records)  # partial participation happened
    x_glob, c, c_u = direct_scaffold(tiny, [r.included for r in records], trainer.config)
    # the plaintext twin is the paper's algorithm, to float precision
    for got, want in zip(trainer.plain.weights, x_glob, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-9)
    assert trainer.plain.control is not None and trainer.secure.control is not None
    for got, want in zip(trainer.plain.control, c, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-9)
    for u, mine in trainer.plain.client_controls.items():
        for got, want in zip(mine, c_u[u], strict=True):
            np.testing.assert_allclose(got, want, atol=1e-9)
    # the secure run: every round's parts within their own bounds, the model close to it
    for r in records:
        assert r.aggregation_error is not None and r.aggregation_error <= r.error_bound
        assert r.control_aggregation_error is not None
        assert r.control_aggregation_error <= r.control_error_bound
    for got, want in zip(trainer.secure.weights, x_glob, strict=True):
        np.testing.assert_allclose(got, want, atol=20 * records[0].error_bound)
    for got, want in zip(trainer.secure.control, c, strict=True):
        np.testing.assert_allclose(got, want, atol=20 * records[0].control_error_bound)
    assert abs(records[-1].accuracy_secure - records[-1].accuracy_plaintext) <= 0.01


def test_scaffold_control_variates_under_dropouts(
        scaffold_run: tuple[_Trainer, list], tiny: FederatedData) -> None:
    """Only included clients adopt their new c_u (dropped ones keep the old one), and the
    server's c stays the n-weighted mean of every client's c_u."""
    trainer, records = scaffold_run
    ever = set().union(*(r.included for r in records))
    state = trainer.plain
    assert set(state.client_controls) == ever
    total = tiny.num_train
    zero = [np.zeros_like(c) for c in state.control or []]
    for i, c in enumerate(state.control or []):
        mean = sum(tiny.clients[u].num_examples * state.client_controls.get(u, zero)[i]
                   for u in tiny.clients) / total
        np.testing.assert_allclose(c, mean, atol=1e-12)
    # a dropped client's c_u is unchanged by the round it dropped in
    config = tiny_config(rounds=1)
    t2 = _Trainer(tiny, make_model("logreg", tiny.num_features, tiny.num_classes), config, None)
    rec = t2.round(1)
    assert rec.dropped and not set(rec.dropped) & set(t2.secure.client_controls)


def test_scaffold_on_strong_skew_beats_fedavg_and_secure_equals_plaintext() -> None:
    """The issue's target, at the CLI defaults: |secure - plaintext| <= 0.01 at alpha 0.1."""
    data = federate("digits", 20, alpha=0.1, seed=0)
    acc = {}
    for algorithm in ("fedavg", "scaffold"):
        model = make_model("logreg", data.num_features, data.num_classes)
        h = run_fedavg(data, model, FedAvgConfig(algorithm=algorithm, rounds=6))
        assert h.within_bound
        assert abs(h.final_accuracy_secure - (h.final_accuracy_plaintext or 0.0)) <= 0.01
        acc[algorithm] = h.final_accuracy_secure
    assert acc["scaffold"] > acc["fedavg"]


def test_algorithm_refusals(tiny: FederatedData) -> None:
    with pytest.raises(ConfigError, match="algorithm"):
        FedAvgConfig(algorithm="fednova")
    with pytest.raises(ConfigError, match="mu > 0"):
        FedAvgConfig(algorithm="fedprox")
    with pytest.raises(ConfigError, match="control_clip"):
        FedAvgConfig(algorithm="scaffold", control_clip=0.0)
    logreg = LogisticRegression(tiny.num_features, tiny.num_classes)
    with pytest.raises(ConfigError, match="fedper"):
        run_fedavg(tiny, logreg, tiny_config(algorithm="fedper"))

    class NoCorrection(LogisticRegression):
        def fit(self, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float,
                batch_size: int, mu: float, rng: np.random.Generator) -> None:
            super().fit(x, y, epochs=epochs, lr=lr, batch_size=batch_size, mu=mu, rng=rng)

    with pytest.raises(ConfigError, match="scaffold"):
        run_fedavg(tiny, NoCorrection(tiny.num_features, tiny.num_classes), tiny_config())


# --------------------------------------------------------------------- FedPer


class SpyAggregator(SecureAggregator):
    """Records the shapes of every update the server's session is given."""

    shapes: ClassVar[list[list[tuple[int, ...]]]] = []

    def aggregate(self, updates_by_client: Mapping[int, Sequence[np.ndarray]],
                  weights: Mapping[int, int] | None = None, **kw: Any) -> AggregationResult:
        for arrays in updates_by_client.values():
            type(self).shapes.append([np.shape(a) for a in arrays])
        return super().aggregate(updates_by_client, weights, **kw)


def test_fedper_sends_only_the_body_and_reports_personal_accuracies(
        tiny: FederatedData, monkeypatch: pytest.MonkeyPatch) -> None:
    SpyAggregator.shapes = []
    monkeypatch.setattr(fedavg_mod, "SecureAggregator", SpyAggregator)
    model = make_model("mlp", tiny.num_features, tiny.num_classes, seed=SEED)
    start = model.get_weights()
    body_shapes = [a.shape for a in start[:-HEAD_ARRAYS]]
    config = tiny_config(algorithm="fedper", rounds=3, local_epochs=2)
    trainer = _Trainer(tiny, model, config, None)
    records = [trainer.round(r) for r in range(1, 4)]
    assert SpyAggregator.shapes and all(s == body_shapes for s in SpyAggregator.shapes)
    # heads stay with their clients and differ between them; dropped-out clients in a round
    # keep their previous head; the shared head slot never moves
    heads = trainer.secure.heads
    assert set(heads) == set().union(*(r.included for r in records))
    a, b = sorted(heads)[:2]
    assert not np.allclose(heads[a][0], heads[b][0])
    for got, init in zip(trainer.secure.weights[-HEAD_ARRAYS:], start[-HEAD_ARRAYS:],
                         strict=True):
        np.testing.assert_array_equal(got, init)
    for r in records:
        assert r.aggregation_error is not None and r.aggregation_error <= r.error_bound
        assert r.control_aggregation_error is None
    per = trainer.personal(trainer.secure)
    assert set(per) == set(tiny.clients) and all(0.0 <= v <= 1.0 for v in per.values())


def test_personal_accuracy_fields_in_the_history(tiny: FederatedData) -> None:
    model = make_model("mlp", tiny.num_features, tiny.num_classes, seed=SEED)
    history = run_fedavg(tiny, model, tiny_config(algorithm="fedper", rounds=2))
    out = history.to_dict()
    values = sorted(history.personal_accuracy_secure.values())
    assert out["algorithm"] == "fedper"
    assert out["personal_accuracy_mean"] == pytest.approx(float(np.mean(values)))
    assert out["personal_accuracy_worst10"] == pytest.approx(values[0])  # 10 clients: 1
    assert out["personal_accuracy_mean_plaintext"] is not None
    assert len(out["personal_accuracies"]) == len(tiny.clients)


def test_worst_fraction_mean() -> None:
    assert worst_fraction_mean([0.9, 0.1, 0.5]) == pytest.approx(0.1)
    assert worst_fraction_mean([float(i) for i in range(20)]) == pytest.approx(0.5)
    assert worst_fraction_mean([float(i) for i in range(21)]) == pytest.approx(1.0)
    assert math.isclose(worst_fraction_mean([0.3], 0.5), 0.3)
    with pytest.raises(ConfigError):
        worst_fraction_mean([])


# --------------------------------------------------------------------- CLI


def test_cli_algorithms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = ["--json", "--rounds", "2", "--local-epochs", "1", "--alpha", "0.1"]
    assert main(["train", "--algorithm", "scaffold", *small, "--out", str(tmp_path / "s")]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["algorithm"] == s["config"]["algorithm"] == "scaffold"
    assert s["within_bound"] is True and s["max_control_aggregation_error"] is not None
    assert s["rounds"][0]["control_error_bound"] < s["rounds"][0]["error_bound"]
    assert 0.0 <= s["personal_accuracy_worst10"] <= s["personal_accuracy_mean"] <= 1.0
    for key in ("final_accuracy_secure", "final_accuracy_plaintext", "max_aggregation_error"):
        assert key in s  # the existing fields stay
    assert main(["train", "--algorithm", "fedprox", *small, "--out", str(tmp_path / "p")]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["mu"] == 0.01
    assert main(["train", "--algorithm", "fedper", *small, "--out", str(tmp_path / "f")]) == 2
    assert "fedper" in capsys.readouterr().err


# --------------------------------------------------------------------- bench


def test_bench_algorithms_rows_and_table() -> None:
    from bench import algorithms as bench_alg

    rows = [bench_alg.one_run("scaffold", 0.5, 0, 2, "logreg"),
            bench_alg.one_run("fedper", 0.5, 0, 1, "mlp")]
    assert rows[0]["within_bound"] and rows[0]["rounds"] == 2
    hit = rows[0]["rounds_to_target_secure"]
    assert hit is None or 1 <= hit <= 2
    text = bench_alg.markdown({"machine": {"cpu": "x", "cpu_count": 1, "python": "3"},
                               "target": 0.85, "seeds": [0], "rounds": 2, "fedprox_mu": 0.01,
                               "rows": rows})
    assert "| scaffold | 0.5 |" in text and "| fedper | 0.5 |" in text
    assert bench_alg._rounds_cell([None, 3, 5]) == "4 (3-5), never in 1"
    assert bench_alg._rounds_cell([None]) == "never"

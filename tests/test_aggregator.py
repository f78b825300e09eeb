"""SecureAggregator: the secure weighted mean equals the plaintext one within the
quantization bound, for every drop point, dtype and weighting; refusals are typed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from secagg.aggregator import (
    AggregationAborted,
    AggregationResult,
    ClippingWarning,
    SecureAggregator,
    protocol_ids,
    weighted_mean,
)
from secagg.errors import AbortError, ConfigError
from secagg.quantize import error_bound
from secagg.rounds import SEMI_HONEST_ROUNDS, Round

N = 12


def updates(seed: int = 0, n: int = N, *, scale: float = 0.3,
            dtype: type = np.float64) -> dict[int, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {u: [rng.normal(0, scale, (5, 3)).astype(dtype), rng.normal(0, scale, 4).astype(dtype)]
            for u in range(1, n + 1)}


def weights(seed: int = 0, n: int = N, cap: int = 500) -> dict[int, int]:
    rng = np.random.default_rng(seed + 1)
    return {u: int(rng.integers(1, cap + 1)) for u in range(1, n + 1)}


def max_error(result: AggregationResult, oracle: list[np.ndarray]) -> float:
    return max(float(np.abs(np.asarray(m, dtype=np.float64) - o).max())
               for m, o in zip(result.mean, oracle, strict=True))


@pytest.mark.parametrize("graph", ["complete", "harary"])
@pytest.mark.parametrize("point", [None, *SEMI_HONEST_ROUNDS])
def test_secure_mean_matches_plaintext_weighted_mean(graph: str, point: Round | None) -> None:
    ups, w = updates(3), weights(3)
    agg = SecureAggregator(clip=1.0, bits=16, max_weight=500, graph=graph, dropout_rate=0.25,
                           seed=7)
    drops = {} if point is None else {point: {2, 5}}
    result = agg.aggregate(ups, w, dropouts=drops)
    if point in (None, Round.UNMASKING):  # dropping at unmasking: the input is already in
        assert result.included == tuple(range(1, N + 1))
    else:
        assert result.included == tuple(u for u in range(1, N + 1) if u not in (2, 5))
        assert result.dropped == (2, 5)
    assert result.total_weight == sum(w[u] for u in result.included)
    assert [a.shape for a in result.mean] == [(5, 3), (4,)]
    oracle = weighted_mean(ups, w, result.included, clip=1.0)
    assert max_error(result, oracle) <= agg.error_bound
    assert agg.error_bound == error_bound(result.quantization)


def test_clipping_is_what_the_mean_approximates() -> None:
    ups = updates(4, scale=2.0)  # many coordinates beyond the clip
    w = weights(4)
    agg = SecureAggregator(clip=0.5, max_weight=500, seed=1)
    with pytest.warns(ClippingWarning):
        result = agg.aggregate(ups, w)
    clipped = weighted_mean(ups, w, result.included, clip=0.5)
    raw = weighted_mean(ups, w, result.included)
    assert max_error(result, clipped) <= agg.error_bound
    assert max_error(result, raw) > agg.error_bound  # so the clip really was applied


def test_unweighted_and_float32_and_integer_arrays() -> None:
    rng = np.random.default_rng(5)
    ups = {u: [rng.normal(0, 0.2, 6).astype(np.float32), np.array([u % 3, 1], dtype=np.int32)]
           for u in range(1, N + 1)}
    agg = SecureAggregator(clip=4.0, bits=20, seed=2)  # max_weight=1: plain mean
    result = agg.aggregate(ups)
    assert result.quantization.weighted is False
    assert result.total_weight == N
    assert result.mean[0].dtype == np.float32 and result.mean[1].dtype == np.int32
    oracle = weighted_mean(ups, None, result.included, clip=4.0)
    # float32 output adds its own rounding (relative 2**-24) on top of the bound
    assert float(np.abs(result.mean[0] - oracle[0]).max()) <= agg.error_bound + 1e-6
    assert np.array_equal(result.mean[1], np.rint(oracle[1]).astype(np.int32))


def test_seeded_rounding_is_reproducible() -> None:
    ups, w = updates(6), weights(6)
    a = SecureAggregator(max_weight=500, seed=11).aggregate(ups, w)
    b = SecureAggregator(max_weight=500, seed=11).aggregate(ups, w)
    for x, y in zip(a.mean, b.mean, strict=True):
        assert np.array_equal(x, y)


def test_abort_carries_the_report() -> None:
    agg = SecureAggregator(max_weight=500)
    with pytest.raises(AggregationAborted) as info:
        agg.aggregate(updates(), weights(), dropouts={"masked-input": set(range(1, 8))})
    assert isinstance(info.value, AbortError)
    assert info.value.report.aborted
    assert "fewer than t" in info.value.reason
    assert info.value.seconds >= 0.0


def test_refusals() -> None:
    agg = SecureAggregator(max_weight=100)
    ups, w = updates(), weights(cap=100)
    bad_shape = dict(ups)
    bad_shape[3] = [np.zeros((3, 5)), np.zeros(4)]
    with pytest.raises(ConfigError, match="client 3's update has shapes"):
        agg.aggregate(bad_shape, w)
    bad_dtype = dict(ups)
    bad_dtype[4] = [a.astype(np.float32) for a in ups[4]]
    with pytest.raises(ConfigError, match="dtypes"):
        agg.aggregate(bad_dtype, w)
    with pytest.raises(ConfigError, match="exactly the clients"):
        agg.aggregate(ups, {u: 1 for u in range(1, N)})
    with pytest.raises(ConfigError, match="max_weight=100"):
        agg.aggregate(ups, {**w, 1: 101})
    with pytest.raises(ConfigError, match="must be an int"):
        agg.aggregate(ups, {**w, 1: 2.0})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="unknown drop point 'lunch'; valid drop points: "
                       "advertise, share-keys, masked-input, consistency, unmask"):
        agg.aggregate(ups, w, dropouts={"lunch": {1}})
    with pytest.raises(ConfigError, match="no update"):
        agg.aggregate(ups, w, dropouts={"advertise": {99}})
    with pytest.raises(ConfigError, match="non-empty"):
        agg.aggregate({}, {})
    with pytest.raises(ConfigError, match="NaN"):
        agg.aggregate({**ups, 2: [np.full((5, 3), np.nan), np.zeros(4)]}, w)
    with pytest.raises(ConfigError, match="below the minimum"):
        agg.aggregate(updates(n=5), weights(n=5, cap=100))
    with pytest.raises(ConfigError, match="clip_warning"):
        SecureAggregator(clip_warning=1.5)
    with pytest.raises(ConfigError, match="unknown graph"):
        SecureAggregator(graph="ring")
    with pytest.raises(ConfigError):
        SecureAggregator(clip=0.0)
    with pytest.raises(ConfigError):
        SecureAggregator(bits=0)
    # the modulus would need more than 64 bits for this cohort: refused before any work
    with pytest.raises(ConfigError, match="64"):
        SecureAggregator(bits=32, max_weight=2**30).aggregate(ups, w)


def test_weighted_mean_oracle() -> None:
    ups = {1: [np.array([1.0, 3.0])], 2: [np.array([3.0, -3.0])]}
    mean = weighted_mean(ups, {1: 1, 2: 3}, [1, 2])
    assert np.allclose(mean[0], [2.5, -1.5])
    assert np.allclose(weighted_mean(ups, {1: 1, 2: 3}, [1, 2], clip=1.0)[0], [1.0, -0.5])
    with pytest.raises(ConfigError):
        weighted_mean(ups, None, [])


def test_any_hashable_client_ids() -> None:
    """Strings (or 0, or a mix) name clients; results speak the caller's ids."""
    ints = updates(8)
    names = {f"hospital-{u:02d}": arrays for u, arrays in ints.items()}
    w = {name: u * 3 for name, u in zip(names, ints, strict=True)}
    agg = SecureAggregator(max_weight=100, seed=3)
    result = agg.aggregate(names, w, dropouts={Round.MASKED_INPUT: ["hospital-04"]})
    assert result.dropped == ("hospital-04",)
    assert result.included == tuple(n for n in names if n != "hospital-04")
    assert result.protocol_ids["hospital-01"] == 1 and result.protocol_ids["hospital-12"] == N
    assert result.report.dropped_ids == [4]  # the report speaks protocol ids
    assert result.total_weight == sum(w[n] for n in result.included)
    oracle = weighted_mean(names, w, result.included, clip=1.0)
    assert max_error(result, oracle) <= agg.error_bound
    with pytest.raises(ConfigError, match="no update"):
        agg.aggregate(names, w, dropouts={"advertise": ["hospital-99"]})
    with pytest.raises(ConfigError, match="client 'hospital-03''s weight"):
        agg.aggregate(names, {**w, "hospital-03": 0})
    # 0 is no protocol id, so these ints are numbered in the caller's order
    zero = {u - 1: arrays for u, arrays in ints.items()}
    assert agg.aggregate(zero).included == tuple(range(N))


def test_protocol_ids_keep_valid_ints_and_number_the_rest() -> None:
    assert protocol_ids([5, 2, 9]) == {2: 2, 5: 5, 9: 9}
    assert protocol_ids(["b", "a"]) == {"b": 1, "a": 2}
    assert protocol_ids([0, 7]) == {0: 1, 7: 2}
    assert protocol_ids([3, "x"]) == {3: 1, "x": 2}


def test_clipped_fraction_is_reported_and_warns_past_the_threshold() -> None:
    ups = updates(9, scale=0.3)
    quiet = SecureAggregator(clip=1.0, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClippingWarning)  # under 5% clipped: no warning
        result = quiet.aggregate(ups)
    flat = np.concatenate([np.concatenate([a.ravel() for a in arrays]) for arrays in ups.values()])
    expected = float(np.mean(np.abs(flat) > 1.0))
    assert result.clipped_fraction == pytest.approx(expected)
    assert expected < 0.05
    tight = SecureAggregator(clip=0.1, seed=1)
    with pytest.warns(ClippingWarning, match=r"lie beyond clip=0\.1 .*threshold 5\.0%"):
        result = tight.aggregate(ups)
    assert result.clipped_fraction == pytest.approx(float(np.mean(np.abs(flat) > 0.1)))
    assert result.clipped_fraction > 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClippingWarning)
        SecureAggregator(clip=0.1, seed=1, clip_warning=None).aggregate(ups)
        SecureAggregator(clip=0.1, seed=1, clip_warning=0.99).aggregate(ups)


def test_aggregating_deltas_as_the_docstring_says() -> None:
    """The module docstring's recipe: weights far outside the clip, deltas inside it."""
    rng = np.random.default_rng(2)
    global_w = [np.full(6, 5.0)]  # weights of magnitude 5: clipped to 1 if sent as they are
    local = {u: [global_w[0] + rng.normal(0, 0.01, 6)] for u in range(1, N + 1)}
    deltas = {u: [lw - gw for lw, gw in zip(local[u], global_w, strict=True)] for u in local}
    result = SecureAggregator(clip=0.1, seed=0).aggregate(deltas)
    new = [gw + d for gw, d in zip(global_w, result.mean, strict=True)]
    exact = np.mean([local[u][0] for u in local], axis=0)
    assert np.abs(new[0] - exact).max() <= SecureAggregator(clip=0.1).error_bound
    with pytest.warns(ClippingWarning):
        wrong = SecureAggregator(clip=1.0, seed=0).aggregate(local)
    assert np.abs(wrong.mean[0] - exact).max() > 3.0  # the weights were clipped to 1

"""Quantization into Z_R: layout round trips, error bounds, unbiasedness, overflow safety."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from secagg.errors import ConfigError, ProtocolError
from secagg.quantize import (
    DecodedSum,
    Layout,
    QuantizationConfig,
    decode_sum,
    default_config,
    encode,
    error_bound,
    flatten,
    quantization_step,
    safe_modulus_bits,
    unflatten,
)

# ----------------------------------------------------------------------------- helpers


def aggregate(vectors: list[np.ndarray], config: QuantizationConfig) -> np.ndarray:
    """Sum mod R exactly as the protocol does (Python ints, so nothing can hide a wrap)."""
    R = config.modulus
    total = [0] * len(vectors[0])
    for v in vectors:
        assert v.dtype == config.dtype
        for i, x in enumerate(v.tolist()):
            total[i] = (total[i] + int(x)) % R
    return np.array(total, dtype=config.dtype)


def fast_aggregate(vectors: list[np.ndarray], config: QuantizationConfig) -> np.ndarray:
    """Sum mod R in uint64 (wrapping mod 2**64, then reduced): for long vectors."""
    acc = np.zeros(vectors[0].shape, dtype=np.uint64)
    for v in vectors:
        acc += v.astype(np.uint64)
    if config.modulus < 2**64:
        acc %= np.uint64(config.modulus)
    return acc.astype(config.dtype)


# ----------------------------------------------------------------------------- layout

NUMERIC_DTYPES = st.sampled_from(
    [
        np.dtype(np.float64),
        np.dtype(np.float32),
        np.dtype(np.float16),
        np.dtype(">f4"),
        np.dtype(np.int8),
        np.dtype(np.int32),
        np.dtype(np.int64),
        np.dtype(np.uint8),
        np.dtype(np.uint64),
        np.dtype(np.bool_),
    ]
)


@st.composite
def update_arrays(draw: st.DrawFn) -> list[np.ndarray]:
    """Mixed shapes (0-d, empty, multi-dimensional) and dtypes, finite values."""
    n = draw(st.integers(0, 5))
    out = []
    for _ in range(n):
        dtype = draw(NUMERIC_DTYPES)
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
        if dtype.kind == "f":
            elements = st.floats(allow_nan=False, allow_infinity=False, width=dtype.itemsize * 8)
        elif dtype.kind in "iu" and dtype.itemsize == 8:
            lo = 0 if dtype.kind == "u" else -(2**53)
            elements = st.integers(lo, 2**53)
        else:
            elements = None
        out.append(draw(hnp.arrays(dtype, shape, elements=elements)))
    return out


@settings(max_examples=150, deadline=None)
@given(arrays=update_arrays())
def test_flatten_round_trip(arrays: list[np.ndarray]) -> None:
    vector, layout = flatten(arrays)
    assert vector.dtype == np.float64 and vector.ndim == 1
    assert vector.size == layout.size == sum(a.size for a in arrays)
    back = unflatten(vector, layout)
    assert len(back) == len(arrays)
    for a, b in zip(arrays, back, strict=True):
        assert b.shape == a.shape
        assert b.dtype == a.dtype
        assert np.array_equal(a, b)


def test_flatten_zero_d_and_empty() -> None:
    arrays = [np.array(3.5), np.zeros((0, 4), dtype=np.float32), np.arange(6).reshape(2, 3)]
    vector, layout = flatten(arrays)
    assert vector.tolist() == [3.5, 0, 1, 2, 3, 4, 5]
    assert layout == Layout(((), (0, 4), (2, 3)), ("<f8", "<f4", np.dtype(np.int64).str))
    back = unflatten(vector, layout)
    assert back[0].shape == () and back[0] == 3.5
    assert back[1].shape == (0, 4) and back[1].dtype == np.float32
    assert np.array_equal(back[2], arrays[2])
    empty, empty_layout = flatten([])
    assert empty.size == 0 and unflatten(empty, empty_layout) == []


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_flatten_refuses_non_finite(bad: float) -> None:
    arrays = [np.zeros(3), np.array([1.0, bad], dtype=np.float32)]
    with pytest.raises(ConfigError, match="NaN or inf"):
        flatten(arrays)


def test_flatten_refuses_non_numeric_and_inexact() -> None:
    for bad in (np.array(["a"]), np.array([1 + 2j]), np.array([object()], dtype=object)):
        with pytest.raises(ConfigError):
            flatten([bad])
    with pytest.raises(ConfigError):
        flatten([np.array([2**53 + 1], dtype=np.int64)])
    with pytest.raises(ConfigError):
        unflatten(np.zeros(3), Layout(((2,),), ("<f8",)))


def test_unflatten_rounds_and_saturates_integers() -> None:
    layout = Layout(((3,), (2,)), ("|u1", "|b1"))
    back = unflatten(np.array([-3.0, 2.6, 300.0, 0.2, 0.7]), layout)
    assert back[0].tolist() == [0, 3, 255]
    assert back[1].tolist() == [False, True]


# ----------------------------------------------------------------------------- config


def worst_case_ok(config: QuantizationConfig) -> bool:
    """Sum max_clients worst-case encodings in big ints; True iff nothing reaches R."""
    worst_input = np.full(3, config.clip * 10.0)  # clipped to c: every coordinate at level L
    vec = encode(worst_input, config, weight=config.max_weight, rng=np.random.default_rng(0))
    per_client = [int(x) for x in vec.tolist()]
    assert per_client[:3] == [config.levels * config.max_weight] * 3
    total = [0] * len(per_client)
    for _ in range(config.max_clients):
        total = [t + x for t, x in zip(total, per_client, strict=True)]
    return max(total) < config.modulus


@settings(max_examples=300, deadline=None)
@given(
    bits=st.integers(1, 32),
    max_clients=st.integers(1, 300),
    max_weight=st.one_of(st.just(1), st.integers(1, 2**40)),
    modulus_bits=st.one_of(st.none(), st.integers(1, 64)),
)
def test_overflow_refused_or_safe(
    bits: int, max_clients: int, max_weight: int, modulus_bits: int | None
) -> None:
    worst = max_clients * max_weight * (2**bits - 1)  # largest coordinate of any sum
    fits = worst < 2 ** (modulus_bits if modulus_bits is not None else 64)
    try:
        config = QuantizationConfig(
            clip=1.0,
            bits=bits,
            max_clients=max_clients,
            max_weight=max_weight,
            modulus_bits=modulus_bits,
        )
    except ConfigError:
        assert not fits
        return
    assert fits
    assert worst_case_ok(config)
    needed = safe_modulus_bits(bits=bits, max_clients=max_clients, max_weight=max_weight)
    if modulus_bits is None:
        assert config.modulus_bits == needed
    assert config.modulus_bits is not None and config.modulus_bits >= needed
    # The auto choice is minimal: one bit fewer is refused, and really would wrap.
    if needed > 1:
        with pytest.raises(ConfigError, match=f"at least {needed}"):
            QuantizationConfig(1.0, bits, max_clients, max_weight, modulus_bits=needed - 1)
        assert worst >= 2 ** (needed - 1)


def test_modulus_boundaries_exact() -> None:
    # 2**16 - 1 levels, 2**16 + 1 clients: worst = 2**32 - 1 < 2**32 exactly.
    cfg = default_config(2**16 + 1, bits=16)
    assert cfg.modulus_bits == 32 and cfg.dtype == np.uint32
    # One more client and the sum no longer fits in 32 bits.
    cfg = default_config(2**16 + 2, bits=16)
    assert cfg.modulus_bits == 33 and cfg.dtype == np.uint64
    # Largest supported: worst = (2**32 + 1)(2**32 - 1) = 2**64 - 1.
    cfg = default_config(2**32 + 1, bits=32)
    assert cfg.modulus_bits == 64 and cfg.modulus == 2**64
    with pytest.raises(ConfigError, match="65-bit"):
        default_config(2**32 + 2, bits=32)


def test_config_validation() -> None:
    good = {"clip": 1.0, "bits": 8, "max_clients": 10}
    bad_fields = [
        ("clip", 0.0),
        ("clip", -1.0),
        ("clip", math.inf),
        ("clip", math.nan),
        ("clip", True),
        ("bits", 0),
        ("bits", 33),
        ("bits", 8.0),
        ("max_clients", 0),
        ("max_weight", 0),
        ("modulus_bits", 0),
        ("modulus_bits", 65),
    ]
    for field, value in bad_fields:
        with pytest.raises(ConfigError):
            QuantizationConfig(**{**good, field: value})  # type: ignore[arg-type]
    cfg = QuantizationConfig(**good)
    assert not cfg.weighted and cfg.dim_overhead == 0
    assert QuantizationConfig(**good, max_weight=2).dim_overhead == 1
    assert cfg == default_config(10, bits=8)


# ----------------------------------------------------------------------------- encode / decode


def test_encode_shape_dtype_and_weight_coordinate() -> None:
    cfg = default_config(10, bits=4, max_weight=100)
    v = encode(np.array([-2.0, -1.0, 0.0, 1.0, 5.0]), cfg, weight=3, rng=np.random.default_rng(1))
    assert v.dtype == cfg.dtype and v.shape == (6,)
    assert v[-1] == 3
    assert v[0] == 0 and v[1] == 0  # clipped to -c: level 0
    assert v[3] == 15 * 3 and v[4] == 15 * 3  # c: level L, times the weight
    assert v[2] in (7 * 3, 8 * 3)  # y = 7.5


def test_encode_argument_checks() -> None:
    cfg = default_config(10, bits=8, max_weight=5)
    x = np.zeros(4)
    for weight in (0, 6, 2.0, True):
        with pytest.raises(ConfigError):
            encode(x, cfg, weight=weight)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="NaN or inf"):
        encode(np.array([0.0, np.nan]), cfg)
    with pytest.raises(ConfigError):
        encode(np.zeros((2, 2)), cfg)
    with pytest.raises(ConfigError):
        encode(x, default_config(10), weight=2)  # unweighted: weight must be 1


@pytest.mark.parametrize("bits", [1, 2, 8, 16, 32])
@pytest.mark.parametrize("clip", [0.01, 1.0, 1000.0])
def test_single_client_round_trip_within_bound(bits: int, clip: float) -> None:
    cfg = default_config(1, clip=clip, bits=bits)
    rng = np.random.default_rng(bits)
    x = rng.normal(scale=clip, size=2000)
    x[:4] = [clip, -clip, 3 * clip, -3 * clip]
    decoded = decode_sum(encode(x, cfg, rng=rng), cfg, num_clients=1)
    assert isinstance(decoded, DecodedSum)
    assert decoded.total_weight == 1
    err = np.abs(decoded.mean - np.clip(x, -clip, clip))
    assert err.max() <= error_bound(cfg)
    assert error_bound(cfg) < quantization_step(cfg) * (1 + 1e-4)
    assert np.array_equal(decoded.sum, decoded.mean)


@pytest.mark.parametrize(("bits", "num_clients"), [(4, 50), (16, 200), (32, 7)])
def test_many_clients_sum_within_bound(bits: int, num_clients: int) -> None:
    cfg = default_config(num_clients + 5, clip=2.0, bits=bits)
    rng = np.random.default_rng(num_clients)
    xs = [rng.uniform(-3.0, 3.0, size=500) for _ in range(num_clients)]
    total = fast_aggregate([encode(x, cfg, rng=rng) for x in xs], cfg)
    decoded = decode_sum(total, cfg, num_clients=num_clients)
    clipped = [np.clip(x, -2.0, 2.0) for x in xs]
    assert decoded.total_weight == num_clients
    assert np.abs(decoded.mean - np.mean(clipped, axis=0)).max() <= error_bound(cfg)
    assert np.abs(decoded.sum - np.sum(clipped, axis=0)).max() <= num_clients * error_bound(cfg)


def test_weighted_mean_matches_numpy() -> None:
    cfg = default_config(30, clip=1.5, bits=12, max_weight=1000)
    rng = np.random.default_rng(7)
    num_clients = 25
    xs = [rng.normal(scale=1.0, size=300) for _ in range(num_clients)]
    weights = [int(w) for w in rng.integers(1, 1001, size=num_clients)]
    weights[0] = 1000  # the cap itself is allowed
    encoded = [encode(x, cfg, weight=w, rng=rng) for x, w in zip(xs, weights, strict=True)]
    decoded = decode_sum(aggregate(encoded, cfg), cfg, num_clients=num_clients)
    assert decoded.total_weight == sum(weights)
    expected = np.average([np.clip(x, -1.5, 1.5) for x in xs], axis=0, weights=weights)
    assert decoded.mean.shape == expected.shape
    assert np.abs(decoded.mean - expected).max() <= error_bound(cfg)


def test_masks_cancel_mod_r() -> None:
    """What the protocol relies on: adding masks that sum to 0 mod R changes nothing."""
    cfg = default_config(3, bits=10, max_weight=4)
    rng = np.random.default_rng(3)
    encoded = [encode(rng.normal(size=50), cfg, weight=w, rng=rng) for w in (1, 4, 2)]
    R = cfg.modulus
    masks = [rng.integers(0, R, size=51) for _ in range(2)]
    masks.append((-(masks[0] + masks[1])) % R)
    masked = [
        ((e.astype(np.int64) + m) % R).astype(cfg.dtype)
        for e, m in zip(encoded, masks, strict=True)
    ]
    plain = decode_sum(aggregate(encoded, cfg), cfg, num_clients=3)
    via_masks = decode_sum(aggregate(masked, cfg), cfg, num_clients=3)
    assert np.array_equal(plain.mean, via_masks.mean) and plain.total_weight == 7


@pytest.mark.parametrize("value", [0.3, -0.77, 0.0001, 0.5])
def test_stochastic_rounding_unbiased(value: float) -> None:
    """The average level converges to y; tolerance is 6 standard deviations of the mean.

    Each coordinate is an independent trial: level = floor(y) + Bernoulli(p) with
    p = frac(y), so the mean of N levels has standard deviation sqrt(p(1-p)/N).
    A 6-sigma bound fails by chance with probability below 1e-8.
    """
    cfg = default_config(1, clip=1.0, bits=3)
    n = 400_000
    encoded = encode(np.full(n, value), cfg, rng=np.random.default_rng(11))
    levels = encoded.astype(np.float64)
    y = (value + 1.0) / 2.0 * cfg.levels
    p = y - math.floor(y)
    assert set(np.unique(levels).tolist()) <= {math.floor(y), math.floor(y) + 1}
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(levels.mean() - y) <= 6 * sigma
    # The same statement in input units, through the decoder.
    decoded = decode_sum(encoded, cfg, num_clients=1).mean
    assert abs(decoded.mean() - value) <= 6 * sigma * quantization_step(cfg) + 1e-12


def test_decode_refuses_inconsistent_aggregates() -> None:
    cfg = default_config(5, bits=8, max_weight=10)
    ok = aggregate([encode(np.zeros(4), cfg, weight=2), encode(np.zeros(4), cfg, weight=3)], cfg)
    assert decode_sum(ok, cfg, num_clients=2).total_weight == 5
    with pytest.raises(ConfigError):
        decode_sum(ok, cfg, num_clients=6)  # more than max_clients
    with pytest.raises(ConfigError):
        decode_sum(ok, cfg, num_clients=0)
    zero_weight = ok.copy()
    zero_weight[-1] = 0
    with pytest.raises(ProtocolError):
        decode_sum(zero_weight, cfg, num_clients=2)
    heavy = ok.copy()
    heavy[-1] = 21  # more than 2 clients * max_weight 10
    with pytest.raises(ProtocolError):
        decode_sum(heavy, cfg, num_clients=2)
    too_big = ok.copy()
    too_big[0] = 5 * 255 + 1  # above W * L: a wrapped or forged sum
    with pytest.raises(ProtocolError):
        decode_sum(too_big, cfg, num_clients=2)
    outside = ok.astype(np.uint64)
    outside[0] = cfg.modulus
    with pytest.raises(ProtocolError):
        decode_sum(outside, cfg, num_clients=2)
    with pytest.raises(ProtocolError):
        decode_sum(np.zeros(0, dtype=cfg.dtype), cfg, num_clients=2)

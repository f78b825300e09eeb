"""End to end: plan, encode n clients, add mod 2^B, decode (spec §21.3-§21.8)."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from secagg.dp import vectors
from secagg.dp.accountant import DPAccountant
from secagg.dp.errors import BelowSurvivorFloorError, DPConfigError
from secagg.dp.params import DPParams, check_mechanism
from secagg.dp.pipeline import decode_mean, encode_client
from secagg.dp.planning import format_plan, plan, plan_json
from secagg.dp.ring import add_mod
from secagg.errors import ConfigError

SID = b"\x07" * 32


def secure_sum(encoded: list[np.ndarray], bits: int) -> np.ndarray:
    acc = np.zeros_like(encoded[0])
    for e in encoded:
        acc = add_mod(acc, e, bits)
    return acc


@pytest.mark.parametrize("mechanism", ["ddg", "skellam"])
def test_end_to_end_mean_within_predicted_error(mechanism: str) -> None:
    n, dim = 30, 500
    p = plan(n, dim, 1.0, 4.0, 1e-5, 10, bits=16, mechanism=mechanism, survivor_floor=25)
    assert p.epsilon <= 4.0 and p.wrap_probability <= 1e-4
    rng = np.random.default_rng(3)  # client data, not noise
    xs = [rng.normal(size=dim) * rng.uniform(0.01, 0.2) for _ in range(n)]
    clipped = [x / max(1.0, float(np.linalg.norm(x))) for x in xs]
    enc = [encode_client(x, p.params, SID, 5) for x in xs]
    assert all(e.max() < 2**16 and e.shape == (512,) for e in enc)
    mean = decode_mean(secure_sum(enc, 16), p.params, SID, n, 5)
    err = float(np.sum((mean - np.mean(clipped, axis=0)) ** 2))
    assert err <= 1.5 * p.mse
    assert err >= 0.5 * p.mse  # the noise is really there


def test_dropouts_decode_and_refusal_below_floor() -> None:
    params = DPParams("ddg", dim=100, clip=1.0, gamma=50.0, bits=20, noise=Fraction(4),
                      floor=8, clients=10)
    xs = [np.full(100, 0.05) for _ in range(10)]
    enc = [encode_client(x, params, SID) for x in xs]
    mean = decode_mean(secure_sum(enc[:8], 20), params, SID, 8)
    assert np.allclose(mean, 0.05, atol=0.1)
    with pytest.raises(BelowSurvivorFloorError):
        decode_mean(secure_sum(enc[:7], 20), params, SID, 7)
    acc = DPAccountant(params, 1e-5)
    assert acc.charge(8).epsilon_round > DPAccountant(params, 1e-5).charge(10).epsilon_round


def test_plan_refuses_unsafe_bits_and_bad_configs() -> None:
    with pytest.raises(ConfigError) as exc:
        plan(100, 10_000, 1.0, 8.0, 1e-5, 50, bits=8)
    assert "\n" not in str(exc.value) and "8 bits" in str(exc.value)
    for bad in (dict(bits=70), dict(mechanism="laplace"), dict(survivor_floor=101),
                dict(delta=0.0)):
        kwargs = dict(clients=100, dim=1000, clip=1.0, epsilon=8.0, delta=1e-5, rounds=5)
        kwargs.update(bad)  # type: ignore[arg-type]
        with pytest.raises(DPConfigError):
            plan(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(DPConfigError):
        check_mechanism("gauss")


def test_plan_auto_bits_and_outputs() -> None:
    p = plan(200, 1000, 1.0, 8.0, 1e-5, 20)
    assert 8 <= p.params.bits <= 32 and p.mse <= 1.1 * p.mse_central
    j = json.loads(plan_json(p))
    for key in ("noise_multiplier", "mse", "wrap_probability", "bytes_per_coordinate",
                "epsilon", "epsilon_per_round", "delta", "bits", "mechanism"):
        assert key in j
    assert j["bytes_per_coordinate"] == p.params.bits / 8
    text = format_plan(p)
    assert "wrap-around" in text and "bytes/coordinate" in text
    narrower = plan(200, 1000, 1.0, 8.0, 1e-5, 20, bits=p.params.bits + 2)
    assert narrower.mse < p.mse


def test_params_binding_distinguishes_settings() -> None:
    a = DPParams("ddg", dim=10, clip=1.0, gamma=5.0, bits=16, noise=Fraction(9), floor=2,
                 clients=3)
    b = DPParams("skellam", dim=10, clip=1.0, gamma=5.0, bits=16, noise=Fraction(9), floor=2,
                 clients=3)
    assert a.binding() != b.binding()
    with pytest.raises(DPConfigError):
        DPParams("ddg", dim=10, clip=1.0, gamma=5.0, bits=16, noise=Fraction(1, 8), floor=2,
                 clients=3)


def test_vectors_are_byte_identical() -> None:
    assert vectors.PATH.read_bytes() == vectors.render().encode()
    assert vectors.main([]) == 0


def test_block_rotation_pipeline_and_wrap_bound() -> None:
    """Blocks of at least 16: 650 -> 656 coordinates, the mean decodes within the planned
    error, the binding differs from one block's, and the smallest block governs wrap."""
    from secagg.dp.planning import wrap_probability

    p = plan(20, 650, 1.0, 8.0, 1e-5, 5, bits=16, mechanism="skellam", min_block=16)
    assert p.params.blocks == (512, 128, 16) and p.params.padded_dim == 656
    assert p.bytes_per_element == pytest.approx(2 * 656 / 650)
    one = plan(20, 650, 1.0, 8.0, 1e-5, 5, bits=16, mechanism="skellam")
    assert p.params.gamma < one.params.gamma  # the 16-block needs a smaller scale
    assert p.params.binding() != one.params.binding()
    assert abs(p.epsilon - one.epsilon) < 0.01 and p.mse <= 1.1 * one.mse
    # the bound of blocks with the same γ as one block's is larger (smaller blocks)
    import dataclasses

    assert wrap_probability(dataclasses.replace(one.params, min_block=16)) > \
        wrap_probability(one.params)
    rng = np.random.default_rng(4)  # client data, not noise
    xs = [rng.normal(size=650) * 0.05 for _ in range(20)]
    clipped = [x / max(1.0, float(np.linalg.norm(x))) for x in xs]
    enc = [encode_client(x, p.params, SID, 2) for x in xs]
    assert all(e.shape == (656,) for e in enc)
    mean = decode_mean(secure_sum(enc, 16), p.params, SID, 20, 2)
    err = float(np.sum((mean - np.mean(clipped, axis=0)) ** 2))
    assert 0.5 * p.mse <= err <= 1.5 * p.mse

"""Regression tests for issue 12 findings 3, 7 and 9: rate rounding, degenerate clips,
sessions too large for memory. Each fails on the code before the fix."""

from __future__ import annotations

import sys
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg import budget
from secagg import graph as graphs
from secagg.aggregator import SecureAggregator
from secagg.config import SessionConfig, SessionSettings
from secagg.errors import ConfigError
from secagg.quantize import QuantizationConfig, error_bound, quantization_step
from secagg.rates import PPM, count_from_ppm, safe_count

# -- finding 3: rates to counts ----------------------------------------------------------


def test_corruption_9_of_23_keeps_all_nine_corrupt_clients() -> None:
    cfg = SessionConfig.create(range(1, 24), 4, 2**16, graph="harary", corruption_rate=9 / 23,
                               min_cohort=3)
    assert cfg.corrupt_count == 9
    # the chosen (k, t) is safe for exactly 9 corrupt clients (the old code's t was not)
    graphs.check_harary_params(23, cfg.degree, cfg.threshold,
                               Fraction(cfg.dropout_count, 23), Fraction(9, 23))


def test_complete_graph_refuses_threshold_equal_to_corrupt_count() -> None:
    with pytest.raises(ConfigError, match="does not exceed the 12 clients"):
        SessionConfig.create(range(1, 24), 4, 2**16, threshold=12, corruption_rate=12 / 23,
                             min_cohort=3)
    SessionConfig.create(range(1, 24), 4, 2**16, threshold=13, corruption_rate=12 / 23,
                         min_cohort=3)


def test_finder_counts_12_of_23_as_twelve() -> None:
    """graph.py's own float path (repr 0.5217391304347826 * 23 < 12) rounds up, not down."""
    assert graphs.find_harary_params(23, 0.0, 12 / 23) == graphs.find_harary_params(
        23, 0.0, Fraction(12, 23))


@settings(max_examples=300, deadline=None)
@given(st.integers(3, 1_000_000), st.data())
def test_count_of_c_over_n_is_exactly_c(n: int, data: st.DataObject) -> None:
    """c/n as a float, stored in ppm or as a decimal, is c clients: never c - 1, never c + 1."""
    c = data.draw(st.integers(0, n - 1))
    rate = c / n
    assert count_from_ppm(round(rate * PPM), n) == c
    assert safe_count(Fraction(repr(rate)), n) == c


def test_counts_round_up_between_integers() -> None:
    assert count_from_ppm(50_000, 23) == 2  # 5 % of 23 = 1.15 clients: provision for 2
    assert safe_count(Fraction(1, 20), 23) == 2


# -- finding 7: degenerate clips ---------------------------------------------------------


@pytest.mark.parametrize("clip", [sys.float_info.max, 9e307, 1e308 / 2, 5e-324, 1e-310,
                                  sys.float_info.min])
def test_degenerate_clip_refused(clip: float) -> None:
    with pytest.raises(ConfigError, match="clip") as info:
        QuantizationConfig(clip=clip, bits=16, max_clients=10)
    assert "\n" not in str(info.value)


def test_huge_clip_with_many_clients_refused() -> None:
    """2c is finite but 2c * max_clients (decode_sum's largest intermediate) is not."""
    with pytest.raises(ConfigError, match="clip"):
        QuantizationConfig(clip=1e305, bits=16, max_clients=10_000)


@pytest.mark.parametrize("clip", [1e-300, 1e-3, 1.0, 1e300])
def test_ordinary_clips_have_finite_normal_derived_values(clip: float) -> None:
    q = QuantizationConfig(clip=clip, bits=16, max_clients=10)
    for value in (quantization_step(q), error_bound(q)):
        assert value >= sys.float_info.min and value < float("inf")


# -- finding 9: sessions too large for memory --------------------------------------------


def test_complete_graph_of_100000_refused_before_allocating() -> None:
    with pytest.raises(ConfigError, match="use --graph harary") as info:
        SessionConfig.create(range(1, 100_001), 1, 2**32)
    message = str(info.value)
    assert "100000 clients" in message and "available" in message and "\n" not in message


def test_budget_names_estimate_and_limit() -> None:
    with pytest.raises(ConfigError, match=r"needs ~.*more than the 1\.0 GiB available"):
        budget.check_budget(10_000, 1, 9_999, limit=1 << 30)


def test_normal_sizes_are_accepted() -> None:
    SessionConfig.create(range(1, 1001), 10_000, 2**32)
    cfg = SessionConfig.create(range(1, 100_001), 1, 2**32, graph="harary")
    est = budget.check_session(cfg, role=budget.Role.SIMULATION, limit=64 << 30)
    assert est.memory_bytes < 16 << 30  # SecAgg+ keeps 100000 clients at O(n log n)


def test_simulation_estimate_counts_every_client() -> None:
    server = budget.estimate(1000, 10_000, 999)
    sim = budget.estimate(1000, 10_000, 999, role=budget.Role.SIMULATION)
    assert sim.memory_bytes > server.memory_bytes + 1000 * 10_000 * 8
    assert server.agreements == 2 * 1000 * 999


def test_aggregator_refuses_oversized_simulation() -> None:
    agg = SecureAggregator(memory_limit=1 << 20, min_cohort=3)
    with pytest.raises(ConfigError, match="available"):
        agg.aggregate({u: [[0.0] * 10] for u in range(1, 11)})


# -- one settings object ------------------------------------------------------------------


def test_settings_object_and_keywords_build_the_same_config() -> None:
    s = SessionSettings(graph="harary", dropout_rate=0.2, corruption_rate=0.1, min_cohort=5)
    a = SessionConfig.create(range(1, 41), 8, 2**16, settings=s)
    b = SessionConfig.create(range(1, 41), 8, 2**16, graph="harary", dropout_rate=0.2,
                             corruption_rate=0.1, min_cohort=5)
    assert a == b and a.session_id == b.session_id
    assert a.settings.graph is graphs.GraphKind.HARARY


def test_settings_validated_once_at_construction() -> None:
    with pytest.raises(ConfigError, match="dropout_rate"):
        SessionSettings(dropout_rate=1.0)
    with pytest.raises(ConfigError, match="give both"):
        SessionSettings(graph="harary", degree=4)
    with pytest.raises(ConfigError, match="mode"):
        SessionSettings(mode="evil")  # type: ignore[arg-type]


def test_cli_simulate_of_100000_clients_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """``secagg simulate --clients 100000 --dim 1`` used to be killed by the kernel (OOM)."""
    from secagg.cli import main

    assert main(["simulate", "--clients", "100000", "--dim", "1"]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "use --graph harary" in err


def test_enum_fields_accept_names_and_refuse_unknown_ones() -> None:
    """``prg="chacha20"`` used to pass validation and fail later in ``encode()``."""
    from secagg.config import SessionConfig
    from secagg.crypto.prg import StreamCipher
    from secagg.errors import ConfigError

    cfg = SessionConfig.create(range(1, 11), 4, 1 << 32, prg="chacha20")  # type: ignore[arg-type]
    assert cfg.prg is StreamCipher.CHACHA20
    assert SessionConfig.decode(cfg.encode()) == cfg
    with pytest.raises(ConfigError, match="unknown prg"):
        SessionConfig.create(range(1, 11), 4, 1 << 32, prg="rc4")  # type: ignore[arg-type]

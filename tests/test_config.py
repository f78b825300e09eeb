"""SessionConfig: safe defaults, and every unsafe configuration refused with its reason."""

from __future__ import annotations

import pytest

from secagg import graph as graphs
from secagg.config import DEFAULT_MIN_COHORT, SessionConfig
from secagg.errors import ConfigError
from tests.conftest import cohort

R = 1 << 32


def create(n: int, **kw: object) -> SessionConfig:
    return SessionConfig.create(cohort(n), 16, R, **kw)  # type: ignore[arg-type]


# --- defaults -------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [10, 11, 12, 49, 50, 101])
def test_complete_default_threshold(n: int) -> None:
    cfg = create(n)
    assert cfg.threshold == n // 2 + 1
    assert cfg.degree == n - 1
    assert cfg.graph is graphs.GraphKind.COMPLETE
    assert cfg.min_cohort == DEFAULT_MIN_COHORT == 10


@pytest.mark.parametrize(("n", "dropout", "corruption"),
                         [(20, 0.1, 0.05), (50, 0.3, 0.05), (200, 0.1, 0.1), (1000, 0.05, 0.05)])
def test_harary_defaults_come_from_the_finder(n: int, dropout: float, corruption: float) -> None:
    cfg = create(n, graph="harary", dropout_rate=dropout, corruption_rate=corruption)
    found = graphs.find_harary_params(n, dropout, corruption)
    assert (cfg.degree, cfg.threshold) == (found.k, found.t)
    assert 2 <= cfg.threshold <= cfg.degree < n
    assert cfg.dropout_ppm == round(dropout * 1e6) and cfg.corruption_ppm == round(corruption * 1e6)


def test_published_reference_value() -> None:
    """n = 1000, gamma = delta = 0.05, semi-honest: k = 30, t <= 17 (shared notes, table)."""
    found = graphs.find_harary_params(1000, 0.05, 0.05)
    assert found.k == 30 and found.t <= 17


def test_cohort_is_sorted_and_min_cohort_can_be_lowered() -> None:
    cfg = SessionConfig.create([9, 3, 5, 1, 7], 4, R, min_cohort=5)
    assert cfg.cohort == (1, 3, 5, 7, 9) and cfg.n == 5 and cfg.threshold == 3


# --- neighbourhoods -------------------------------------------------------------------------
@pytest.mark.parametrize("graph", ["complete", "harary"])
def test_neighbourhoods_exclude_self_and_are_symmetric(graph: str) -> None:
    cfg = create(40, graph=graph, dropout_rate=0.2)
    for u in cfg.cohort:
        nb = cfg.neighbours(u)
        assert u not in nb and len(nb) == cfg.degree and len(set(nb)) == len(nb)
        assert all(u in cfg.neighbours(v) for v in nb)
        assert cfg.threshold <= len(nb)
    with pytest.raises(ConfigError, match="not in the cohort"):
        cfg.neighbours(999)


def test_harary_graph_depends_on_the_session() -> None:
    a = create(40, graph="harary", dropout_rate=0.2)
    b = create(40, graph="harary", dropout_rate=0.2, round_index=1)
    assert any(a.neighbours(u) != b.neighbours(u) for u in a.cohort)
    c = create(40, graph="harary", dropout_rate=0.2)
    assert all(a.neighbours(u) == c.neighbours(u) for u in a.cohort)


# --- refusals -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        # threshold below 2
        ({"threshold": 1}, "must be >= 2"),
        ({"threshold": 0}, "must be >= 2"),
        ({"threshold": -3}, "must be >= 2"),
        # more than the n - 1 others who hold shares (the neighbourhood excludes u)
        ({"threshold": 12}, "exceeds the n - 1 = 11"),
        ({"threshold": 13}, "exceeds"),
        # no honest majority for the complete graph
        ({"threshold": 6}, "must exceed n/2"),
        ({"threshold": 4}, "must exceed n/2"),
        # complete graph has degree n - 1
        ({"degree": 4}, "do not pass degree"),
        # rates
        ({"dropout_rate": 1.0}, "dropout_rate"),
        ({"dropout_rate": -0.1}, "dropout_rate"),
        ({"corruption_rate": 1.5}, "corruption_rate"),
    ],
)
def test_complete_refusals(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create(12, **kwargs)


def test_complete_boundary_thresholds_accepted() -> None:
    assert create(12, threshold=7).threshold == 7  # smallest t > n/2
    assert create(12, threshold=11).threshold == 11  # t = n - 1
    assert create(11, threshold=6).threshold == 6


@pytest.mark.parametrize(
    ("n", "kwargs", "match"),
    [
        (40, {"degree": 6, "threshold": 1}, "must be >= 2"),
        (40, {"degree": 6, "threshold": 7}, "exceeds the k=6"),
        (40, {"degree": 5, "threshold": 2}, "even"),
        (40, {"degree": 0, "threshold": 2}, "even"),
        (40, {"degree": 40, "threshold": 2}, "must be < n"),
        (40, {"degree": 42, "threshold": 2}, "must be < n"),
        (40, {"degree": 6}, "give both"),
        (40, {"threshold": 3}, "give both"),
        (100, {"degree": 2, "threshold": 2, "dropout_rate": 0.1}, "too small"),
        (1000, {"degree": 30, "threshold": 2, "dropout_rate": 0.05}, "too low"),
        (1000, {"degree": 30, "threshold": 30, "dropout_rate": 0.05}, "too high"),
        (40, {"dropout_rate": 0.6, "corruption_rate": 0.35}, "0.9"),
        (40, {"dropout_rate": 0.99}, "0.9"),
    ],
)
def test_harary_refusals(n: int, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create(n, graph="harary", **kwargs)


def test_harary_explicit_safe_params_accepted() -> None:
    found = graphs.find_harary_params(1000, 0.05, 0.05)
    cfg = create(1000, graph="harary", degree=found.k, threshold=found.t, dropout_rate=0.05)
    assert (cfg.degree, cfg.threshold) == (found.k, found.t)


@pytest.mark.parametrize(
    ("ids", "kwargs", "match"),
    [
        (cohort(9), {}, "below the minimum of 10"),
        (cohort(4), {"min_cohort": 5}, "below the minimum of 5"),
        (cohort(2), {"min_cohort": 2}, "at least 3"),
        (cohort(12), {"min_cohort": 13}, "below the minimum"),
        ([*cohort(10), 5], {}, "distinct"),
        ([0, *cohort(10)], {}, r"\[1, 2\*\*32 - 1\]"),
        ([*cohort(10), 2**32], {}, r"\[1, 2\*\*32 - 1\]"),
        (cohort(10), {"task_hash": b"short"}, "task_hash"),
        (cohort(10), {"round_index": -1}, "round_index"),
        (cohort(10), {"round_index": 2**64}, "round_index"),
    ],
)
def test_cohort_and_field_refusals(ids: list[int], kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SessionConfig.create(ids, 16, R, **kwargs)


@pytest.mark.parametrize(("dim", "modulus", "match"),
                         [(0, R, "dim"), (2**31 + 1, R, "dim"), (16, 1, "modulus"),
                          (16, 2**64 + 1, "modulus")])
def test_dim_and_modulus_refusals(dim: int, modulus: int, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SessionConfig.create(cohort(10), dim, modulus)


def test_constructor_validates_too() -> None:
    """A config built without create() is checked the same way."""
    good = create(12)
    with pytest.raises(ConfigError, match="n/2"):
        SessionConfig(cohort=good.cohort, dim=16, modulus=R, threshold=6,
                      graph=graphs.GraphKind.COMPLETE, degree=11)
    with pytest.raises(ConfigError, match="degree n - 1"):
        SessionConfig(cohort=good.cohort, dim=16, modulus=R, threshold=7,
                      graph=graphs.GraphKind.COMPLETE, degree=10)
    with pytest.raises(ConfigError, match="sorted"):
        SessionConfig(cohort=tuple(reversed(good.cohort)), dim=16, modulus=R, threshold=7,
                      graph=graphs.GraphKind.COMPLETE, degree=11)
    with pytest.raises(ConfigError, match="tuple of integer"):
        SessionConfig(cohort=list(good.cohort), dim=16, modulus=R,  # type: ignore[arg-type]
                      threshold=7, graph=graphs.GraphKind.COMPLETE, degree=11)
    with pytest.raises(ConfigError, match="dropout_ppm"):
        SessionConfig(cohort=good.cohort, dim=16, modulus=R, threshold=7,
                      graph=graphs.GraphKind.COMPLETE, degree=11, dropout_ppm=1_000_000)


def test_unknown_graph_name() -> None:
    with pytest.raises(ConfigError, match="ring"):
        create(12, graph="ring")


_FINDER_GRID = [(n, d, c) for n in (3, 4, 5, 6, 8, 10, 12, 20, 30, 50)
                for d in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5) for c in (0.0, 0.05, 0.1)]


def test_finder_output_always_passes_the_check() -> None:
    failures = []
    for n, d, c in _FINDER_GRID:
        try:
            found = graphs.find_harary_params(n, d, c)
        except ConfigError:
            continue
        try:
            graphs.check_harary_params(n, found.k, found.t, d, c)
        except ConfigError as exc:
            failures.append((n, d, c, found.k, found.t, str(exc)))
    assert failures == []


def test_harary_defaults_for_small_cohort() -> None:
    cfg = SessionConfig.create(cohort(5), 16, R, graph="harary", dropout_rate=0.3,
                               min_cohort=5)
    assert cfg.threshold <= cfg.degree

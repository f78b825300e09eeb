"""Tests for secagg.graph: the parameter finder, threshold checks and graph construction.

The finder must reproduce the published SecAgg+ reference table (shared notes,
section 1) exactly for k and with t no larger than the table's; its exact
hypergeometric tails are compared against a brute-force Fraction computation.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg import graph
from secagg.errors import ConfigError
from secagg.graph import (
    GraphKind,
    GraphParams,
    ThreatModel,
    check_complete_threshold,
    check_harary_params,
    complete_neighbours,
    complete_threshold_default,
    find_harary_params,
    harary_neighbours,
    permutation,
)

SH = ThreatModel.SEMI_HONEST
SM = ThreatModel.SEMI_MALICIOUS
SEED = bytes(range(32))

# (n, gamma = corruption, delta = dropout, threat, k, t upper bound)
REFERENCE_ROWS = [
    (1_000, 0.05, 0.05, SH, 30, 17),
    (10_000, 0.05, 0.05, SH, 34, 20),
    (10_000, 0.05, 0.05, SM, 62, 44),
    (1_000, 0.33, 0.33, SH, 286, 150),
]


# ---------------------------------------------------------------------------
# reference table
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "gamma", "delta", "threat", "k", "t_max"), REFERENCE_ROWS)
def test_reference_rows(
    n: int, gamma: float, delta: float, threat: ThreatModel, k: int, t_max: int
) -> None:
    # the published values are for one random permutation: 40 bits in both threat
    # models (the semi-malicious default adds a grinding margin, spec §16.3)
    params = find_harary_params(n, delta, gamma, threat=threat, security_bits=40)
    assert params.k == k
    assert 2 <= params.t <= t_max
    assert params.n == n
    check_harary_params(n, params.k, params.t, delta, gamma, threat=threat, security_bits=40)


def test_semi_malicious_default_carries_the_grinding_margin() -> None:
    assert graph.security_bits_for(SH) == 40
    assert graph.security_bits_for(SM) == 40 + graph.GRIND_MARGIN_BITS == 64
    assert find_harary_params(10_000, 0.05, 0.05, threat=SM) == find_harary_params(
        10_000, 0.05, 0.05, threat=SM, security_bits=64)
    assert find_harary_params(10_000, 0.05, 0.05, threat=SM).k > 62
    with pytest.raises(ConfigError, match=r"too low|disconnect"):
        check_harary_params(10_000, 62, 44, 0.05, 0.05, threat=SM)


@pytest.mark.parametrize("n", [3, 4, 5, 10, 101, 1_000, 10_000, 1_000_000])
@pytest.mark.parametrize("threat", [SH, SM])
def test_no_adversary_no_dropout_gives_ring(n: int, threat: ThreatModel) -> None:
    assert find_harary_params(n, 0.0, 0.0, threat=threat) == GraphParams(k=2, t=2, n=n)


def test_finder_is_fast_for_ten_thousand() -> None:
    graph._find_cached.cache_clear()
    start = time.perf_counter()
    find_harary_params(10_000, 0.05, 0.05, threat=SM)
    find_harary_params(10_000, 0.3, 0.3)
    assert time.perf_counter() - start < 1.0


def test_finder_handles_extreme_rates() -> None:
    """gamma + delta = 0.9 needs k in the thousands; the float pre-filter keeps it quick."""
    params = find_harary_params(10_000, 0.45, 0.45)
    assert params.k < 10_000
    check_harary_params(10_000, params.k, params.t, 0.45, 0.45)


# ---------------------------------------------------------------------------
# exact arithmetic against brute force
# ---------------------------------------------------------------------------


def _pmf(n: int, marked: int, draws: int, x: int) -> Fraction:
    return Fraction(math.comb(marked, x) * math.comb(n - marked, draws - x), math.comb(n, draws))


@st.composite
def _hypergeometric(draw: st.DrawFn) -> tuple[int, int, int]:
    n = draw(st.integers(1, 120))
    return n, draw(st.integers(0, n)), draw(st.integers(1, n))


@settings(max_examples=150, deadline=None)
@given(_hypergeometric(), st.integers(1, 2**50))
def test_exact_quantiles_match_brute_force(hyp: tuple[int, int, int], q_den: int) -> None:
    n, marked, draws = hyp
    q = Fraction(1, q_den)
    pmf = [_pmf(n, marked, draws, x) for x in range(draws + 1)]
    upper = min(x for x in range(draws + 1) if sum(pmf[x + 1 :]) < q)
    lower = min(x for x in range(draws + 1) if sum(pmf[: x + 1]) >= q)
    assert graph._upper_quantile(n, marked, draws, q_den) == upper
    assert graph._lower_quantile(n, marked, draws, q_den) == lower


@settings(max_examples=150, deadline=None)
@given(st.integers(10, 20_000), st.floats(0, 0.95), st.integers(1, 600), st.integers(1, 80))
def test_float_quantiles_within_one(n: int, frac: float, draws: int, bits: int) -> None:
    draws = min(draws, n)
    marked = math.floor(frac * n)
    q_den = n << bits
    log_q = -math.log(n) - bits * math.log(2)
    up = graph._upper_quantile(n, marked, draws, q_den)
    lo = graph._lower_quantile(n, marked, draws, q_den)
    assert abs(graph._approx_upper_quantile(n, marked, draws, log_q) - up) <= 1
    assert abs(graph._approx_lower_quantile(n, marked, draws, log_q) - lo) <= 1


@settings(max_examples=100, deadline=None)
@given(st.integers(5, 3_000), st.integers(1, 200), st.floats(0, 0.9))
def test_disconnection_bound_float_agrees_with_exact(n: int, half: int, frac: float) -> None:
    k = min(2 * half, n - 1)
    removed = math.floor(frac * n)
    exact = graph._disconnection_too_likely(n, k, removed, 40)
    log_bound = graph._log_disconnection_bound(n, k, removed)
    threshold = -41 * math.log(2)
    if abs(log_bound - threshold) > 1e-6:
        assert exact == (log_bound > threshold)


def _exact_scan(n: int, corrupt: int, dropped: int, threat: ThreatModel) -> GraphParams | None:
    """The finder without its float pre-filter."""
    bits = graph.security_bits_for(threat)
    for k in range(2, n, 2):
        if graph._disconnection_too_likely(n, k, corrupt + dropped, bits):
            continue
        t1, t2 = graph._thresholds(n, k, corrupt, dropped, threat, bits, 20)
        if max(t1 + 1, 2) <= t2:
            return GraphParams(k=k, t=max(t1 + 1, 2), n=n)
    return None


@settings(max_examples=60, deadline=None)
@given(
    st.integers(3, 400),
    st.sampled_from([0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.45]),
    st.sampled_from([0, 0.01, 0.05, 0.1, 0.2, 0.3]),
    st.sampled_from([SH, SM]),
)
def test_prefilter_never_changes_the_answer(
    n: int, gamma: float, delta: float, threat: ThreatModel
) -> None:
    bound = gamma + (2 * delta if threat is SM else delta)
    if bound > 0.9 + 1e-12:
        with pytest.raises(ConfigError):
            find_harary_params(n, delta, gamma, threat=threat)
        return
    # counts round toward the safe side: ceil of the exact product (secagg.rates)
    corrupt = math.ceil(Fraction(repr(gamma)) * n)
    dropped = math.ceil(Fraction(repr(delta)) * n)
    expected = _exact_scan(n, corrupt, dropped, threat)
    if expected is None:
        with pytest.raises(ConfigError, match="complete graph"):
            find_harary_params(n, delta, gamma, threat=threat)
    else:
        assert find_harary_params(n, delta, gamma, threat=threat) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.integers(3, 300),
    st.integers(0, 60).map(lambda p: p / 100),
    st.integers(0, 60).map(lambda p: p / 100),
    st.sampled_from([SH, SM]),
)
def test_finder_output_always_passes_check(
    n: int, delta: float, gamma: float, threat: ThreatModel
) -> None:
    try:
        p = find_harary_params(n, delta, gamma, threat=threat)
    except ConfigError:
        return
    check_harary_params(n, p.k, p.t, delta, gamma, threat=threat)


def test_small_cohort_high_dropout_regression() -> None:
    """n=5, 30% dropout: k=2 gives t1=0, t2=1, so t=2 would exceed t2; k=4 is chosen."""
    p = find_harary_params(5, 0.3, 0.0)
    assert p.t <= p.k
    check_harary_params(5, p.k, p.t, 0.3, 0.0)


def _runs_of_removed(n: int, removed: set[int]) -> list[int]:
    """Lengths of the maximal runs of removed positions around the ring."""
    if len(removed) == n:
        return [n]
    start = next(i for i in range(n) if i not in removed)
    runs, current = [], 0
    for step in range(1, n + 1):
        if (start + step) % n in removed:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs


@settings(max_examples=200, deadline=None)
@given(st.integers(5, 40), st.integers(1, 8), st.data())
def test_disconnection_needs_two_long_gaps(n: int, half: int, data: st.DataObject) -> None:
    """The fact behind the union bound: removing nodes disconnects the ring H(n, k)
    only if two separate runs of >= k/2 consecutive positions are removed."""
    k = 2 * half
    if k >= n - 1:
        return
    removed = set(data.draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n - 2)))
    alive = [i for i in range(n) if i not in removed]
    seen, stack = {alive[0]}, [alive[0]]
    while stack:
        v = stack.pop()
        for d in range(1, half + 1):
            for w in ((v + d) % n, (v - d) % n):
                if w not in removed and w not in seen:
                    seen.add(w)
                    stack.append(w)
    if len(seen) < len(alive):
        assert sum(1 for r in _runs_of_removed(n, removed) if r >= half) >= 2


# ---------------------------------------------------------------------------
# refusals
# ---------------------------------------------------------------------------


def test_rate_preconditions() -> None:
    with pytest.raises(ConfigError, match=r"<= 0\.9"):
        find_harary_params(1_000, 0.5, 0.45)
    with pytest.raises(ConfigError, match=r"2·dropout_rate"):
        find_harary_params(1_000, 0.3, 0.35, threat=SM)
    find_harary_params(1_000, 0.3, 0.3)  # the same rates are fine when semi-honest
    with pytest.raises(ConfigError, match=r"<= 0\.9"):
        check_harary_params(1_000, 30, 17, 0.5, 0.45)
    for bad in (-0.1, 1.0, float("nan"), float("inf"), True, "0.1"):
        with pytest.raises(ConfigError):
            find_harary_params(1_000, bad, 0.05)  # type: ignore[arg-type]


def test_finder_refuses_tiny_or_hopeless_cohorts() -> None:
    with pytest.raises(ConfigError, match="at least 3"):
        find_harary_params(2, 0.0, 0.0)
    with pytest.raises(ConfigError, match="complete graph"):
        find_harary_params(20, 0.4, 0.5)


def test_harary_check_refusals() -> None:
    n, delta, gamma = 1_000, 0.05, 0.05
    with pytest.raises(ConfigError, match="even"):
        check_harary_params(n, 31, 17, delta, gamma)
    with pytest.raises(ConfigError, match="must be < n"):
        check_harary_params(n, 1_000, 17, delta, gamma)
    with pytest.raises(ConfigError, match=">= 2"):
        check_harary_params(n, 30, 1, delta, gamma)
    with pytest.raises(ConfigError, match="exceeds the k=30 neighbours"):
        check_harary_params(n, 30, 31, delta, gamma)
    with pytest.raises(ConfigError, match="too low"):
        check_harary_params(n, 30, 2, delta, gamma)  # corrupt neighbours could reconstruct
    with pytest.raises(ConfigError, match="too high"):
        check_harary_params(n, 30, 30, delta, gamma)  # too few survivors
    with pytest.raises(ConfigError, match="disconnect"):
        check_harary_params(n, 4, 3, delta, gamma)


def test_finder_output_passes_and_is_minimal() -> None:
    for n, gamma, delta, threat, _, _ in REFERENCE_ROWS:
        p = find_harary_params(n, delta, gamma, threat=threat)
        check_harary_params(n, p.k, p.t, delta, gamma, threat=threat)
        if p.t > 2:
            with pytest.raises(ConfigError, match="too low"):
                check_harary_params(n, p.k, p.t - 1, delta, gamma, threat=threat)
        check_harary_params(n, p.k + 2, p.t + 1, delta, gamma, threat=threat)


def test_semi_malicious_needs_higher_threshold() -> None:
    honest = find_harary_params(10_000, 0.05, 0.05)
    with pytest.raises(ConfigError, match="too low"):
        check_harary_params(10_000, 62, honest.t, 0.05, 0.05, threat=SM)


def test_complete_thresholds() -> None:
    assert complete_threshold_default(10) == 6
    assert complete_threshold_default(11) == 6
    for n in (3, 4, 10, 11, 100):
        check_complete_threshold(n, complete_threshold_default(n))
    with pytest.raises(ConfigError, match="exceed n/2"):
        check_complete_threshold(10, 5)
    with pytest.raises(ConfigError, match=">= 2"):
        check_complete_threshold(10, 1)
    with pytest.raises(ConfigError, match="n - 1 = 9 other"):
        check_complete_threshold(10, 10)
    with pytest.raises(ConfigError, match="at least 3"):
        complete_threshold_default(2)
    with pytest.raises(ConfigError, match="semi-malicious"):
        check_complete_threshold(100, 51, threat=SM, corruption_rate=0.1)
    check_complete_threshold(100, 56, threat=SM, corruption_rate=0.1)
    with pytest.raises(ConfigError, match="corrupt"):
        check_complete_threshold(100, 51, corruption_rate=0.6)


def test_graph_params_validation() -> None:
    with pytest.raises(ConfigError):
        GraphParams(k=2, t=3, n=10)
    with pytest.raises(ConfigError):
        GraphParams(k=10, t=2, n=10)
    assert GraphKind("harary") is GraphKind.HARARY


# ---------------------------------------------------------------------------
# graph construction
# ---------------------------------------------------------------------------


def _connected(nbrs: dict[int, tuple[int, ...]]) -> bool:
    start = next(iter(nbrs))
    seen, stack = {start}, [start]
    while stack:
        for w in nbrs[stack.pop()]:
            if w not in seen:
                seen.add(w)
                stack.append(w)
    return len(seen) == len(nbrs)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 2**32 - 1), min_size=3, max_size=80, unique=True),
    st.integers(1, 40),
    st.binary(min_size=32, max_size=32),
)
def test_harary_graph_properties(ids: list[int], half: int, seed: bytes) -> None:
    k = 2 * half
    nbrs = harary_neighbours(ids, k, seed)
    n = len(ids)
    degree = min(k, n - 1)
    assert set(nbrs) == set(ids)
    for u, vs in nbrs.items():
        assert len(vs) == degree
        assert list(vs) == sorted(set(vs))
        assert u not in vs
        for v in vs:
            assert u in nbrs[v]
    assert _connected(nbrs)
    assert harary_neighbours(list(reversed(ids)), k, seed) == nbrs


def test_harary_follows_the_permutation_ring() -> None:
    ids = list(range(5, 105))
    ring = permutation(ids, SEED)
    nbrs = harary_neighbours(ids, 6, SEED)
    for i, u in enumerate(ring):
        expected = {ring[(i + d) % 100] for d in (-3, -2, -1, 1, 2, 3)}
        assert set(nbrs[u]) == expected


def test_harary_degenerates_to_complete() -> None:
    ids = [3, 9, 27, 81, 243]
    assert harary_neighbours(ids, 4, SEED) == complete_neighbours(ids)
    assert harary_neighbours(ids, 6, SEED) == complete_neighbours(ids)
    assert complete_neighbours(ids)[27] == (3, 9, 81, 243)


def test_permutation_deterministic_and_seed_dependent() -> None:
    ids = list(range(1, 1001))
    p = permutation(ids, SEED)
    assert sorted(p) == ids
    assert p == permutation(list(reversed(ids)), SEED)
    assert p != permutation(ids, bytes(32))
    assert p != ids


def test_permutation_is_unbiased_on_small_sets() -> None:
    counts = Counter(tuple(permutation([1, 2, 3], i.to_bytes(32, "big"))) for i in range(3_000))
    assert set(counts) == set(itertools.permutations([1, 2, 3]))
    # 500 expected per ordering; 6 sigma is about 130
    assert all(abs(c - 500) < 130 for c in counts.values())


def test_graph_input_validation() -> None:
    with pytest.raises(ConfigError, match="32 bytes"):
        permutation([1, 2, 3], bytes(31))
    with pytest.raises(ConfigError, match="twice"):
        permutation([1, 2, 2], SEED)
    with pytest.raises(ConfigError, match="positive"):
        permutation([0, 1, 2], SEED)
    with pytest.raises(ConfigError, match="positive"):
        permutation([True, 2, 3], SEED)  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="even"):
        harary_neighbours(list(range(1, 21)), 5, SEED)
    with pytest.raises(ConfigError, match=">= 2"):
        harary_neighbours(list(range(1, 21)), 0, SEED)
    with pytest.raises(ConfigError, match="twice"):
        complete_neighbours([4, 4, 5])


def test_harary_neighbours_is_fast() -> None:
    ids = list(range(1, 10_001))
    start = time.perf_counter()
    nbrs = harary_neighbours(ids, 34, SEED)
    assert time.perf_counter() - start < 0.5
    assert all(len(v) == 34 for v in nbrs.values())

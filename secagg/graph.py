"""Communication graphs and their safe (k, t) parameters (SecAgg and SecAgg+) (spec §6).

SecAgg (Bonawitz et al., CCS 2017) uses the complete graph: every client
shares its secrets with every other client. SecAgg+ (Bell et al., CCS 2020)
uses a k-regular Harary graph H(n, k) laid over a random permutation of the
clients, so each client talks to O(log n) neighbours instead of n - 1.

Conventions, used throughout the library:

* A neighbourhood **excludes the client itself**: a client's Shamir shares go to
  its k neighbours only, so a threshold must satisfy ``2 <= t <= k``. In the
  complete graph k = n - 1 (a client shares with all n - 1 others).
* ``t`` is the Shamir threshold: any t shares reconstruct, t - 1 reveal nothing.

Why the Harary parameters need care: with a sparse graph, an unlucky permutation
could give one client t corrupt neighbours (who could then unmask it), or leave
a client with fewer than t surviving neighbours (the session fails), or
disconnect the honest survivors (the server learns partial sums). The finder
below bounds each event exactly as Google's production parameter finder does
(statistical security 2^-40, failure probability 2^-20), but computes the
hypergeometric tails with exact integer arithmetic rather than floating point,
so no rounding can flip a decision at a 2^-41 tail.

The session-wide random permutation is derived from a 32-byte session seed with
HKDF (label ``GRAPH_PERMUTATION``) and an unbiased Fisher–Yates shuffle, so every
client computes the same graph and can check its own neighbourhood.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

from secagg.checks import is_plain_int, is_plain_rate
from secagg.crypto.kdf import encode_context, hkdf
from secagg.crypto.labels import Label
from secagg.errors import ConfigError
from secagg.rates import safe_count

__all__ = [
    "GraphKind",
    "GraphParams",
    "ThreatModel",
    "check_complete_threshold",
    "check_harary_params",
    "complete_neighbours",
    "complete_threshold_default",
    "find_harary_params",
    "harary_neighbours",
    "is_connected",
    "permutation",
    "security_bits_for",
    "tolerated_dropouts",
]

#: Length of the session seed the permutation is derived from.
SESSION_SEED_BYTES = 32

#: Statistical security of the Harary bounds against one random permutation.
DEFAULT_SECURITY_BITS = 40
#: Extra bits against a server that grinds the permutation (spec §16.3): a
#: semi-malicious server may evaluate up to 2^24 candidate configurations (each a
#: new session id, hence an independent permutation) and still face < 2^-40.
GRIND_MARGIN_BITS = 24

# Largest admissible gamma + delta (semi-honest) or gamma + 2·delta
# (semi-malicious): beyond it no sparse graph gives useful guarantees.
_MAX_BAD_FRACTION = Fraction(9, 10)


class GraphKind(enum.Enum):
    """Which communication graph a session uses."""

    COMPLETE = "complete"
    HARARY = "harary"


class ThreatModel(enum.Enum):
    """What the server may do, which decides how high the threshold must be.

    ``SEMI_HONEST``: the server follows the protocol but colludes with the
    corrupt clients, so t must exceed the number of corrupt neighbours.
    ``SEMI_MALICIOUS``: the server may also lie about who dropped out, so it can
    ask for both kinds of shares from different honest neighbours; t must then
    exceed (corrupt + k) / 2 (Bell et al., section 4).
    """

    SEMI_HONEST = "semi-honest"
    SEMI_MALICIOUS = "semi-malicious"


def security_bits_for(threat: ThreatModel) -> int:
    """Default statistical security of the Harary bounds under ``threat``.

    A semi-honest server follows the protocol, so the permutation it gets is one
    uniformly random draw: 40 bits. A semi-malicious server chooses the config
    (round index, task hash, cohort) and can try many before settling on one; by
    the union bound over its tries, 40 + :data:`GRIND_MARGIN_BITS` bits per
    permutation keep it below 2^-40 for up to 2^24 tries (spec §16.3).
    """
    if threat is ThreatModel.SEMI_MALICIOUS:
        return DEFAULT_SECURITY_BITS + GRIND_MARGIN_BITS
    return DEFAULT_SECURITY_BITS


@dataclass(frozen=True)
class GraphParams:
    """Degree and threshold of a SecAgg+ graph over ``n`` clients.

    ``k`` counts neighbours excluding the client itself; ``t`` is the Shamir
    threshold of the shares a client sends to those k neighbours.
    """

    k: int
    t: int
    n: int

    def __post_init__(self) -> None:
        """Refuse shapes no session could run with, so a bad object never exists."""
        for name in ("k", "t", "n"):
            value = getattr(self, name)
            if not is_plain_int(value):
                raise ConfigError(f"GraphParams.{name} must be an int")
        if not 2 <= self.t <= self.k < self.n:
            raise ConfigError(
                f"GraphParams needs 2 <= t <= k < n; got k={self.k}, t={self.t}, n={self.n}"
            )


# ---------------------------------------------------------------------------
# Exact probability helpers
# ---------------------------------------------------------------------------


def _exact_rate(value: float, name: str) -> Fraction:
    """Convert a rate to an exact fraction as the user wrote it (0.05 -> 1/20).

    Going through ``repr`` avoids float artefacts such as 0.29 * 100 = 28.999...,
    which would otherwise silently lower floor(rate · n).
    """
    if not is_plain_rate(value):
        raise ConfigError(f"{name} must be a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be finite")
        exact = Fraction(repr(value))
    else:
        exact = Fraction(value)
    if not 0 <= exact < 1:
        raise ConfigError(f"{name} must be in [0, 1); got {value}")
    return exact


def _check_n(n: int) -> None:
    if not is_plain_int(n):
        raise ConfigError("the number of clients n must be an int")
    if n < 3:
        raise ConfigError(
            f"secure aggregation needs at least 3 clients (n={n}): with 2, "
            "each learns the other's input from the sum"
        )


def _check_bits(security_bits: int, failure_bits: int) -> None:
    for name, bits in (("security_bits", security_bits), ("failure_bits", failure_bits)):
        if not is_plain_int(bits) or not 1 <= bits <= 256:
            raise ConfigError(f"{name} must be an int in [1, 256]")


def _bad_counts(
    n: int, dropout_rate: float, corruption_rate: float, threat: ThreatModel
) -> tuple[int, int]:
    """Validate the rates and return (corrupt, dropped) = (ceil(γn), ceil(δn)) (secagg.rates)."""
    if not isinstance(threat, ThreatModel):
        raise ConfigError("threat must be a ThreatModel")
    delta = _exact_rate(dropout_rate, "dropout_rate")
    gamma = _exact_rate(corruption_rate, "corruption_rate")
    if threat is ThreatModel.SEMI_HONEST and gamma + delta > _MAX_BAD_FRACTION:
        raise ConfigError(
            "semi-honest server: corruption_rate + dropout_rate must be <= 0.9 "
            f"(got {corruption_rate} + {dropout_rate}); use the complete graph"
        )
    if threat is ThreatModel.SEMI_MALICIOUS and gamma + 2 * delta > _MAX_BAD_FRACTION:
        raise ConfigError(
            "semi-malicious server: corruption_rate + 2·dropout_rate must be <= 0.9 "
            f"(got {corruption_rate} + 2·{dropout_rate}); use the complete graph"
        )
    return safe_count(gamma, n), safe_count(delta, n)


def _support(n: int, marked: int, draws: int) -> tuple[int, int]:
    """Smallest and largest value of Hypergeometric(n, marked, draws)."""
    return max(0, draws - (n - marked)), min(draws, marked)


def _upper_quantile(n: int, marked: int, draws: int, q_den: int) -> int:
    """Smallest x with Pr[X > x] < 1/q_den, X ~ Hypergeometric(n, marked, draws).

    Exact: w(x) = C(marked, x)·C(n - marked, draws - x) = Pr[X = x]·C(n, draws)
    is an integer, and w(x - 1) follows from w(x) by one exact integer
    division, so the tail is summed from the top of the support with no rounding.
    """
    low, x = _support(n, marked, draws)
    total = math.comb(n, draws)
    w = math.comb(marked, x) * math.comb(n - marked, draws - x)
    tail = 0  # Pr[X > x] · C(n, draws)
    while x > low:
        nxt = tail + w
        if nxt * q_den >= total:  # Pr[X > x - 1] would be >= 1/q_den
            break
        tail = nxt
        w = w * x * (n - marked - draws + x) // ((marked - x + 1) * (draws - x + 1))
        x -= 1
    return x


def _lower_quantile(n: int, marked: int, draws: int, q_den: int) -> int:
    """Smallest x with Pr[X <= x] >= 1/q_den, X ~ Hypergeometric(n, marked, draws).

    Every y < x then has Pr[X <= y] < 1/q_den. Exact, walking up from the
    bottom of the support with the same integer recurrence.
    """
    x, high = _support(n, marked, draws)
    total = math.comb(n, draws)
    w = math.comb(marked, x) * math.comb(n - marked, draws - x)
    cdf = w
    while cdf * q_den < total and x < high:
        w = w * (marked - x) * (draws - x) // ((x + 1) * (n - marked - draws + x + 1))
        x += 1
        cdf += w
    return x


def _log_pmf(n: int, marked: int, draws: int, x: int) -> float:
    """ln Pr[X = x] for X ~ Hypergeometric(n, marked, draws), x inside the support."""
    lg = math.lgamma
    return (
        lg(marked + 1)
        - lg(x + 1)
        - lg(marked - x + 1)
        + lg(n - marked + 1)
        - lg(draws - x + 1)
        - lg(n - marked - draws + x + 1)
        - lg(n + 1)
        + lg(draws + 1)
        + lg(n - draws + 1)
    )


def _approx_upper_quantile(n: int, marked: int, draws: int, log_q: float) -> int:
    """Floating-point estimate (within ±1) of :func:`_upper_quantile`, in O(sqrt(draws)).

    Starts at the point beyond which Hoeffding's bound for sampling without
    replacement leaves less than q·2^-30 of mass, so the walk is short. Only
    used to skip degrees that are hopeless by a wide margin.
    """
    low, high = _support(n, marked, draws)
    spread = math.sqrt((30 * math.log(2) - log_q) / (2 * draws))
    x = max(low, min(high, math.ceil(draws * (marked / n + spread))))
    q = math.exp(log_q)
    lp = _log_pmf(n, marked, draws, x)
    tail = 0.0
    while x > low:
        nxt = tail + math.exp(lp)
        if nxt >= q:
            break
        tail = nxt
        lp += math.log(x * (n - marked - draws + x)) - math.log((marked - x + 1) * (draws - x + 1))
        x -= 1
    return x


def _approx_lower_quantile(n: int, marked: int, draws: int, log_q: float) -> int:
    """Floating-point estimate (within ±1) of :func:`_lower_quantile`, in O(sqrt(draws))."""
    low, high = _support(n, marked, draws)
    spread = math.sqrt((30 * math.log(2) - log_q) / (2 * draws))
    x = max(low, min(high, math.floor(draws * (marked / n - spread))))
    q = math.exp(log_q)
    lp = _log_pmf(n, marked, draws, x)
    cdf = math.exp(lp)
    while cdf < q and x < high:
        lp += math.log((marked - x) * (draws - x)) - math.log(
            (x + 1) * (n - marked - draws + x + 1)
        )
        x += 1
        cdf += math.exp(lp)
    return x


def _disconnection_too_likely(n: int, k: int, removed: int, security_bits: int) -> bool:
    """True if the ring may disconnect with probability >= 2^-(security_bits + 1).

    Removing nodes disconnects H(n, k) only if two disjoint runs of k/2
    consecutive ring positions are entirely removed. There are at most
    n(n - k - 1)/2 such pairs of runs, and a given set of k positions is all
    removed with probability C(n - k, removed - k) / C(n, removed) =
    perm(removed, k) / perm(n, k). The union bound is compared exactly.
    """
    if k > removed or n - k - 1 <= 0:
        return False
    lhs = n * (n - k - 1) * math.perm(removed, k) << (security_bits + 1)
    return lhs >= 2 * math.perm(n, k)


def _log_disconnection_bound(n: int, k: int, removed: int) -> float:
    """ln of the union bound of :func:`_disconnection_too_likely` (-inf when it is 0)."""
    if k > removed or n - k - 1 <= 0:
        return -math.inf
    lg = math.lgamma
    return (
        math.log(n)
        + math.log(n - k - 1)
        - math.log(2)
        + lg(removed + 1)
        - lg(removed - k + 1)
        + lg(n - k + 1)
        - lg(n + 1)
    )


def _semi_malicious_t1(t1: int, k: int) -> int:
    """ceil((t1 + k - 1.25) / 2), computed exactly."""
    return math.ceil(Fraction(4 * (t1 + k) - 5, 8))


def _thresholds(
    n: int,
    k: int,
    corrupt: int,
    dropped: int,
    threat: ThreatModel,
    security_bits: int,
    failure_bits: int,
) -> tuple[int, int]:
    """(t1, t2): a safe threshold t satisfies t1 < t <= t2.

    t1 bounds the corrupt neighbours of any client (union over n clients at
    2^-(security_bits+1)); t2 is the lowest surviving-neighbour count that is
    not already ruled out at 2^-failure_bits / n, so t <= t2 means
    Pr[fewer than t survivors] < 2^-failure_bits / n.
    """
    t1 = _upper_quantile(n, corrupt, k, n << (security_bits + 1))
    surviving = n - dropped  # = ceil((1 - δ) n)
    t2 = _lower_quantile(n, surviving, k, n << failure_bits)
    if threat is ThreatModel.SEMI_MALICIOUS:
        t1 = _semi_malicious_t1(t1, k)
    return t1, t2


# ---------------------------------------------------------------------------
# Harary parameters
# ---------------------------------------------------------------------------


def find_harary_params(
    n: int,
    dropout_rate: float,
    corruption_rate: float,
    *,
    threat: ThreatModel = ThreatModel.SEMI_HONEST,
    security_bits: int | None = None,
    failure_bits: int = 20,
) -> GraphParams:
    """Smallest even degree k, and threshold t, safe for n clients.

    Scans k = 2, 4, ... (k < n) and accepts the first k for which (a) the
    honest survivors stay connected except with probability < 2^-41, (b) no
    client has t corrupt neighbours except with probability < 2^-41 in total,
    (c) no client has fewer than t surviving neighbours except with probability
    < 2^-20 in total. t is the smallest safe threshold, max(t1 + 1, 2), which
    also keeps reconstruction cheapest; k is accepted only if that t is also
    <= t2, so the result always passes :func:`check_harary_params`.

    Raises ConfigError for rates outside the preconditions, or when no k < n
    works (small n with high rates): the caller should then use the complete
    graph, whose threshold rule is :func:`check_complete_threshold`.
    ``security_bits`` defaults to :func:`security_bits_for` the threat model.
    """
    _check_n(n)
    bits = _resolve_bits(security_bits, threat)
    _check_bits(bits, failure_bits)
    corrupt, dropped = _bad_counts(n, dropout_rate, corruption_rate, threat)
    return _find_cached(n, corrupt, dropped, threat, bits, failure_bits)


def _resolve_bits(security_bits: int | None, threat: ThreatModel) -> int:
    if security_bits is not None:
        return security_bits
    if not isinstance(threat, ThreatModel):
        raise ConfigError("threat must be a ThreatModel")
    return security_bits_for(threat)


# A float estimate of t2 - t1 at or below this is treated as hopeless. Each
# float quantile is within ±1 of the exact one (adjacent tail sums differ by a
# factor >= 1 + 1/k, far beyond double rounding), so the exact t2 - t1 is at
# most the estimate + 2 <= 0: the degree would fail anyway.
_HOPELESS_MARGIN = -4
# Slack (in nats) before a float disconnection bound counts as clearly too large.
_LOG_SLACK = 1e-6


def _clearly_fails(
    n: int,
    k: int,
    corrupt: int,
    dropped: int,
    threat: ThreatModel,
    security_bits: int,
    failure_bits: int,
) -> bool:
    """Cheap floating-point pre-filter: True only when k fails by a wide margin.

    The exact big-integer checks cost O(k) operations on numbers of O(k log n)
    bits; with high rates the scan visits thousands of degrees, so skipping the
    hopeless ones keeps the finder fast. Decisions are always made exactly.
    """
    log_bound = _log_disconnection_bound(n, k, corrupt + dropped)
    if log_bound > -(security_bits + 1) * math.log(2) + _LOG_SLACK:
        return True
    t1 = _approx_upper_quantile(n, corrupt, k, -math.log(n) - (security_bits + 1) * math.log(2))
    t2 = _approx_lower_quantile(n, n - dropped, k, -math.log(n) - failure_bits * math.log(2))
    if threat is ThreatModel.SEMI_MALICIOUS:
        t1 = _semi_malicious_t1(t1, k)
    return t2 - t1 <= _HOPELESS_MARGIN


@functools.lru_cache(maxsize=256)
def _find_cached(
    n: int, corrupt: int, dropped: int, threat: ThreatModel, security_bits: int, failure_bits: int
) -> GraphParams:
    for k in range(2, n, 2):
        if _clearly_fails(n, k, corrupt, dropped, threat, security_bits, failure_bits):
            continue
        if _disconnection_too_likely(n, k, corrupt + dropped, security_bits):
            continue
        t1, t2 = _thresholds(n, k, corrupt, dropped, threat, security_bits, failure_bits)
        # Google's finder accepts k when t2 > t1 and then returns max(t1 + 1, 2),
        # which exceeds t2 when t1 = 0 and t2 = 1 (tiny n, high dropout): its own
        # check would refuse that. Requiring t <= t2 fixes it and changes nothing
        # whenever t1 >= 1 or t2 >= 2.
        t = max(t1 + 1, 2)
        if t <= t2:
            return GraphParams(k=k, t=t, n=n)
    raise ConfigError(
        f"no Harary degree k < n={n} is safe for {corrupt} corrupt and {dropped} "
        "dropped clients; use the complete graph (SecAgg) instead"
    )


def check_harary_params(
    n: int,
    k: int,
    t: int,
    dropout_rate: float,
    corruption_rate: float,
    *,
    threat: ThreatModel = ThreatModel.SEMI_HONEST,
    security_bits: int | None = None,
    failure_bits: int = 20,
) -> None:
    """Refuse a user-chosen (k, t) that the finder's bounds do not prove safe.

    Applies the same three bounds as :func:`find_harary_params`, so any
    (k, t) it returns passes, and a larger k or any t in (t1, t2] passes too.
    Raises ConfigError naming the violated condition. ``security_bits``
    defaults to :func:`security_bits_for` the threat model.
    """
    _check_n(n)
    security_bits = _resolve_bits(security_bits, threat)
    _check_bits(security_bits, failure_bits)
    for name, value in (("k", k), ("t", t)):
        if not is_plain_int(value):
            raise ConfigError(f"{name} must be an int")
    if k % 2 or k < 2:
        raise ConfigError(f"the Harary degree k must be even and >= 2 (got k={k})")
    if k >= n:
        raise ConfigError(
            f"the Harary degree k={k} must be < n={n}; for k >= n - 1 use the complete graph"
        )
    if t < 2:
        raise ConfigError(f"threshold t={t} must be >= 2: t=1 hands each neighbour the secret")
    if t > k:
        raise ConfigError(
            f"threshold t={t} exceeds the k={k} neighbours that receive shares "
            "(the neighbourhood excludes the client itself)"
        )
    corrupt, dropped = _bad_counts(n, dropout_rate, corruption_rate, threat)
    if _disconnection_too_likely(n, k, corrupt + dropped, security_bits):
        raise ConfigError(
            f"degree k={k} is too small: removing {corrupt + dropped} clients may "
            f"disconnect the Harary graph with probability >= 2^-{security_bits + 1}"
        )
    t1, t2 = _thresholds(n, k, corrupt, dropped, threat, security_bits, failure_bits)
    if t <= t1:
        raise ConfigError(
            f"threshold t={t} is too low: it must exceed {t1} so that corrupt neighbours "
            f"({threat.value} server) cannot reconstruct a client's secrets "
            f"except with probability < 2^-{security_bits + 1}"
        )
    if t > t2:
        raise ConfigError(
            f"threshold t={t} is too high: it must be <= {t2}, or a client keeps fewer "
            f"than t surviving neighbours with probability >= 2^-{failure_bits}"
        )


# ---------------------------------------------------------------------------
# Complete graph thresholds
# ---------------------------------------------------------------------------


def complete_threshold_default(n: int) -> int:
    """floor(n/2) + 1: the smallest threshold above n/2 for the complete graph.

    A strict majority means the server and any minority of colluding clients
    cannot reconstruct, while up to ceil(n/2) - 2 dropouts are tolerated.
    """
    _check_n(n)
    return n // 2 + 1


def check_complete_threshold(
    n: int,
    t: int,
    *,
    threat: ThreatModel = ThreatModel.SEMI_HONEST,
    corruption_rate: float = 0.0,
) -> None:
    """Refuse an unsafe threshold for SecAgg over the complete graph.

    Each client shares with the n - 1 *others* (never itself), so t <= n - 1.
    A semi-honest server needs t > n/2 (and t > the corrupt clients); a
    semi-malicious one needs t > (n + corrupt)/2, so that the shares it can
    gather by lying about dropouts still fall short. Raises ConfigError.
    """
    _check_n(n)
    if not is_plain_int(t):
        raise ConfigError("t must be an int")
    if not isinstance(threat, ThreatModel):
        raise ConfigError("threat must be a ThreatModel")
    if t < 2:
        raise ConfigError(f"threshold t={t} must be >= 2: t=1 hands each client the secret")
    if t > n - 1:
        raise ConfigError(
            f"threshold t={t} exceeds the n - 1 = {n - 1} other clients that receive shares"
        )
    if 2 * t <= n:
        raise ConfigError(f"threshold t={t} must exceed n/2 = {n / 2} (honest majority)")
    corrupt = safe_count(_exact_rate(corruption_rate, "corruption_rate"), n)
    if t <= corrupt:
        raise ConfigError(f"threshold t={t} must exceed the {corrupt} corrupt clients")
    if threat is ThreatModel.SEMI_MALICIOUS and 2 * t <= n + corrupt:
        raise ConfigError(
            f"semi-malicious server: threshold t={t} must exceed (n + corrupt)/2 = "
            f"{(n + corrupt) / 2}"
        )


# ---------------------------------------------------------------------------
# Graph construction
# ---------------------------------------------------------------------------


def _check_ids(client_ids: Sequence[int]) -> list[int]:
    """Return the ids sorted, refusing duplicates and non-positive or non-int ids."""
    ids = list(client_ids)
    for cid in ids:
        if not is_plain_int(cid) or cid <= 0:
            raise ConfigError("client ids must be positive ints")
    ids.sort()
    for a, b in itertools.pairwise(ids):
        if a == b:
            raise ConfigError(f"client id {a} appears twice")
    if not ids:
        raise ConfigError("at least one client id is needed")
    return ids


def _word_stream(key: bytes) -> Iterator[int]:
    """Yield 64-bit words from SHAKE-256(key), extending the XOF output as needed."""
    xof = hashlib.shake_256(key)
    produced = 0
    block = 8 * 1024
    while True:
        # A longer SHAKE output has the shorter one as its prefix, so asking
        # for more bytes and skipping those already used continues the stream.
        data = xof.digest(produced + block)[produced:]
        produced += block
        yield from (int.from_bytes(data[i : i + 8], "little") for i in range(0, block, 8))
        block *= 2


def permutation(client_ids: Sequence[int], session_seed: bytes) -> list[int]:
    """The session's pseudo-random ordering of the clients (the Harary ring).

    Sorting first makes the result independent of the order the ids arrive
    in; the Fisher–Yates swaps use rejection-sampled, hence unbiased, 64-bit
    integers from SHAKE-256 keyed by HKDF(session_seed, GRAPH_PERMUTATION, n).
    Every client derives the same permutation from the same seed.
    """
    if not isinstance(session_seed, bytes) or len(session_seed) != SESSION_SEED_BYTES:
        raise ConfigError(f"session_seed must be {SESSION_SEED_BYTES} bytes")
    order = _check_ids(client_ids)
    n = len(order)
    key = hkdf(session_seed, Label.GRAPH_PERMUTATION, encode_context(n), length=32)
    words = _word_stream(key)
    for i in range(n - 1, 0, -1):
        bound = i + 1
        limit = (1 << 64) - ((1 << 64) % bound)  # largest multiple of bound <= 2^64
        while True:
            r = next(words)
            if r < limit:
                break
        j = r % bound
        order[i], order[j] = order[j], order[i]
    return order


def complete_neighbours(client_ids: Sequence[int]) -> dict[int, tuple[int, ...]]:
    """Every client's neighbours in the complete graph: all other clients, sorted."""
    ids = _check_ids(client_ids)
    return {cid: tuple(ids[:i] + ids[i + 1 :]) for i, cid in enumerate(ids)}


def harary_neighbours(
    client_ids: Sequence[int], k: int, session_seed: bytes
) -> dict[int, tuple[int, ...]]:
    """Neighbourhoods of H(n, k) over the session permutation, sorted by id.

    Position i of :func:`permutation` links to the k/2 positions on each side
    of it on the ring. k >= n - 1 gives the complete graph (every client links
    to every other). A client's own id is never among its neighbours.
    """
    if not is_plain_int(k) or k < 2:
        raise ConfigError(f"the Harary degree k must be an int >= 2 (got {k!r})")
    ring = permutation(client_ids, session_seed)
    n = len(ring)
    if k >= n - 1:
        return complete_neighbours(ring)
    if k % 2:
        raise ConfigError(f"the Harary degree k={k} must be even when k < n - 1")
    half = k // 2
    ext = ring[-half:] + ring + ring[:half]
    return {
        cid: tuple(sorted(ext[i : i + half] + ext[i + half + 1 : i + k + 1]))
        for i, cid in enumerate(ring)
    }


# ---------------------------------------------------------------------------
# Survivors (spec §8.3)
# ---------------------------------------------------------------------------


def tolerated_dropouts(n: int, dropout_ppm: int) -> int:
    """floor(δn) with δ = dropout_ppm / 10^6, exactly: the D of the finder (§6.4).

    Every Harary bound assumes at most this many clients leave the session; the
    server refuses to go on with fewer than n - D survivors (spec §8.0).
    """
    return n * dropout_ppm // 1_000_000


def is_connected(members: set[int] | frozenset[int],
                 neighbours: Callable[[int], Iterable[int]]) -> bool:
    """Whether ``members`` induce a connected subgraph (True for the empty set).

    A breadth-first search with C-level set intersections, O(|members| · k).
    A disconnected survivor set would let the server unmask each component on
    its own and learn partial sums (spec §8.3, §12.1).
    """
    if not members:
        return True
    start = min(members)
    seen = {start}
    frontier = [start]
    while frontier:
        u = frontier.pop()
        fresh = members.intersection(neighbours(u)) - seen
        seen |= fresh
        frontier.extend(fresh)
    return len(seen) == len(members)

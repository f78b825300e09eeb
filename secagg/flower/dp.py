"""Distributed DP in the Flower adapter: options, the session's DP record, the client's
check and encoding, the server's planning, decoding and accounting (spec §21.12).

The same guarantee as ``secagg train --dp`` (``fl/dp_training.py``), one FL round per
session:

* **Who plans.** The workflow (:class:`ServerDP`) plans the noise for each session
  with :func:`secagg.dp.planning.plan` from the flattened model size, the sampled
  cohort ``n`` and the survivor floor ``F`` (:func:`dp_floor`: the session's own
  floor raised to ``n - floor(e·n)``, ``e`` the expected dropout); the session's
  modulus is ``2^B``.
* **Binding.** :meth:`DPParams.binding` goes into the task hash
  (:func:`dp_task_hash`), so every client of a session encodes with the same
  parameters and rotation signs. The parameters travel in the first stage's record
  (:func:`params_to_record`); a client checks them (:func:`check_session`) against
  its *own* :class:`DPOptions` (the mod's ``dp=`` or the run config's ``dp-*``
  keys) before it makes a key: mechanism, clip, bits, rotation blocks, sampling,
  cohort, dimension, modulus, the floor it recomputes itself, and that ``rounds``
  rounds charged at ``F`` included clients stay within its ε at its δ.
* **Who encodes.** The mod clips, rotates, rounds, adds its noise share (from the
  OS) and wraps the *update* (returned model minus the global model) with
  :func:`secagg.dp.pipeline.encode_client`; nothing else of the client's is in the
  vector: no example count, no metric.
* **Who accounts.** The workflow decodes with :func:`decode_mean` over the included
  count, refuses (does not release, does not charge) a round below the floor, and
  charges every released round with its included count (``round_rdp`` curves added
  up, exactly what :class:`DPAccountant` does; fewer survivors, larger ε).
* **Weights are uniform**, as in the trainer: a weight inside the masked vector
  would be part of what the noise must hide; the strategy sees the included count
  as ``num_examples``.

The client path imports ``secagg.dp`` only when a session is DP, and never scipy or
dp-accounting (its ε check is the closed-form RDP of one unsampled round, below);
only a client that accepts amplification by fixed-size sampling loads the
accountant (scipy) to check it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from secagg.checks import is_plain_int, is_plain_number
from secagg.dp.survivors import dp_floor
from secagg.errors import ConfigError, ProtocolError
from secagg.flower.common import DP_STATE_KEY, LABEL_PREFIX, DecodedAggregate, get_field
from secagg.quantize import Layout, flatten, unflatten

if TYPE_CHECKING:
    from flwr.app import ConfigRecord, ConfigRecordValues

    from secagg.config import SessionConfig
    from secagg.dp.params import DPParams
    from secagg.dp.planning import Plan

MECHANISMS = ("ddg", "skellam")
SAMPLINGS = ("none", "fixed")
STATE_KEY = DP_STATE_KEY  # the client's DP parameters, in ``Context.state``
#: how many DP updates this client has sent in the run, in ``Context.state``
SPENT_KEY = "secagg.client.dp-spent"
#: metric names of the ε the strategy sees next to the aggregate
EPSILON_METRIC, EPSILON_ROUND_METRIC = "dp-epsilon", "dp-epsilon-round"
_PREFIX = "dp-"
_REL_TOL = 1e-9  # the client's ε recomputation may differ from the planner's in the last bits


@dataclass(frozen=True)
class DPOptions:
    """The privacy target of a Flower run; names and defaults as the trainer's
    ``fl.dp_training.DPOptions`` (``rounds`` is the FL round count the budget spans).

    ``sampling``: ``"none"`` (charged at q = 1) or ``"fixed"`` (a cohort of ``n`` of
    ``population`` nodes, WBK19 amplification; holds only against parties that do not
    see who took part, not against the server). ``max_wrap`` is the server's alone
    (it trades the scale against wrap-around; it cannot weaken privacy).
    """

    mechanism: str = "skellam"
    epsilon: float = 8.0
    delta: float = 1e-5
    rounds: int = 1
    clip: float = 1.0
    bits: int = 16
    expected_dropout: float = 0.0
    min_block: int = 16
    sampling: str = "none"
    population: int | None = None
    max_wrap: float = 1e-4

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise ConfigError(f"unknown DP mechanism {self.mechanism!r}; expected ddg or skellam")
        if not (is_plain_number(self.epsilon) and self.epsilon > 0 and is_plain_number(
                self.clip) and self.clip > 0 and is_plain_number(self.delta)
                and 0 < self.delta < 1):
            raise ConfigError("DP epsilon and clip must be positive and delta in (0, 1)")
        if not (is_plain_int(self.rounds) and self.rounds >= 1 and is_plain_int(self.bits)
                and is_plain_int(self.min_block) and self.min_block >= 0):
            raise ConfigError("DP rounds must be >= 1, bits and min_block integers")
        if not 0 <= self.expected_dropout < 1 or not 0 < self.max_wrap < 1:
            raise ConfigError("DP expected dropout must be in [0, 1) and max_wrap in (0, 1)")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"unknown DP sampling {self.sampling!r}; expected none or fixed")
        if (self.sampling == "fixed") != (self.population is not None):
            raise ConfigError("fixed-size DP sampling needs population (and only it does)")

    def sampling_rate(self, n: int) -> float:
        """q of a cohort of ``n`` (1 without sampling); refuses a cohort above the population."""
        if self.population is None:
            return 1.0
        if n > self.population:
            raise ConfigError(f"cohort of {n} exceeds the DP population {self.population}")
        return n / self.population


def options_from_run_config(config: Mapping[str, Any]) -> DPOptions | None:
    """:class:`DPOptions` from a Flower run config's ``dp-*`` keys; None when ``dp`` is
    absent, empty or ``"none"``. ``dp-rounds`` 0 or absent: ``num-server-rounds``."""
    mechanism = str(config.get("dp", "") or "none")
    if mechanism == "none":
        return None
    rounds = int(config.get("dp-rounds", 0) or config.get("num-server-rounds", 1))
    population = int(config.get("dp-population", 0)) or None
    return DPOptions(
        mechanism=mechanism, epsilon=float(config.get("dp-epsilon", 8.0)),
        delta=float(config.get("dp-delta", 1e-5)), rounds=rounds,
        clip=float(config.get("dp-clip", 1.0)), bits=int(config.get("dp-bits", 16)),
        expected_dropout=float(config.get("dp-expected-dropout", 0.0)),
        min_block=int(config.get("dp-min-block", 16)),
        sampling=str(config.get("dp-sampling", "none")), population=population,
        max_wrap=float(config.get("dp-max-wrap", 1e-4)),
    )


# --------------------------------------------------------------------------- shared


def dp_task_hash(base: bytes, params: DPParams) -> bytes:
    """The task hash of a DP session: the adapter's own task hash and the DP binding (§21.1)."""
    return hashlib.sha256(LABEL_PREFIX + b"dp" + base + params.binding()).digest()


def params_to_record(params: DPParams) -> dict[str, ConfigRecordValues]:
    """The DP parameters as fields of the first stage's record (exact: floats are doubles)."""
    return {
        f"{_PREFIX}mechanism": params.mechanism, f"{_PREFIX}dim": params.dim,
        f"{_PREFIX}clip": float(params.clip), f"{_PREFIX}gamma": float(params.gamma),
        f"{_PREFIX}bits": params.bits, f"{_PREFIX}noise": str(params.noise),
        f"{_PREFIX}floor": params.floor, f"{_PREFIX}clients": params.clients,
        f"{_PREFIX}beta": float(params.beta),
        f"{_PREFIX}sampling-rate": float(params.sampling_rate),
        f"{_PREFIX}sampling": params.sampling, f"{_PREFIX}min-block": params.min_block,
    }


def has_dp(record: ConfigRecord) -> bool:
    return f"{_PREFIX}mechanism" in record


def params_from_record(record: ConfigRecord) -> DPParams:
    """Inverse of :func:`params_to_record`; malformed fields are refused (ProtocolError)."""
    from secagg.dp.errors import DPConfigError
    from secagg.dp.params import DPParams, check_mechanism, check_sampling

    p = _PREFIX
    try:
        noise = Fraction(get_field(record, f"{p}noise", str))
        return DPParams(
            check_mechanism(get_field(record, f"{p}mechanism", str)),
            get_field(record, f"{p}dim", int), get_field(record, f"{p}clip", float),
            get_field(record, f"{p}gamma", float), get_field(record, f"{p}bits", int), noise,
            get_field(record, f"{p}floor", int), get_field(record, f"{p}clients", int),
            get_field(record, f"{p}beta", float),
            get_field(record, f"{p}sampling-rate", float),
            check_sampling(get_field(record, f"{p}sampling", str)),
            get_field(record, f"{p}min-block", int))
    except (DPConfigError, ValueError, ZeroDivisionError) as exc:
        raise ProtocolError(f"unusable DP parameters: {exc}") from None


# --------------------------------------------------------------------------- client


def _orders() -> np.ndarray:
    return np.array((*range(2, 129), 160, 192, 256, 384, 512), dtype=np.float64)


def unsampled_round_epsilon(params: DPParams, included: int, rounds: int, delta: float) -> float:
    """ε at ``delta`` of ``rounds`` rounds each summing ``included`` shares, q = 1.

    The closed forms of :mod:`secagg.dp.rdp` (DDG: KLS21 Prop. 14; Skellam: AKL21
    Cor. 4.1; the improved RDP conversion) without scipy, so the client's check loads
    nothing heavy; a test checks it against :class:`~secagg.dp.accountant.DPAccountant`.
    """
    a = _orders()
    d2, d1 = params.delta2, params.delta1
    mu = float(params.noise)
    if params.mechanism == "ddg":
        k = np.arange(1, included, dtype=np.float64)
        tau = 10.0 * float(np.sum(np.exp(-2 * math.pi**2 * mu * k / (k + 1))))
        x = math.sqrt(d2**2 / (included * mu) + tau * params.padded_dim / 2)
        y = d1 / (math.sqrt(included) * math.sqrt(mu)) + tau * math.sqrt(params.padded_dim)
        curve = a * min(x, y) ** 2 / 2
    else:
        big = included * mu
        extra = np.minimum(((2 * a - 1) * d2**2 + 6 * d1) / (16 * big**2), 3 * d1 / (4 * big))
        curve = a * d2**2 / (4 * big) + extra
    eps = rounds * curve + np.log((a - 1) / a) - (math.log(delta) + np.log(a)) / (a - 1)
    return max(0.0, float(np.min(eps)))


def _claimed_epsilon(params: DPParams, options: DPOptions) -> float:
    """ε of the planned rounds at the floor, as the client recomputes it."""
    if params.sampling_rate == 1:
        return unsampled_round_epsilon(params, params.floor, options.rounds, options.delta)
    from secagg.dp import rdp  # amplification: the accountant's curves (scipy)
    from secagg.dp.accountant import round_rdp

    return rdp.epsilon_from_rdp(round_rdp(params, params.floor) * options.rounds, options.delta)


def check_session(params: DPParams, options: DPOptions, config: SessionConfig) -> None:
    """A client's check of a session's DP parameters against its own options (ProtocolError).

    Everything a server could set to weaken the guarantee: the mechanism, clip, bit
    width, rotation blocks, sampling, the cohort, the vector length and modulus 2^B,
    the floor (recomputed from the session config and the client's expected dropout),
    and that ``rounds`` rounds at the floor cost at most the client's ε at its δ. Runs
    at the first stage, before any key; the model's size is checked with the model.
    """
    expected_sampling = "fixed" if options.sampling == "fixed" else "poisson"
    checks = [
        (params.mechanism == options.mechanism, "mechanism"),
        (params.clip == options.clip, "clip"), (params.bits == options.bits, "bits"),
        (params.min_block == options.min_block, "rotation blocks"),
        (params.sampling == expected_sampling
         and params.sampling_rate == options.sampling_rate(config.n), "sampling"),
        (params.clients == config.n, "cohort"),
        (config.modulus == 1 << params.bits, "modulus"),
        (config.dim == params.padded_dim, "vector length"),
        (params.floor == dp_floor(config, options.expected_dropout), "survivor floor"),
    ]
    for ok, what in checks:
        if not ok:
            raise ProtocolError(f"refused: the session's DP {what} is not the one this client "
                                "was configured with")
    eps = _claimed_epsilon(params, options)
    if eps > options.epsilon * (1 + _REL_TOL):
        raise ProtocolError(f"refused: the session's DP noise gives epsilon {eps:.4g} over "
                            f"{options.rounds} rounds, above this client's {options.epsilon:g}")


def check_budget(state: Mapping[str, ConfigRecord], options: DPOptions) -> None:
    """Refuse a session once this client has sent ``options.rounds`` DP updates in the
    run: each session's noise was checked for ``rounds`` rounds, so more would exceed
    the client's ε whatever the server counts (ProtocolError)."""
    record = state.get(SPENT_KEY)
    sent = int(record.get("sent", 0)) if record is not None else 0  # type: ignore[arg-type]
    if sent >= options.rounds:
        raise ProtocolError(f"refused: this client's DP budget of {options.rounds} rounds "
                            "is spent")


def spend(state: MutableMapping[str, ConfigRecord]) -> None:
    """Count one DP update sent (at the masked input, whatever the session's fate)."""
    from flwr.app import ConfigRecord

    record = state.get(SPENT_KEY)
    sent = int(record.get("sent", 0)) if record is not None else 0  # type: ignore[arg-type]
    state[SPENT_KEY] = ConfigRecord({"sent": sent + 1})


def encode_update(arrays: Sequence[np.ndarray], global_arrays: Sequence[np.ndarray],
                  params: DPParams, config: SessionConfig) -> np.ndarray:
    """The client's DP input: its update (returned model minus the global model),
    clipped, rotated, rounded, noised from the OS and wrapped into Z_{2^B} (§21.3-§21.5)."""
    from secagg.crypto.prg import mask_dtype
    from secagg.dp.pipeline import encode_client

    flat, got = flatten(arrays)
    base, layout = flatten(global_arrays)
    if got.shapes != layout.shapes:
        raise ConfigError(f"update has shapes {got.shapes}, the model has {layout.shapes}")
    update = flat.astype(np.float64) - base.astype(np.float64)
    encoded = encode_client(update, params, config.session_id, config.round_index)
    return encoded.astype(mask_dtype(config.modulus))


# --------------------------------------------------------------------------- server


@dataclass(frozen=True)
class DPRoundReport:
    """The privacy of one session: its own ε (None when not released) and the run's
    cumulative ε, both at ``delta``; ``included`` is the count charged (0 when not
    released). ``predicted_mse`` is the planner's expected squared error of the mean
    with every client present (``n/included`` times more with fewer)."""

    params: DPParams
    included: int
    epsilon_round: float | None
    epsilon: float
    delta: float
    noise_multiplier: float
    predicted_mse: float

    @property
    def mechanism(self) -> str:
        return self.params.mechanism

    @property
    def floor(self) -> int:
        return self.params.floor


@dataclass
class DPSession:
    """One session's plan, and after it its report."""

    plan: Plan
    global_arrays: list[np.ndarray]
    layout: Layout
    report: DPRoundReport | None = None

    @property
    def params(self) -> DPParams:
        return self.plan.params


@dataclass
class ServerDP:
    """The workflow's DP state: plans per (cohort, dimension, floor), and the ledger.

    ``charges`` is the included count of every released round, in order; ε is the
    sum of their ``round_rdp`` curves (what :class:`DPAccountant` computes for one
    parameter set; here a round's parameters may differ when the cohort does).
    """

    options: DPOptions
    charges: list[tuple[DPParams, int]] = field(default_factory=list)
    _plans: dict[tuple[int, int, int], Plan] = field(default_factory=dict)
    _total: Any = None

    def open(self, n: int, global_arrays: list[np.ndarray], layout: Layout,
             probe: SessionConfig) -> DPSession:
        """Plan a session of ``n`` clients (``probe``: its config, for the floor)."""
        from secagg.dp.errors import DPConfigError
        from secagg.dp.planning import plan

        if len(self.charges) >= self.options.rounds:
            raise ConfigError(f"the DP budget covers {self.options.rounds} released rounds, "
                              "all spent: raise dp rounds (and so the noise) to train longer")
        o = self.options
        floor = dp_floor(probe, o.expected_dropout)
        key = (n, layout.size, floor)
        if key not in self._plans:
            try:
                self._plans[key] = plan(
                    n, layout.size, o.clip, o.epsilon, o.delta, o.rounds, o.bits, o.mechanism,
                    survivor_floor=floor, sampling_rate=o.sampling_rate(n),
                    sampling="fixed" if o.sampling == "fixed" else "poisson",
                    min_block=o.min_block, max_wrap=o.max_wrap)
            except DPConfigError as exc:
                raise ConfigError(f"DP plan refused: {exc}") from None
        return DPSession(self._plans[key], global_arrays, layout)

    def padded_dim(self, dim: int) -> int:
        from secagg.dp.rotation import block_sizes

        return sum(block_sizes(dim, self.options.min_block))

    def decode(self, session: DPSession, total: np.ndarray, included: int, session_id: bytes,
               round_index: int) -> tuple[DecodedAggregate | None, str | None]:
        """The released aggregate (global model plus the DP mean update), charged; or
        (None, reason) below the floor: not released, not charged (§21.6)."""
        from secagg.dp.pipeline import decode_mean

        p = session.params
        if included < p.floor:
            session.report = self.report(session, 0, None)
            return None, (f"{included} clients included, below the DP survivor floor "
                          f"{p.floor}: not released")
        mean = decode_mean(np.asarray(total, dtype=np.uint64), p, session_id, included,
                           round_index)
        eps_round = self.charge(p, included)
        session.report = self.report(session, included, eps_round)
        arrays = [np.asarray(g + d).astype(g.dtype, copy=False) for g, d in
                  zip(session.global_arrays, unflatten(mean, session.layout), strict=True)]
        metrics = {EPSILON_METRIC: self.epsilon, EPSILON_ROUND_METRIC: eps_round}
        return DecodedAggregate(arrays, metrics, included), None

    def charge(self, params: DPParams, included: int) -> float:
        """Charge one released round with its included count; its own ε."""
        from secagg.dp import rdp
        from secagg.dp.accountant import round_rdp

        curve = round_rdp(params, included)
        self._total = curve if self._total is None else self._total + curve
        self.charges.append((params, included))
        return rdp.epsilon_from_rdp(curve, self.options.delta)

    @property
    def epsilon(self) -> float:
        """Cumulative ε at the options' δ over every released round (0 before any)."""
        if self._total is None:
            return 0.0
        from secagg.dp import rdp

        return rdp.epsilon_from_rdp(self._total, self.options.delta)

    def report(self, session: DPSession, included: int,
                eps_round: float | None) -> DPRoundReport:
        return DPRoundReport(session.params, included, eps_round, self.epsilon,
                             self.options.delta, session.plan.noise_multiplier, session.plan.mse)


__all__ = ["DPOptions", "DPRoundReport", "ServerDP", "options_from_run_config"]

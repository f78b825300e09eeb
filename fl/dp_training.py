"""FedAvg with distributed differential privacy (spec §21), next to central DP and no DP.

Each round every cohort client trains locally (:func:`fl.fedavg._local_updates`,
the same minibatches as FedAvg), clips its update to L2 norm ``clip`` and encodes
it with :func:`secagg.dp.pipeline.encode_client` (rotation, scaling, conditional
rounding, its integer noise share, wrap into Z_{2^B}). A real secure-aggregation
session over Z_{2^B} (:func:`secagg.sim.run_simulation`, dropouts as in FedAvg)
sums the encoded vectors; the server decodes the mean of the included clients with
:func:`secagg.dp.pipeline.decode_mean` and the accountant charges the round with
the included count (§21.6): fewer survivors, less noise, a larger ε. A round whose
session aborts, or that includes fewer clients than the survivor floor, is not
released (old model kept) and not charged.

**Weights are uniform**: every client's clipped update counts once, whatever its
number of examples. A weight inside the masked vector would be part of the
contribution the noise must hide; uniform weights keep the sensitivity at the
clip norm alone.

**Binding** (§21.1): ``DPParams.binding()`` and the model layout are hashed into
the session's task hash, so the session id (and with it the rotation signs) is
bound to the DP parameters; a client holding other parameters ends up in another
session.

**Survivor floor** (:func:`dp_floor`): the noise is sized so that the floor's
clients alone meet the target. The floor is the count expected to survive,
``n − floor(e·n)`` with ``e`` the declared expected dropout rate
(``DPOptions.expected_dropout``, ``--dp-expected-dropout``, by default the run's
simulated ``--dropout``), and never below the session's own floor
(``max(t, n − floor(δn))`` on a Harary graph, δ the rate SecAgg+ provisions for,
spec §8.0; ``t`` on the complete graph). A round that includes fewer clients
than the floor is not released and not charged (§21.6); one that includes more
carries more noise than needed (at most ``n/F`` times the variance).

**Accounting**: by default no amplification by sampling is claimed (``sampling
"none"``: charged at q = 1, add/remove neighbours). ``sampling="fixed"`` charges
a cohort of ``k`` of the ``N`` clients drawn without replacement at ``q = k/N``
(replace-one neighbours, WBK19; §21.7). ``sampling="poisson"`` lets each client
join each round independently with rate ``q = k/N`` (add/remove neighbours, the
Zhu-Wang bound, :func:`secagg.dp.rdp.poisson_subsample`): the cohort size then
varies, so the run releases only cohorts in a range ``[lo, hi]``
(:func:`secagg.dp.accountant.poisson_cohorts`), sizes the noise for the survivor
floor of ``lo`` clients and the wrap-around for ``hi``, and skips (trains nothing,
releases nothing, charges nothing) a round whose cohort falls outside. Skipping
depends on the cohort size, which the subsampled bound does not cover, so it is
paid in δ: the range is chosen so that its tails cost at most a tenth of δ
(``sampling_tail_delta``) and ε is converted at the rest. Every released Poisson
round is charged at the floor, not its included count (which depends on who was
sampled). Amplification only holds against a party that does not see who took
part: the server running the protocol does, so against the server the
unamplified ε is the one to read (and the simulation draws cohorts from the
run's seed, where a deployment needs the clients' own secret coins). ε grows roughly
like ``sqrt(rounds)/n`` at fixed noise: to keep ε, the noise multiplier grows
like ``sqrt(rounds)``, and the error of the mean falls like ``1/n``.

Next to it, from the same start, with the same cohorts and the same included
clients, two twins train on the same minibatches: **central DP** (the plaintext
mean of the same L2-clipped updates plus a continuous Gaussian added once by a
trusted server; its standard deviation is exactly that of the noise the
distributed round summed, ``sqrt(m·Var(share))/γ`` per coordinate, so both
models carry the same noise and differ only by the discretization; its ε,
``epsilon_central_dp``, is accounted by ``dp-accounting`` and is at most the
distributed ε, since its sensitivity is ``clip`` < ``Δ2/γ``; a baseline
simulation, its noise from numpy) and **no DP** (the plain uniform mean,
unclipped).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fl.algorithms import RunState
from fl.data import FederatedData
from fl.fedavg import (
    RANDOM_DROP_POINT,
    FedAvgConfig,
    Progress,
    RoundOutcome,
    _local_updates,
    draw_round,
)
from fl.models import Metrics, Model
from secagg.config import SessionConfig
from secagg.crypto.prg import mask_dtype
from secagg.dp.accountant import DPAccountant, PoissonCohorts, poisson_cohorts
from secagg.dp.central import central_epsilon_of
from secagg.dp.errors import DPConfigError
from secagg.dp.params import DPParams, check_mechanism
from secagg.dp.pipeline import decode_mean, encode_client
from secagg.dp.planning import Plan, format_plan, plan
from secagg.dp.rounding import clip_l2
from secagg.dp.survivors import dp_floor
from secagg.quantize import Layout, flatten, unflatten
from secagg.rounds import SEMI_HONEST_ROUNDS, Round
from secagg.sim import random_schedule, run_simulation

F64 = np.ndarray
#: the trainer's cohort samplings (``--dp-sampling``)
SAMPLINGS = ("none", "fixed", "poisson")
#: how the abort reason of a Poisson round outside the released range starts
POISSON_SKIP = "a Poisson cohort"


@dataclass(frozen=True)
class DPOptions:
    """The privacy target of a DP training run (``secagg train --dp``)."""

    mechanism: str = "skellam"
    epsilon: float = 8.0
    delta: float = 1e-5
    bits: int = 16
    clip: float = 1.0  # L2 norm of a client's update
    max_wrap: float = 1e-4
    #: dropout rate the noise is sized for (None: the run's simulated ``dropout``)
    expected_dropout: float | None = None
    #: "none" (charged at q = 1), "fixed" (cohort of k of N, WBK19 amplification) or
    #: "poisson" (each client joins with rate k/N, Zhu-Wang amplification)
    sampling: str = "none"
    #: smallest block of the block-diagonal rotation (0: one power of two; spec §21.11)
    min_block: int = 16

    def __post_init__(self) -> None:
        check_mechanism(self.mechanism)
        if self.epsilon <= 0 or not 0 < self.delta < 1 or self.clip <= 0:
            raise DPConfigError("epsilon and clip must be positive and delta in (0, 1)")
        if self.expected_dropout is not None and not 0 <= self.expected_dropout < 1:
            raise DPConfigError("expected dropout must be in [0, 1)")
        if self.sampling not in SAMPLINGS:
            raise DPConfigError(f"unknown DP cohort sampling {self.sampling!r}; "
                                "expected none, fixed or poisson")


@dataclass
class DPRoundRecord(RoundOutcome):
    """What one DP round did; ``asdict`` is a ``rounds`` entry of ``secagg train --dp --json``."""

    accuracy_secure: float
    accuracy_central_dp: float
    accuracy_plaintext: float
    loss_secure: float
    epsilon_round: float | None
    epsilon: float
    central_noise_multiplier: float | None
    epsilon_central_dp: float
    secagg_seconds: float
    train_seconds: float
    bytes_up_per_element: float | None
    clipped_fraction: float


@dataclass
class DPTrainingHistory:
    """Every round plus the plan and the accountant's total."""

    config: FedAvgConfig
    options: DPOptions
    plan: Plan
    initial_accuracy: float
    rounds: list[DPRoundRecord] = field(default_factory=list)
    #: the cohort sizes released and the δ their tails cost (Poisson sampling)
    cohorts: PoissonCohorts | None = None

    @property
    def epsilon(self) -> float:
        return self.rounds[-1].epsilon if self.rounds else 0.0

    def _final(self, name: str) -> float:
        return float(getattr(self.rounds[-1], name)) if self.rounds else self.initial_accuracy

    def to_dict(self) -> dict[str, Any]:
        p = self.plan.params
        sizes = [r.bytes_up_per_element for r in self.rounds if r.bytes_up_per_element]
        per_element = max(sizes) if sizes else None
        zs = [r.central_noise_multiplier for r in self.rounds
              if r.central_noise_multiplier is not None]
        return {
            "config": self.config.to_dict(),
            "dp_plan": self.plan.to_json(),
            "initial_accuracy": self.initial_accuracy,
            "final_accuracy_secure": self._final("accuracy_secure"),
            "final_accuracy_central_dp": self._final("accuracy_central_dp"),
            "final_accuracy_plaintext": self._final("accuracy_plaintext"),
            "epsilon": self.epsilon, "delta": self.options.delta,
            "epsilon_target": self.options.epsilon,
            "epsilon_central_dp": self.rounds[-1].epsilon_central_dp if self.rounds else 0.0,
            "mechanism": p.mechanism, "bits": p.bits, "dp_clip": p.clip,
            "survivor_floor": p.floor, "noise_multiplier": self.plan.noise_multiplier,
            "expected_dropout": self.expected_dropout, "dp_sampling": self.options.sampling,
            "sampling_rate": p.sampling_rate, "rotation_blocks": list(p.blocks),
            **self._poisson(),
            "central_noise_multiplier": min(zs) if zs else None,
            "bytes_up_per_element": per_element,
            "bytes_up_per_parameter": None if per_element is None
            else per_element * p.padded_dim / p.dim,
            "secagg_seconds": sum(r.secagg_seconds for r in self.rounds),
            "aborted_rounds": [r.round for r in self.rounds if r.aborted],
            "max_aggregation_error": None, "within_bound": True,
            "rounds": [asdict(r) for r in self.rounds],
        }


    def _poisson(self) -> dict[str, Any]:
        c = self.cohorts if self.options.sampling == "poisson" else None
        return {"cohort_range": None if c is None else [c.smallest, c.largest],
                "sampling_tail_delta": 0.0 if c is None else c.tail_delta,
                "skipped_rounds": [r.round for r in self.rounds
                                   if (r.abort_reason or "").startswith(POISSON_SKIP)]}

    @property
    def expected_dropout(self) -> float:
        e = self.options.expected_dropout
        return self.config.dropout if e is None else e


def _task_hash(layout: Layout, params: DPParams) -> bytes:
    """The session's task hash: model layout and DP parameters (§21.1 binding)."""
    h = hashlib.sha256(b"secagg-fl-dp-v1")
    h.update(repr((layout.shapes, layout.dtypes)).encode())
    h.update(params.binding())
    return h.digest()


@dataclass
class _DPStep:
    included: list[int]
    reason: str | None
    mean: F64 | None
    seconds: float
    bytes_per_element: float | None


class _DPTrainer:
    """The round loop's state: three models (distributed DP, central DP, no DP) and the
    accountant. Cohorts, dropouts and SGD seeds follow :class:`fl.fedavg._Trainer`."""

    def __init__(self, data: FederatedData, model: Model, config: FedAvgConfig,
                 options: DPOptions, progress: Progress | None) -> None:
        self.data, self.model, self.config, self.progress = data, model, config, progress
        self.options = options
        self.ids = sorted(data.clients)
        self.k = len(self.ids) if config.cohort_size is None else config.cohort_size
        if self.k > len(self.ids):
            raise DPConfigError(f"cohort_size {self.k} exceeds the {len(self.ids)} clients")
        start = model.get_weights()
        flat, self.layout = flatten(start)
        fixed = options.sampling == "fixed"
        self.q = self.k / len(self.ids) if options.sampling != "none" else 1.0
        self.cohorts = _cohort_range(len(self.ids), self.k, self.q, config, options)
        smallest, largest = self.cohorts.smallest, self.cohorts.largest
        # the session's own floor, for the smallest cohort released (ids do not matter)
        probe = SessionConfig.create(self.ids[:smallest], 1, 2**options.bits,
                                     settings=config.session_settings(), check_memory=False)
        expected = config.dropout if options.expected_dropout is None \
            else options.expected_dropout
        self.delta_rdp = self.cohorts.delta_rdp
        floor = dp_floor(probe, expected)
        # the noise sized for the smallest cohort costs about largest/smallest in error,
        # whatever the width: not held against it (as the planner's automatic width does)
        self.plan = plan(min(largest, len(self.ids)), flat.size, options.clip,
                         options.epsilon, self.delta_rdp, config.rounds, options.bits,
                         options.mechanism,
                         survivor_floor=floor, max_wrap=options.max_wrap,
                         sampling_rate=self.q, sampling="fixed" if fixed else "poisson",
                         min_block=options.min_block,
                         max_error_ratio=2.0 * max(1.0, largest / (smallest or 1)))
        self.params = self.plan.params
        self.accountant = DPAccountant(self.params, self.delta_rdp)
        self.central_zs: list[float] = []
        self.rng = np.random.default_rng([config.seed, 0xF1])
        self.noise_rng = np.random.default_rng()  # central baseline only (simulation)
        self.secure, self.central = start, [w.copy() for w in start]
        self.plain = [w.copy() for w in start]

    def evaluate(self, weights: list[np.ndarray]) -> Metrics:
        self.model.set_weights(weights)
        return self.model.evaluate(self.data.x_test, self.data.y_test)

    def _flat_updates(self, ids: Sequence[int], start: list[np.ndarray], r: int,
                      stage: str) -> dict[int, F64]:
        state = RunState.start(start, "fedavg")  # DP training averages plain deltas
        ups = _local_updates(self.model, self.data, ids, state, self.config, r,
                             self.progress, stage)
        return {u: flatten(up.parts[0])[0] for u, up in ups.items()}

    def _secure_step(self, updates: dict[int, F64], schedule: dict[Round, set[int]],
                     r: int) -> _DPStep:
        t0 = time.perf_counter()
        cohort = sorted(updates)
        config = SessionConfig.create(
            cohort, self.params.padded_dim, 2**self.params.bits,
            settings=self.config.session_settings(), round_index=r,
            task_hash=_task_hash(self.layout, self.params), check_memory=False)
        sid = config.session_id
        dtype = mask_dtype(config.modulus)  # the client's input dtype for Z_{2^B}
        encoded = {u: encode_client(updates[u], self.params, sid, r).astype(dtype)
                   for u in cohort}
        run = run_simulation(config, encoded, schedule, threads=self.config.threads)
        report = run.report
        masked = report.bytes_up_per_round.get(Round.MASKED_INPUT.label)
        per_element = None
        if masked and report.included:
            # bytes_up_per_round is averaged over the whole cohort; count the senders
            senders = len(config.cohort) - len(schedule.get(Round.ADVERTISE_KEYS, ()))
            senders -= len(schedule.get(Round.SHARE_KEYS, ()))
            senders -= len(schedule.get(Round.MASKED_INPUT, ()))
            per_element = masked * config.n / max(1, senders) / config.dim
        if run.result is None:
            return _DPStep([], report.abort_reason or "the session did not finish", None,
                           time.perf_counter() - t0, per_element)
        included = sorted(run.result.included)
        if len(included) < self.params.floor:
            return _DPStep(included, f"{len(included)} included, below the survivor floor "
                           f"{self.params.floor}: not released", None,
                           time.perf_counter() - t0, per_element)
        mean = decode_mean(run.result.sum, self.params, sid, len(included), r)
        return _DPStep(included, None, mean, time.perf_counter() - t0, per_element)

    def central_multiplier(self, included: int) -> float:
        """z of the central twin: the distributed round's summed noise in clip units.

        ``m`` included shares sum to variance ``m·Var(share)`` per rotated coordinate,
        ``sqrt(m·Var)/γ`` per coordinate after decoding (the rotation is orthogonal);
        the twin adds exactly that standard deviation, so both models carry the same
        noise and the twin's ε (continuous Gaussian, sensitivity ``clip`` < ``Δ2/γ``)
        is at most the distributed run's.
        """
        p = self.params
        return math.sqrt(included * p.client_variance()) / (p.gamma * p.clip)

    def central_epsilon(self) -> float:
        return central_epsilon_of(self.central_zs, self.delta_rdp, self.q,
                                  self.params.sampling)

    def _twins(self, r: int, included: list[int]) -> None:
        """Central DP and no DP over the same included clients, same minibatches."""
        if not included:
            return
        m, clip = len(included), self.params.clip
        ups = self._flat_updates(included, self.central, r, "central")
        mean = np.mean([clip_l2(ups[u], clip) for u in included], axis=0)
        z = self.central_multiplier(m)
        self.central_zs.append(z)
        mean = mean + self.noise_rng.normal(0.0, z * clip / m, mean.shape)
        self.central = _add(self.central, unflatten(mean, self.layout))
        ups = self._flat_updates(included, self.plain, r, "plaintext")
        plain_mean = np.mean([ups[u] for u in included], axis=0)
        self.plain = _add(self.plain, unflatten(plain_mean, self.layout))

    def _draw(self) -> tuple[list[int], Round, dict[Round, set[int]]]:
        if self.options.sampling == "poisson":
            return draw_poisson_round(self.rng, self.ids, self.q, self.config)
        return draw_round(self.rng, self.ids, self.k, self.config)

    def _skipped(self, r: int, cohort: list[int], point: Round) -> DPRoundRecord:
        """A Poisson cohort outside the released range: no training, nothing released,
        nothing charged (its probability is paid in δ, :class:`PoissonCohorts`)."""
        lo, hi = self.cohorts.smallest, self.cohorts.largest
        m_secure = self.evaluate(self.secure)
        return DPRoundRecord(
            round=r, cohort=cohort, drop_at=point.label, dropped=[], included=[],
            aborted=True, abort_reason=f"{POISSON_SKIP} of {len(cohort)}, outside "
            f"[{lo}, {hi}]: not released", accuracy_secure=m_secure.accuracy,
            accuracy_central_dp=self.evaluate(self.central).accuracy,
            accuracy_plaintext=self.evaluate(self.plain).accuracy, loss_secure=m_secure.loss,
            epsilon_round=None, epsilon=self.accountant.epsilon, central_noise_multiplier=None,
            epsilon_central_dp=self.central_epsilon(), secagg_seconds=0.0, train_seconds=0.0,
            bytes_up_per_element=None, clipped_fraction=0.0)

    def _charge(self, included: int) -> float:
        """Charge a released round: with its included count, or under Poisson sampling
        with the floor, the least noise any released round carries (the included count
        depends on who was sampled, so a charge that followed it would itself leak)."""
        poisson = self.options.sampling == "poisson"
        return self.accountant.charge(self.params.floor if poisson else included).epsilon_round

    def round(self, r: int) -> DPRoundRecord:
        cohort, point, schedule = self._draw()
        if not self.cohorts.smallest <= len(cohort) <= self.cohorts.largest:
            return self._skipped(r, cohort, point)
        t0 = time.perf_counter()
        updates = self._flat_updates(cohort, self.secure, r, "train")
        train_seconds = time.perf_counter() - t0
        clipped = sum(float(np.linalg.norm(v)) > self.params.clip for v in updates.values())
        if self.progress:
            self.progress(r, "secagg", 0, 1)
        step = self._secure_step(updates, schedule, r)
        charge = None
        released = step.mean is not None
        if step.mean is not None:
            self.secure = _add(self.secure, unflatten(step.mean, self.layout))
            charge = self._charge(len(step.included))
        self._twins(r, step.included if released else [])
        m_secure = self.evaluate(self.secure)
        return DPRoundRecord(
            round=r, cohort=cohort, drop_at=point.label,
            dropped=sorted(set(cohort) - set(step.included)), included=step.included,
            aborted=not released, abort_reason=step.reason,
            accuracy_secure=m_secure.accuracy,
            accuracy_central_dp=self.evaluate(self.central).accuracy,
            accuracy_plaintext=self.evaluate(self.plain).accuracy,
            loss_secure=m_secure.loss,
            epsilon_round=charge,
            epsilon=self.accountant.epsilon,
            central_noise_multiplier=self.central_zs[-1] if released else None,
            epsilon_central_dp=self.central_epsilon(), secagg_seconds=step.seconds,
            train_seconds=train_seconds, bytes_up_per_element=step.bytes_per_element,
            clipped_fraction=clipped / len(cohort),
        )


def run_dp_training(
    data: FederatedData,
    model: Model,
    config: FedAvgConfig,
    options: DPOptions,
    *,
    progress: Progress | None = None,
    on_round: Callable[[DPRoundRecord], None] | None = None,
    on_plan: Callable[[str], None] | None = None,
) -> DPTrainingHistory:
    """Train ``model`` (its weights are the start) by distributed-DP FedAvg and its twins.

    ``config`` gives the FL hyper-parameters (its ``clip`` and ``bits`` are not
    used: the DP clip is ``options.clip``, an L2 norm, and the ring width
    ``options.bits``). Raises :class:`DPConfigError` for a target the
    planner refuses (§21.8). ``on_plan`` hears the plan (``format_plan``) before
    the first round. On return ``model`` holds the distributed-DP model.
    """
    trainer = _DPTrainer(data, model, config, options, progress)
    if on_plan:
        on_plan(format_plan(trainer.plan))
    history = DPTrainingHistory(config, options, trainer.plan,
                                model.evaluate(data.x_test, data.y_test).accuracy,
                                cohorts=trainer.cohorts)
    for r in range(1, config.rounds + 1):
        record = trainer.round(r)
        history.rounds.append(record)
        if on_round:
            on_round(record)
    model.set_weights(trainer.secure)
    return history


def draw_poisson_round(rng: np.random.Generator, ids: Sequence[int], q: float,
                       config: FedAvgConfig) -> tuple[list[int], Round, dict[Round, set[int]]]:
    """:func:`fl.fedavg.draw_round` with Poisson sampling (§21.7): each client joins
    independently with rate ``q``, so the cohort's size varies. Drawn from the run's
    seeded generator, like every cohort of the simulation: amplification assumes the
    draw is hidden from the adversary, and the server sees the cohort in any case."""
    cohort = [u for u, x in zip(ids, rng.random(len(ids)), strict=True) if x < q]
    point = (Round.from_label(config.drop_at) if config.drop_at != RANDOM_DROP_POINT
             else SEMI_HONEST_ROUNDS[int(rng.integers(len(SEMI_HONEST_ROUNDS)))])
    return cohort, point, random_schedule(cohort, config.dropout, point, rng)


def _cohort_range(population: int, k: int, q: float, config: FedAvgConfig,
                  options: DPOptions) -> PoissonCohorts:
    """The cohort sizes released: ``k`` exactly, or the Poisson range (δ paid for its
    tails); a range reaching below the protocol's minimum cohort is refused."""
    if options.sampling != "poisson":
        return PoissonCohorts(k, k, 0.0, options.delta)
    cohorts = poisson_cohorts(population, q, config.rounds, options.epsilon, options.delta)
    if cohorts.smallest < config.min_cohort:
        raise DPConfigError(
            f"Poisson cohorts of rate {q:g} over {population} clients reach {cohorts.smallest} "
            f"clients, below the minimum cohort {config.min_cohort}; raise --cohort")
    return cohorts


def _add(base: Sequence[np.ndarray], delta: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``base + delta`` in the base's dtypes (a float64 mean applied to float32 weights)."""
    return [np.asarray(b + d).astype(b.dtype, copy=False)
            for b, d in zip(base, delta, strict=True)]

"""Federated Averaging (McMahan et al. 2017) with the average computed by secure aggregation.

Each round: sample a cohort; every cohort client receives the global model,
runs ``local_epochs`` of SGD on its own data (FedProx term ``mu`` optional) and
sends its update ``delta_u = w_u - w_global`` with weight ``n_u`` (its number
of training examples); the server sets ``w_global += Σ n_u delta_u / Σ n_u``
over the clients that stayed. The weighted mean comes from
:class:`secagg.aggregator.SecureAggregator`: weights travel inside the masked
vector, so the server sees neither one client's update nor its weight.

Dropouts come from the simulator: a chosen fraction of the cohort stops
sending at a chosen (or random) protocol round. Clients that dropped before
their masked input are left out of the mean; the round goes on with the
survivors. If too few survive, the session aborts and the round keeps the old
model (and the history says so).

Next to the secure run, the same loop runs **plaintext** FedAvg from the same
initial model with the same cohorts, the same included clients and the same
per-client SGD seeds, averaging in float64 with no clipping or quantization.
The gap between the two is what secure aggregation costs in accuracy. Each
round also checks the secure mean against the plaintext weighted mean of the
very same (clipped) updates: the difference must stay within
:attr:`SecureAggregator.error_bound`.

The same loop runs FedProx, SCAFFOLD, FedPer and Ditto (``FedAvgConfig.algorithm``):
what a client sends and what the server does with the means is in
:mod:`fl.algorithms`. SCAFFOLD's two means (model and control-variate deltas)
come from ONE secure session, each part with its own clipping range
(:mod:`fl.parts`), so both use the same included clients; each part's error is
checked against its own bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fl import algorithms, parts
from fl.algorithms import ClientUpdate, RunState
from fl.data import FederatedData
from fl.models import Metrics, Model, check_training_args
from secagg.aggregator import AggregationAborted, SecureAggregator, weighted_mean
from secagg.config import DEFAULT_MIN_COHORT, SessionSettings
from secagg.errors import ConfigError
from secagg.graph import GraphKind
from secagg.quantize import flatten
from secagg.rounds import SEMI_HONEST_ROUNDS, Round
from secagg.session import DropoutSchedule
from secagg.sim import random_schedule

#: ``drop_at`` value that picks the protocol round of each FL round's dropouts at random
RANDOM_DROP_POINT = "random"
DROP_AT_CHOICES = (RANDOM_DROP_POINT, *(p.label for p in SEMI_HONEST_ROUNDS))

#: progress callback: (fl_round, stage, done, total)
Progress = Callable[[int, str, int, int], None]


@dataclass(frozen=True)
class FedAvgConfig:
    """Hyper-parameters of one training run (the defaults are ``secagg train``'s).

    ``cohort_size=None`` takes every client each round. ``dropout`` is the
    fraction of the cohort that drops each round, at protocol round
    ``drop_at`` (``"random"``: a random one per FL round). ``declared_dropout``
    is what the SecAgg+ parameter finder provisions the graph for; keep it
    above ``dropout``. ``settings`` (a :class:`~secagg.config.SessionSettings`)
    gives every session choice at once; when given, ``graph``,
    ``declared_dropout`` and ``min_cohort`` are taken from it. ``min_cohort`` is the
    protocol's minimum cohort (§2.4, default 10): a run whose per-round cohort is
    smaller is refused before any training, since a sum over so few clients reveals
    too much about each (``secagg attack inversion`` recovers images from a 5-client
    sum). ``clip`` bounds each coordinate of an update and
    ``bits`` is the quantization resolution; ``max_weight`` is the public cap
    on a client's weight (``None``: the federation's total number of training
    examples, which no single client can exceed). ``algorithm`` is one of
    :data:`fl.algorithms.ALGORITHMS` (``fedprox`` needs ``mu > 0``; ``fedavg`` with
    ``mu > 0`` is FedProx too, as before); ``control_clip`` is the clipping range of
    SCAFFOLD's control-variate deltas, aggregated in the same session as the model
    deltas with their own range (:mod:`fl.parts`); ``ditto_lambda`` is Ditto's
    proximal weight pulling each personal model towards the global one.
    """

    rounds: int = 10
    cohort_size: int | None = None
    local_epochs: int = 5
    lr: float = 0.5
    batch_size: int = 16
    mu: float = 0.0
    dropout: float = 0.2
    drop_at: str = RANDOM_DROP_POINT
    graph: str = GraphKind.HARARY.value
    declared_dropout: float = 0.25
    clip: float = 2.0
    bits: int = 16
    algorithm: str = "fedavg"
    control_clip: float = 1.0
    ditto_lambda: float = 0.1
    max_weight: int | None = None
    threads: int | None = None
    seed: int = 0
    plaintext_baseline: bool = True
    settings: SessionSettings | None = None
    min_cohort: int = DEFAULT_MIN_COHORT

    def __post_init__(self) -> None:
        if self.settings is not None:
            if not isinstance(self.settings, SessionSettings):
                raise ConfigError("settings must be a SessionSettings")
            object.__setattr__(self, "graph", self.settings.graph.value)
            object.__setattr__(self, "declared_dropout", float(self.settings.dropout_rate))
            object.__setattr__(self, "min_cohort", self.settings.min_cohort)
        if not isinstance(self.rounds, int) or self.rounds < 1:
            raise ConfigError("rounds must be an int >= 1")
        check_training_args(self.local_epochs, self.lr, self.batch_size, self.mu)
        algorithms.check_algorithm(self.algorithm, self.mu)
        if not (np.isfinite(self.control_clip) and self.control_clip > 0):
            raise ConfigError("control_clip must be a finite number > 0")
        if not (np.isfinite(self.ditto_lambda) and self.ditto_lambda >= 0):
            raise ConfigError("ditto_lambda must be a finite number >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout must be in [0, 1)")
        if self.drop_at not in DROP_AT_CHOICES:
            raise ConfigError(f"drop_at must be one of {', '.join(DROP_AT_CHOICES)}")
        if self.cohort_size is not None and self.cohort_size < 1:
            raise ConfigError("cohort_size must be >= 1")

    def session_settings(self) -> SessionSettings:
        """The session choices of every round: ``settings``, else built from ``graph`` and
        ``declared_dropout`` (the other choices at their defaults)."""
        if self.settings is not None:
            return self.settings
        return SessionSettings.build(graph=self.graph, dropout_rate=self.declared_dropout,
                                     min_cohort=self.min_cohort)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``settings`` only when given, with enums as their names)."""
        out = asdict(self)
        settings = out.pop("settings")
        if settings is not None:
            out["settings"] = {key: getattr(value, "value", value)
                               for key, value in settings.items()}
        return out


def draw_round(rng: np.random.Generator, ids: Sequence[int], k: int,
               config: FedAvgConfig) -> tuple[list[int], Round, dict[Round, set[int]]]:
    """One round's random draws, shared by ``run_fedavg`` and the DP job: a cohort
    of ``k`` of ``ids``, the protocol round its dropouts happen at (``--drop-at``,
    or a random one) and who drops there. The draw order is part of reproducibility."""
    cohort = sorted(rng.choice(ids, size=k, replace=False).tolist())
    point = (Round.from_label(config.drop_at) if config.drop_at != RANDOM_DROP_POINT
             else SEMI_HONEST_ROUNDS[int(rng.integers(len(SEMI_HONEST_ROUNDS)))])
    return cohort, point, random_schedule(cohort, config.dropout, point, rng)


@dataclass
class RoundOutcome:
    """Who took part in one round and whether it released a sum (§9 dropouts).

    The leading fields of both round records (``secagg train`` and ``--dp``), kept
    in one place so their JSON shares the same first keys.
    """

    round: int
    cohort: list[int]
    drop_at: str
    dropped: list[int]
    included: list[int]
    aborted: bool
    abort_reason: str | None


@dataclass
class RoundRecord(RoundOutcome):
    """What one FL round did. ``to_dict`` field names are part of ``secagg train --json``."""

    total_weight: int
    accuracy_secure: float
    accuracy_plaintext: float | None
    loss_secure: float
    loss_plaintext: float | None
    secagg_seconds: float
    server_seconds: float
    train_seconds: float
    aggregation_error: float | None
    error_bound: float
    clipped_fraction: float
    #: SCAFFOLD: the control-variate part's error and bound (None for other algorithms)
    control_aggregation_error: float | None = None
    control_error_bound: float | None = None


@dataclass
class TrainingHistory:
    """Every round's record plus the starting point; what ``secagg train`` reports."""

    config: FedAvgConfig
    initial_accuracy: float
    rounds: list[RoundRecord] = field(default_factory=list)
    #: each client's final accuracy on its own test part, with the model it would use
    #: (the global model; FedPer: the shared body with its own head)
    personal_accuracy_secure: dict[int, float] = field(default_factory=dict)
    personal_accuracy_plaintext: dict[int, float] | None = None

    @property
    def final_accuracy_secure(self) -> float:
        return self.rounds[-1].accuracy_secure if self.rounds else self.initial_accuracy

    @property
    def final_accuracy_plaintext(self) -> float | None:
        return self.rounds[-1].accuracy_plaintext if self.rounds else self.initial_accuracy

    @property
    def secagg_seconds(self) -> float:
        return sum(r.secagg_seconds for r in self.rounds)

    @property
    def max_aggregation_error(self) -> float | None:
        errors = [r.aggregation_error for r in self.rounds if r.aggregation_error is not None]
        return max(errors) if errors else None

    @property
    def within_bound(self) -> bool:
        """Every completed round's secure mean was within the quantization bound."""
        return all((r.aggregation_error is None or r.aggregation_error <= r.error_bound)
                   and (r.control_aggregation_error is None or r.control_error_bound is None
                        or r.control_aggregation_error <= r.control_error_bound)
                   for r in self.rounds)

    def _personal(self, per: dict[int, float] | None) -> tuple[float | None, float | None]:
        if not per:
            return None, None
        values = list(per.values())
        return float(np.mean(values)), algorithms.worst_fraction_mean(values, 0.1)

    def to_dict(self) -> dict[str, Any]:
        mean, worst = self._personal(self.personal_accuracy_secure)
        mean_p, worst_p = self._personal(self.personal_accuracy_plaintext)
        return {
            "config": self.config.to_dict(),
            "initial_accuracy": self.initial_accuracy,
            "final_accuracy_secure": self.final_accuracy_secure,
            "final_accuracy_plaintext": self.final_accuracy_plaintext,
            "secagg_seconds": self.secagg_seconds,
            "aborted_rounds": [r.round for r in self.rounds if r.aborted],
            "max_aggregation_error": self.max_aggregation_error,
            "max_control_aggregation_error": max(
                (r.control_aggregation_error for r in self.rounds
                 if r.control_aggregation_error is not None), default=None),
            "within_bound": self.within_bound,
            "rounds": [asdict(r) for r in self.rounds],
            "algorithm": self.config.algorithm,
            "personal_accuracy_mean": mean,
            "personal_accuracy_worst10": worst,
            "personal_accuracy_mean_plaintext": mean_p,
            "personal_accuracy_worst10_plaintext": worst_p,
            "personal_accuracies": {str(u): a for u, a in self.personal_accuracy_secure.items()},
        }


def _local_updates(model: Model, data: FederatedData, ids: Sequence[int], state: RunState,
                   config: FedAvgConfig, fl_round: int, progress: Progress | None,
                   stage: str) -> dict[int, ClientUpdate]:
    """Each client's local training from ``state`` and what it sends (:mod:`fl.algorithms`).

    Client u's SGD shuffling in round r is seeded by (seed, r, u) alone, so the
    secure and the plaintext run train each client on the same minibatches.
    """
    updates: dict[int, ClientUpdate] = {}
    for i, u in enumerate(ids):
        if progress:
            progress(fl_round, stage, i, len(ids))
        updates[u] = algorithms.local_update(
            model, data.clients[u], state, u, config.algorithm, epochs=config.local_epochs,
            lr=config.lr, batch_size=config.batch_size, mu=config.mu,
            rng=np.random.default_rng([config.seed, fl_round, u]),
            ditto_lambda=config.ditto_lambda)
    return updates


@dataclass
class _SecureStep:
    """What one round's secure aggregation did, aborted or not (``means``/``errors``: one
    entry per part)."""

    included: list[int]
    aborted: bool
    reason: str | None
    total_weight: int
    seconds: float
    server_seconds: float
    means: list[list[np.ndarray]] | None
    errors: list[float] | None


def _secure_step(aggregator: SecureAggregator, updates: dict[int, ClientUpdate],
                 weights: dict[int, int], schedule: DropoutSchedule, fl_round: int,
                 clips: Sequence[float]) -> _SecureStep:
    """One secure aggregation of every part at once (:mod:`fl.parts`), and how far each
    part's mean is from the plaintext mean of the same included clients' clipped parts
    (the quantization error, checked against each part's bound)."""
    clip = aggregator.clip
    sizes = [len(p) for p in next(iter(updates.values())).parts]
    packed = {u: parts.pack(up.parts, clips, clip) for u, up in updates.items()}
    try:
        result = aggregator.aggregate(packed, weights, dropouts=schedule, round_index=fl_round)
    except AggregationAborted as exc:
        return _SecureStep([], True, exc.reason, 0, exc.seconds, exc.report.server_seconds,
                           None, None)
    included = list(result.included)
    means = parts.unpack(result.mean, sizes, clips, clip)
    references = parts.unpack(weighted_mean(packed, weights, included, clip=clip), sizes,
                              clips, clip)
    errors = [max((float(np.max(np.abs(np.asarray(m, dtype=np.float64) - o), initial=0.0))
                   for m, o in zip(mean, ref, strict=True)), default=0.0)
              for mean, ref in zip(means, references, strict=True)]
    return _SecureStep(included, False, None, result.total_weight, result.seconds,
                       result.report.server_seconds, means, errors)


def _plain_means(updates: dict[int, ClientUpdate], weights: dict[int, int],
                 included: list[int]) -> list[list[np.ndarray]]:
    """The plaintext twin's float64 weighted mean of each part (no clipping, no quantization)."""
    count = len(next(iter(updates.values())).parts)
    return [weighted_mean({u: updates[u].parts[k] for u in included}, weights, included)
            for k in range(count)]


class _Trainer:
    """The round loop's state: both runs' states, the cohort sampler and the aggregator.

    The secure run and its plaintext twin start from the same weights and train
    each client on the same minibatches; the twin averages in the clear over the
    clients the secure round included.
    """

    def __init__(self, data: FederatedData, model: Model, config: FedAvgConfig,
                 progress: Progress | None) -> None:
        self.data, self.model, self.config, self.progress = data, model, config, progress
        algorithms.check_model(model, config.algorithm)
        self.ids = sorted(data.clients)
        self.k = len(self.ids) if config.cohort_size is None else config.cohort_size
        if self.k > len(self.ids):
            raise ConfigError(f"cohort_size {self.k} exceeds the {len(self.ids)} clients")
        max_weight = config.max_weight if config.max_weight is not None else data.num_train
        self.weights = {u: data.clients[u].num_examples for u in self.ids}
        self.aggregator = SecureAggregator(
            clip=config.clip, bits=config.bits, max_weight=max_weight,
            settings=config.session_settings(), threads=config.threads, seed=config.seed,
        )
        # refuse a config that cannot run (too small a cohort, no Harary parameters)
        # before anyone trains; the layout's size does not affect these checks
        self.aggregator.session_config(self.ids[:self.k], flatten(model.get_weights())[1])
        self.rng = np.random.default_rng([config.seed, 0xF1])
        #: each part's clipping range: the model delta's, then (SCAFFOLD) the control delta's
        self.clips = [config.clip, config.control_clip][:algorithms.num_parts(config.algorithm)]
        self.bounds = parts.part_bounds(self.aggregator.error_bound, self.clips, config.clip)
        self.secure = RunState.start(model.get_weights(), config.algorithm)
        self.plain = RunState.start(model.get_weights(), config.algorithm)

    def evaluate(self, state: RunState) -> Metrics:
        return algorithms.evaluate(self.model, self.data, state, self.config.algorithm)

    def round(self, r: int) -> RoundRecord:
        config = self.config
        cohort, point, schedule = draw_round(self.rng, self.ids, self.k, config)
        t0 = time.perf_counter()
        updates = _local_updates(self.model, self.data, cohort, self.secure, config, r,
                                 self.progress, "train")
        train_seconds = time.perf_counter() - t0
        cohort_weights = {u: self.weights[u] for u in cohort}
        if self.progress:
            self.progress(r, "secagg", 0, 1)
        step = _secure_step(self.aggregator, updates, cohort_weights, schedule, r, self.clips)
        if step.means is not None:
            algorithms.apply(self.secure, step.means, updates, step.included,
                             step.total_weight, self.data.num_train, config.algorithm)
        m_secure = self.evaluate(self.secure)
        m_plain = self._plaintext_round(r, step.included, cohort_weights)
        ctrl = len(self.clips) > 1
        return RoundRecord(
            round=r, cohort=cohort, drop_at=point.label,
            dropped=sorted(set(cohort) - set(step.included)), included=step.included,
            aborted=step.aborted, abort_reason=step.reason, total_weight=step.total_weight,
            accuracy_secure=m_secure.accuracy,
            accuracy_plaintext=None if m_plain is None else m_plain.accuracy,
            loss_secure=m_secure.loss, loss_plaintext=None if m_plain is None else m_plain.loss,
            secagg_seconds=step.seconds, server_seconds=step.server_seconds,
            train_seconds=train_seconds,
            aggregation_error=None if step.errors is None else step.errors[0],
            error_bound=self.bounds[0],
            clipped_fraction=_clipped_fraction({u: up.parts[0] for u, up in updates.items()},
                                               config.clip),
            control_aggregation_error=step.errors[1] if ctrl and step.errors else None,
            control_error_bound=self.bounds[1] if ctrl else None,
        )

    def _plaintext_round(self, r: int, included: list[int],
                         weights: dict[int, int]) -> Metrics | None:
        """The plaintext twin's round over the same included clients (None: no twin)."""
        if not self.config.plaintext_baseline:
            return None
        if included:
            updates = _local_updates(self.model, self.data, included, self.plain, self.config,
                                     r, self.progress, "plaintext")
            algorithms.apply(self.plain, _plain_means(updates, weights, included), updates,
                             included, sum(weights[u] for u in included), self.data.num_train,
                             self.config.algorithm)
        return self.evaluate(self.plain)

    def personal(self, state: RunState) -> dict[int, float]:
        """Each client's accuracy on its own test part with the model it would use."""
        per = algorithms.client_metrics(self.model, self.data, state, self.config.algorithm)
        return {u: m.accuracy for u, m in per.items()}


def check_run(data: FederatedData, model: Model, config: FedAvgConfig) -> None:
    """Refuse (ConfigError) what :func:`run_fedavg` would refuse before its first round:
    a cohort above the clients or below ``min_cohort``, no Harary parameters, an
    algorithm the model cannot run. Cheap (no training); ``secagg train`` calls it
    before printing anything."""
    _Trainer(data, model, config, None)


def run_fedavg(
    data: FederatedData,
    model: Model,
    config: FedAvgConfig | None = None,
    *,
    progress: Progress | None = None,
    on_round: Callable[[RoundRecord], None] | None = None,
) -> TrainingHistory:
    """Train ``model`` (its current weights are the start) by secure FedAvg.

    ``model`` is used as a scratch trainer for every client (its weights are
    overwritten); on return it holds the final secure global model.
    ``progress`` hears about each client trained and each aggregation started;
    ``on_round`` gets every round's record as soon as the round ends.
    ``config.algorithm`` picks FedAvg, FedProx, SCAFFOLD, FedPer or Ditto (:mod:`fl.algorithms`);
    with FedPer the model holds the shared body and the initial head on return.
    """
    config = config or FedAvgConfig()
    trainer = _Trainer(data, model, config, progress)
    history = TrainingHistory(config, model.evaluate(data.x_test, data.y_test).accuracy)
    for r in range(1, config.rounds + 1):
        record = trainer.round(r)
        history.rounds.append(record)
        if on_round:
            on_round(record)
    history.personal_accuracy_secure = trainer.personal(trainer.secure)
    if config.plaintext_baseline:
        history.personal_accuracy_plaintext = trainer.personal(trainer.plain)
    model.set_weights(trainer.secure.weights)
    return history


def _clipped_fraction(updates: dict[int, list[np.ndarray]], clip: float) -> float:
    """Share of update coordinates beyond ``±clip``: how much clipping bends the mean."""
    total = beyond = 0
    for arrays in updates.values():
        for a in arrays:
            total += a.size
            beyond += int(np.count_nonzero(np.abs(a) > clip))
    return beyond / total if total else 0.0

"""In-process simulation: one session, n clients, a dropout schedule, checked and costed.

The simulator composes the session driver (:mod:`secagg.session`), which only
moves messages (every message encoded to its canonical bytes and decoded on the
other side, exactly what a transport does, so byte counts are real and the
codec is exercised), with honest clients, a dropout schedule and a few cheap
observers: per-round byte counts, progress, and the public transcript. All
protocol decisions are made by :class:`~secagg.client.ClientProtocol` and
:class:`~secagg.server.ServerProtocol`.

A client scheduled to drop at a round does not send that round's message
(and never speaks again). The result is checked against the plaintext sum of
the included clients' inputs.

Active mode (spec §15) is simulated with freshly generated identities (or the
caller's) and one more round, ConsistencyCheck, with its own drop point.

With an engine of two or more workers (``engine``), the clients run there too,
a shard per worker (:mod:`secagg.simclients`): each round's messages go to the
worker that holds their clients, replies come back as bytes in bounded windows and
each reaches the server as soon as it arrives, so this process (the server) holds a
window of masked vectors, never n; with a :class:`~secagg.simclients.SeededInputs`
no party holds n inputs and the plaintext check streams by range.

Measurements that cost more than the session (the hardware floor, the server's
peak memory) live in :mod:`secagg.measure`, which composes with this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TypedDict, Unpack

import numpy as np

from secagg.budget import Role, check_session
from secagg.client import ClientProtocol
from secagg.config import Mode, SessionConfig
from secagg.crypto.prg import mask_dtype
from secagg.crypto.signatures import SigningKey
from secagg.engine import Engine, InlineEngine, PinnedEngine
from secagg.errors import ConfigError
from secagg.identity import MemoryTrustStore, TrustStore, generate_identities
from secagg.kernels.arith import add_into
from secagg.kernels.warmup import warm_up
from secagg.messages import ServerMessage
from secagg.rounds import Round
from secagg.server import ServerProtocol, ServerState, UnmaskedSum
from secagg.session import (
    ClientChannel,
    DropoutSchedule,
    SessionDriver,
    SessionObserver,
    drop_rounds,
)
from secagg.simclients import ShardChannel, check_picklable_inputs, open_shards, peak_rss_bytes
from secagg.transcript import TranscriptObserver, TranscriptSink

#: A dropout schedule: round (or its public label) -> the clients that stop sending there.
Schedule = DropoutSchedule
Progress = Callable[[str, int, int], None]


@dataclass
class SimulationReport:
    """What one simulated session did and cost. ``to_json`` is a public interface."""

    exact: bool
    aborted: bool
    abort_reason: str | None
    clients: int
    dim: int
    graph: str
    threshold: int
    degree: int
    modulus_bits: int
    included: int
    included_ids: list[int]
    dropped_ids: list[int]
    server_seconds: float
    client_seconds_mean: float
    floor_seconds: float
    server_to_floor: float | None
    bytes_up_per_client: float
    bytes_down_per_client: float
    bytes_up_per_round: dict[str, float]
    bytes_down_per_round: dict[str, float]
    peak_server_mb: float
    threads: int
    client_refusals: dict[int, str] = field(default_factory=dict)
    mode: str = Mode.SEMI_HONEST.value
    #: worker processes of the server's unmasking (1: its threads, in process)
    workers: int = 1
    #: every primitive the server's unmasking ran, counted (secagg.unmask.UnmaskWork)
    server_work: dict[str, int] = field(default_factory=dict)
    #: the full floor (secagg.floor.measure_full_floor) and its parts; measured by
    #: secagg.measure.simulate, zero / None here
    full_floor_seconds: float = 0.0
    server_to_full_floor: float | None = None
    full_floor_parts: dict[str, float] = field(default_factory=dict)
    #: where the clients ran: "process" (this one) or "workers" (a shard per worker)
    clients_on: str = "process"
    #: this process's peak resident memory (MB) when the session ended, before the
    #: plaintext check and the measurements; with clients on workers, the server's own
    session_rss_mb: float = 0.0
    #: the workers' peak resident memory (MB), summed (0 when the clients ran here)
    workers_rss_mb: float = 0.0
    #: set by ``secagg simulate``: the whole run's wall time and peak resident memory
    #: (this process, plus each worker's, plus waited-for children; 0 here)
    wall_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    #: the aggregate itself (sum mod R over ``included_ids``); not part of the JSON
    sum: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("sum")
        data["client_refusals"] = {str(k): v for k, v in self.client_refusals.items()}
        return json.dumps(data, sort_keys=True)


@dataclass
class SimulationRun:
    """A simulated session's report with what measurements need: the result and the
    server's trust store (to rebuild an identical server)."""

    report: SimulationReport
    result: UnmaskedSum | None
    trust_store: TrustStore | None


def random_schedule(cohort: Iterable[int], rate: float, at: Round | str,
                    rng: np.random.Generator) -> dict[Round, set[int]]:
    """Drop ``round(rate * n)`` clients chosen at random, all at round ``at``."""
    ids = sorted(cohort)
    if not 0.0 <= rate <= 1.0:
        raise ConfigError("dropout rate must be in [0, 1]")
    k = round(rate * len(ids))
    chosen = set(rng.choice(ids, size=k, replace=False).tolist()) if k else set()
    return {at if isinstance(at, Round) else Round.from_label(at): chosen}


class _Traffic(SessionObserver):
    """Bytes per round as the simulator has always counted them, and progress.

    Uplink bytes count in the round the message belongs to; a server message
    counts in the round its reply belongs to (the round that is next), and only
    while the session goes on: the final messages (an abort, the end) do not count.
    """

    def __init__(self, driver: SessionDriver, progress: Progress | None) -> None:
        self.driver = driver
        self.progress = progress
        self.up = {r.label: 0 for r in driver.rounds}
        self.down = {r.label: 0 for r in driver.rounds}
        self._next: Round | None = None
        self._sent = 0
        self._total = 0

    def on_up(self, round: Round, client_id: int, data: bytes) -> None:
        self.up[round.label] += len(data)

    def on_round_closed(self, round: Round, outgoing: Mapping[int, ServerMessage]) -> None:
        self._next = None if self.driver.ended else self.driver.next_round(round)
        self._sent, self._total = 0, len(outgoing)

    def on_down(self, round: Round, client_id: int, data: bytes) -> None:
        if self._next is None:
            return
        if self.progress:
            self.progress(self._next.label, self._sent, self._total)
        self._sent += 1
        self.down[self._next.label] += len(data)


def _identities(config: SessionConfig, identities: Mapping[int, SigningKey] | None,
                trust_store: TrustStore | None
                ) -> tuple[Mapping[int, SigningKey] | None, TrustStore | None]:
    """Active mode: the clients' signing keys and the store of their verify keys."""
    if config.mode is not Mode.ACTIVE:
        if identities is not None or trust_store is not None:
            raise ConfigError("identities and trust stores are only used in active mode")
        return None, None
    if identities is None:
        identities, generated = generate_identities(config.cohort)
        trust_store = trust_store if trust_store is not None else generated
    elif trust_store is None:
        trust_store = MemoryTrustStore({u: k.verify_key for u, k in identities.items()})
    missing = set(config.cohort) - set(identities)
    if missing:
        raise ConfigError(f"no identity for clients {sorted(missing)[:5]}")
    return identities, trust_store


def _make_clients(config: SessionConfig, get_input: Callable[[int], np.ndarray],
                  identities: Mapping[int, SigningKey] | None, trust_store: TrustStore | None,
                  min_cohort: int | None, progress: Progress | None
                  ) -> dict[int, ClientProtocol]:
    """Honest clients; in active mode each told it trained on ``config.task_hash``."""
    options: dict[str, object] = {"min_cohort": min_cohort}
    if identities is not None:
        options.update(trust_store=trust_store, expected_task_hash=config.task_hash)
    clients = {}
    for i, u in enumerate(config.cohort):
        if progress:
            progress(Round.ADVERTISE_KEYS.label, i, config.n)
        identity = identities[u] if identities is not None else None
        clients[u] = ClientProtocol(config, u, get_input(u), identity=identity,
                                    **options)  # type: ignore[arg-type]
    return clients


class SimOptions(TypedDict, total=False):
    """The keyword options :func:`simulate`, :func:`run_simulation` and
    :func:`secagg.measure.simulate` share, written once so that they cannot drift
    apart (each is described in :func:`simulate`)."""

    threads: int | None
    progress: Progress | None
    identities: Mapping[int, SigningKey] | None
    trust_store: TrustStore | None
    client_min_cohort: int | None
    transcript: TranscriptSink | None
    observers: Sequence[SessionObserver]
    engine: Engine | None


def _check_options(options: Mapping[str, object]) -> None:
    """Refuse an unknown keyword, as a signature that lists its parameters would."""
    unknown = sorted(set(options) - SimOptions.__optional_keys__)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(unknown)}")


def run_simulation(
    config: SessionConfig,
    inputs: Mapping[int, np.ndarray] | Callable[[int], np.ndarray],
    schedule: Schedule | None = None,
    **options: Unpack[SimOptions],
) -> SimulationRun:
    """:func:`simulate`, also returning the result and trust store (for measurements);
    ``observers`` see every message the session moves."""
    _check_options(options)
    progress = options.get("progress")
    drop_rounds(schedule, config.mode, config.cohort)  # refuse a bad schedule before any work
    identities, server_trust = _identities(config, options.get("identities"),
                                           options.get("trust_store"))
    engine = options.get("engine")
    sharded = isinstance(engine, PinnedEngine) and engine.workers > 1
    channel: ClientChannel | None = None
    clients: dict[int, ClientProtocol] = {}
    if sharded:
        assert isinstance(engine, PinnedEngine)
        if callable(inputs) and not isinstance(engine, InlineEngine):
            check_picklable_inputs(inputs)
        # the clients stream their inputs: only the server's memory counts here
        check_session(config, role=Role.SERVER)
        channel = open_shards(engine, config, inputs, identities, server_trust,
                              options.get("client_min_cohort"))
    else:
        get_input = inputs if callable(inputs) else inputs.__getitem__
        clients = _make_clients(config, get_input, identities, server_trust,
                                options.get("client_min_cohort"), progress)
        # every simulated client holds its input and masked vector: refuse before allocating
        check_session(config, role=Role.SIMULATION)
    workers_rss = 0
    try:
        driver, traffic = _run_driver(config, clients, channel, schedule, server_trust,
                                      options)
    finally:
        if isinstance(channel, ShardChannel):
            workers_rss = channel.close()
    session_rss = peak_rss_bytes()
    report = _report(config, driver, traffic, inputs)
    report = replace(report, clients_on="workers" if sharded else "process",
                     session_rss_mb=session_rss / 2**20, workers_rss_mb=workers_rss / 2**20)
    return SimulationRun(report, driver.server.result, server_trust)


def _run_driver(config: SessionConfig, clients: Mapping[int, ClientProtocol],
                channel: ClientChannel | None, schedule: Schedule | None,
                server_trust: TrustStore | None, options: SimOptions
                ) -> tuple[SessionDriver, _Traffic]:
    """The session itself: the server, the driver and its observers; the driver and
    its byte counts."""
    progress = options.get("progress")
    transcript = options.get("transcript")
    warm_up(config.modulus)
    server = ServerProtocol(config, threads=options.get("threads"), trust_store=server_trust,
                            engine=options.get("engine"))
    if transcript is not None:
        transcript.begin(config, server_trust)
    driver = SessionDriver(server, clients, dropouts=schedule, channel=channel)
    traffic = _Traffic(driver, progress)
    driver.observers += [traffic, *options.get("observers", ())]
    if transcript is not None:
        driver.observers.append(TranscriptObserver(transcript))
    driver.run()
    result = server.result
    if transcript is not None:
        if result is not None:
            transcript.publish_result(result.sum, result.included, config.modulus)
        else:
            transcript.publish_abort(server.abort_reason or "no result")
    return driver, traffic


def simulate(
    config: SessionConfig,
    inputs: Mapping[int, np.ndarray] | Callable[[int], np.ndarray],
    schedule: Schedule | None = None,
    **options: Unpack[SimOptions],
) -> SimulationReport:
    """Run one session in-process and check its result.

    ``inputs`` maps client id -> vector in Z_R (or is a function that makes one,
    so n full vectors need not exist at once). ``schedule`` maps each round
    (:class:`~secagg.rounds.Round` or its label) to the clients that stop sending there.

    Active mode: ``identities`` (client id -> signing key) default to fresh
    keys, ``trust_store`` to the store of their verify keys; every client is told
    that it trained on ``config.task_hash``. ``client_min_cohort`` is the
    clients' own minimum cohort (their default applies when None).

    ``engine`` (:mod:`secagg.engine`): workers for the server's unmasking.

    ``transcript``: if given, it records the session's public transcript (every
    message as sent, the config, the identity keys and the published result;
    spec §18.1), for ``secagg audit``.

    The report's floor and memory fields are zero here: :func:`secagg.measure.simulate`
    measures them.
    """
    return run_simulation(config, inputs, schedule, **options).report


#: Elements per step of the plaintext check when inputs can be made by range.
CHECK_CHUNK = 1 << 20


def plaintext_matches(total: np.ndarray, included: Sequence[int],
                      inputs: Mapping[int, np.ndarray] | Callable[[int], np.ndarray],
                      modulus: int) -> bool:
    """Whether ``total`` is the sum mod R of the included clients' inputs.

    Streams: one input at a time, or, for a source that makes ranges
    (:class:`~secagg.simclients.SeededInputs`), one range of every input at a time,
    so the check holds O(CHECK_CHUNK) beside the sum.
    """
    dtype = mask_dtype(modulus)
    ranged = getattr(inputs, "range", None)
    if callable(inputs) and callable(ranged):
        for a in range(0, total.size, CHECK_CHUNK):
            b = min(total.size, a + CHECK_CHUNK)
            expected = np.zeros(b - a, dtype=dtype)
            for u in included:
                add_into(expected, ranged(u, a, b), modulus)
            if not np.array_equal(expected, total[a:b]):
                return False
        return True
    get_input = inputs if callable(inputs) else inputs.__getitem__
    expected = np.zeros(total.size, dtype=dtype)
    for u in included:
        add_into(expected, np.ascontiguousarray(get_input(u)), modulus)
    return bool(np.array_equal(expected, total))


def _report(config: SessionConfig, driver: SessionDriver, traffic: _Traffic,
            inputs: Mapping[int, np.ndarray] | Callable[[int], np.ndarray]
            ) -> SimulationReport:
    server = driver.server
    result = server.result
    R, dim, n = config.modulus, config.dim, config.n
    exact = False
    included: list[int] = []
    if result is not None:
        included = list(result.included)
        exact = plaintext_matches(result.sum, included, inputs, R)
    senders = max(1, len(driver.client_seconds))
    return SimulationReport(
        exact=exact,
        aborted=server.state is ServerState.ABORTED,
        abort_reason=server.abort_reason,
        clients=n,
        dim=dim,
        graph=config.graph.value,
        threshold=config.threshold,
        degree=config.degree,
        modulus_bits=(R - 1).bit_length(),
        included=len(included),
        included_ids=included,
        dropped_ids=sorted(set(config.cohort) - set(included)),
        server_seconds=driver.server_seconds,
        client_seconds_mean=sum(driver.client_seconds.values()) / senders,
        floor_seconds=0.0,
        server_to_floor=None,
        bytes_up_per_client=sum(traffic.up.values()) / n,
        bytes_down_per_client=sum(traffic.down.values()) / n,
        bytes_up_per_round={k: v / n for k, v in traffic.up.items()},
        bytes_down_per_round={k: v / n for k, v in traffic.down.items()},
        peak_server_mb=0.0,
        threads=server.threads,
        client_refusals=dict(driver.refusals),
        mode=config.mode.value,
        workers=server.engine.workers if server.engine is not None else 1,
        server_work={} if result is None else result.work.as_dict(),
        sum=None if result is None else result.sum,
    )


__all__ = [
    "Schedule",
    "SimOptions",
    "SimulationReport",
    "SimulationRun",
    "plaintext_matches",
    "random_schedule",
    "run_simulation",
    "simulate",
]

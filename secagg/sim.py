"""In-process driver: one session, n clients, a dropout schedule, and measurements.

The simulator only moves messages: every message is encoded to its canonical
bytes and decoded again on the other side (exactly what a transport does), so
byte counts are real and the codec is exercised. All protocol decisions are
made by :class:`~secagg.client.ClientProtocol` and
:class:`~secagg.server.ServerProtocol`.

A client scheduled to drop at a round does not send that round's message
(and never speaks again). The result is checked against the plaintext sum of
the included clients' inputs.

Active mode (spec §15) is simulated with freshly generated identities (or the
caller's) and one more round, ConsistencyCheck, with its own drop point.
"""

from __future__ import annotations

import enum
import json
import time
import tracemalloc
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from secagg.client import ClientProtocol
from secagg.config import Mode, SessionConfig
from secagg.crypto.prg import mask_dtype
from secagg.crypto.signatures import SigningKey
from secagg.errors import ConfigError, ProtocolError
from secagg.floor import measure_floor
from secagg.identity import MemoryTrustStore, TrustStore, generate_identities
from secagg.kernels.arith import add_into, sub_into
from secagg.messages import Abort, Message, decode
from secagg.server import ServerProtocol, ServerState
from secagg.transcript import ROUND_NUMBERS, TranscriptRecorder


class DropPoint(enum.Enum):
    """The round at which a client stops sending (it sends nothing for that round on).

    ``CONSISTENCY`` is the ConsistencyCheck round of active mode: the client sent
    its masked input but not its signature. Semi-honest mode has no such round,
    so there a client dropping at ``CONSISTENCY`` simply stops at the next round
    that exists, exactly like ``UNMASK``.
    """

    ADVERTISE = "advertise"
    SHARE_KEYS = "share-keys"
    MASKED_INPUT = "masked-input"
    UNMASK = "unmask"
    CONSISTENCY = "consistency"


#: The rounds of a semi-honest session, in order.
ROUND_ORDER = (DropPoint.ADVERTISE, DropPoint.SHARE_KEYS, DropPoint.MASKED_INPUT,
               DropPoint.UNMASK)
#: The rounds of an active-mode session, in order.
ACTIVE_ROUND_ORDER = (DropPoint.ADVERTISE, DropPoint.SHARE_KEYS, DropPoint.MASKED_INPUT,
                      DropPoint.CONSISTENCY, DropPoint.UNMASK)


def round_order(mode: Mode) -> tuple[DropPoint, ...]:
    """The rounds a session of ``mode`` runs, each named by the drop point before it."""
    return ACTIVE_ROUND_ORDER if Mode(mode) is Mode.ACTIVE else ROUND_ORDER


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
    #: the aggregate itself (sum mod R over ``included_ids``); not part of the JSON
    sum: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("sum")
        data["client_refusals"] = {str(k): v for k, v in self.client_refusals.items()}
        return json.dumps(data, sort_keys=True)


def random_schedule(cohort: Iterable[int], rate: float, at: DropPoint | str,
                    rng: np.random.Generator) -> dict[DropPoint, set[int]]:
    """Drop ``round(rate * n)`` clients chosen at random, all at round ``at``."""
    ids = sorted(cohort)
    if not 0.0 <= rate <= 1.0:
        raise ConfigError("dropout rate must be in [0, 1]")
    k = round(rate * len(ids))
    chosen = set(rng.choice(ids, size=k, replace=False).tolist()) if k else set()
    return {DropPoint(at): chosen}


class _Meter:
    """Server compute time: only the time spent inside server calls (decode included)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, fn: Callable[[], object]) -> object:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.seconds += time.perf_counter() - start


def replay_peak_memory(config: SessionConfig, transcript: list[list[bytes]],
                       threads: int | None, *, trust_store: TrustStore | None = None) -> int:
    """Peak bytes a fresh server allocates while it processes a recorded session.

    The timed run does not trace memory (tracemalloc slows every allocation);
    the server is deterministic in its inputs, so replaying the same client
    messages into a new server under tracemalloc measures exactly its memory:
    the transcript itself was allocated before tracing started and is not counted.
    """
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        server = ServerProtocol(config, threads=threads, trust_store=trust_store)
        for batch in transcript:
            for data in batch:
                server.receive(decode(data))  # type: ignore[arg-type]
            server.close_round()
            if server.state in (ServerState.ABORTED, ServerState.DONE):
                break
        _, peak = tracemalloc.get_traced_memory()
        return max(0, peak - base)
    finally:
        if not was_tracing:
            tracemalloc.stop()


def simulate(
    config: SessionConfig,
    inputs: Mapping[int, np.ndarray] | Callable[[int], np.ndarray],
    schedule: Mapping[DropPoint, Iterable[int]] | None = None,
    *,
    threads: int | None = None,
    measure_memory: bool = True,
    measure_floor_time: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
    identities: Mapping[int, SigningKey] | None = None,
    trust_store: TrustStore | None = None,
    client_min_cohort: int | None = None,
    transcript: TranscriptRecorder | None = None,
) -> SimulationReport:
    """Run one session in-process and check its result.

    ``inputs`` maps client id -> vector in Z_R (or is a function that makes one,
    so n full vectors need not exist at once). ``schedule`` maps each drop point
    to the clients that stop sending there.

    Active mode: ``identities`` (client id -> signing key) default to fresh
    keys, ``trust_store`` to the store of their verify keys; every client is told
    that it trained on ``config.task_hash``. ``client_min_cohort`` is the
    clients' own minimum cohort (their default applies when None).

    ``transcript``: if given, it records the session's public transcript (every
    message as sent, the config, the identity keys and the published result;
    spec §18.1), for ``secagg audit``.
    """
    schedule = {DropPoint(k): set(v) for k, v in (schedule or {}).items()}
    unknown = set().union(*schedule.values()) - set(config.cohort) if schedule else set()
    if unknown:
        raise ConfigError("dropout schedule names clients outside the cohort")
    get_input = inputs if callable(inputs) else inputs.__getitem__
    active = config.mode is Mode.ACTIVE
    order = round_order(config.mode)
    if not active and DropPoint.CONSISTENCY in schedule:
        # no consistency round: those clients stop at the next round, unmasking
        schedule.setdefault(DropPoint.UNMASK, set()).update(schedule.pop(DropPoint.CONSISTENCY))
    drop_at: dict[int, DropPoint] = {}
    for point in order:  # earliest drop point wins
        for u in schedule.get(point, ()):
            drop_at.setdefault(u, point)
    client_options: dict[str, object] = {"min_cohort": client_min_cohort}
    server_trust: TrustStore | None = None
    if active:
        if identities is None:
            identities, generated = generate_identities(config.cohort)
            trust_store = trust_store if trust_store is not None else generated
        elif trust_store is None:
            trust_store = MemoryTrustStore({u: k.verify_key for u, k in identities.items()})
        missing = set(config.cohort) - set(identities)
        if missing:
            raise ConfigError(f"no identity for clients {sorted(missing)[:5]}")
        server_trust = trust_store
        client_options.update(trust_store=trust_store, expected_task_hash=config.task_hash)
    elif identities is not None or trust_store is not None:
        raise ConfigError("identities and trust stores are only used in active mode")

    _warm_up_kernels(config.modulus)
    server = ServerProtocol(config, threads=threads, trust_store=server_trust)
    if transcript is not None:
        transcript.begin(config, server_trust)
    meter = _Meter()
    client_time: dict[int, float] = {}
    up = {p.value: 0 for p in order}
    down = {p.value: 0 for p in order}
    refusals: dict[int, str] = {}
    clients: dict[int, ClientProtocol] = {}
    # client messages, replayed into a fresh server to measure its memory
    replay: list[list[bytes]] | None = [] if measure_memory else None
    # Round 0: AdvertiseKeys
    pending: dict[int, Message] = {}
    for i, u in enumerate(config.cohort):
        if progress:
            progress("advertise", i, config.n)
        identity = identities[u] if active and identities is not None else None
        client = ClientProtocol(config, u, get_input(u), identity=identity,
                                **client_options)  # type: ignore[arg-type]
        clients[u] = client
        if drop_at.get(u) is DropPoint.ADVERTISE:
            continue
        t0 = time.perf_counter()
        pending[u] = client.start()
        client_time[u] = time.perf_counter() - t0
    outgoing = _deliver_to_server(server, pending, meter, up, DropPoint.ADVERTISE, replay,
                                  recorder=transcript)

    for point in order[1:]:
        if server.state in (ServerState.ABORTED, ServerState.DONE):
            break
        pending = {}
        for i, (u, msg) in enumerate(sorted(outgoing.items())):
            if progress:
                progress(point.value, i, len(outgoing))
            data = msg.encode()
            down[point.value] += len(data)
            client = clients[u]
            if _has_dropped(drop_at.get(u), point, order) or drop_at.get(u) is point:
                continue
            t0 = time.perf_counter()
            try:
                reply = client.handle(decode(data))  # type: ignore[arg-type]
            except ProtocolError as exc:
                refusals[u] = str(exc)
                reply = None
            client_time[u] = client_time.get(u, 0.0) + time.perf_counter() - t0
            if reply is None:
                continue
            pending[u] = reply
        outgoing = _deliver_to_server(server, pending, meter, up, point, replay,
                                      recorder=transcript)
    # Final aborts (if any) reach the clients still listening.
    for u, msg in outgoing.items():
        if isinstance(msg, Abort) and not _has_dropped(drop_at.get(u), DropPoint.UNMASK, order):
            clients[u].handle(msg)
    peak = (replay_peak_memory(config, replay, threads, trust_store=server_trust)
            if replay is not None else 0)

    dim, R = config.dim, config.modulus
    result = server.result
    if transcript is not None:
        if result is not None:
            transcript.publish_result(result.sum, result.included, R)
        else:
            transcript.publish_abort(server.abort_reason or "no result")
    exact = False
    floor = 0.0
    included: list[int] = []
    if result is not None:
        included = list(result.included)
        expected = np.zeros(dim, dtype=mask_dtype(R))
        for u in included:
            add_into(expected, np.ascontiguousarray(get_input(u)), R)
        exact = bool(np.array_equal(expected, result.sum))
        if measure_floor_time:
            floor = measure_floor(result.masks_expanded, len(included), dim, mask_dtype(R), R,
                                  server.threads)
    senders = max(1, len(client_time))
    n = config.n
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
        server_seconds=meter.seconds,
        client_seconds_mean=sum(client_time.values()) / senders,
        floor_seconds=floor,
        server_to_floor=(meter.seconds / floor) if floor > 0 else None,
        bytes_up_per_client=sum(up.values()) / n,
        bytes_down_per_client=sum(down.values()) / n,
        bytes_up_per_round={k: v / n for k, v in up.items()},
        bytes_down_per_round={k: v / n for k, v in down.items()},
        peak_server_mb=peak / 2**20,
        threads=server.threads,
        client_refusals=refusals,
        mode=config.mode.value,
        sum=None if result is None else result.sum,
    )


def _warm_up_kernels(modulus: int) -> None:
    """Load the numba kernels once so compile/cache-load time is not billed to client 1."""
    from secagg.packing import bit_width, pack, unpack

    dtype = mask_dtype(modulus)
    a = np.zeros(8, dtype=dtype)
    add_into(a, a.copy(), modulus)
    sub_into(a, a.copy(), modulus)
    bits = bit_width(modulus)
    unpack(pack(a, bits), bits, a.size, dtype)


def _has_dropped(point: DropPoint | None, now: DropPoint,
                 order: tuple[DropPoint, ...] = ROUND_ORDER) -> bool:
    """True if a client scheduled to drop at ``point`` is already gone when ``now`` starts."""
    return point is not None and order.index(point) < order.index(now)


def _deliver_to_server(server: ServerProtocol, pending: Mapping[int, Message], meter: _Meter,
                       up: dict[str, int], point: DropPoint,
                       transcript: list[list[bytes]] | None, *,
                       recorder: TranscriptRecorder | None = None) -> dict[int, Message]:
    batch: list[bytes] = []
    if transcript is not None:
        transcript.append(batch)
    round_number = ROUND_NUMBERS[point.value]
    for u, msg in sorted(pending.items()):
        data = msg.encode()
        up[point.value] += len(data)
        if transcript is not None:
            batch.append(data)
        if recorder is not None:
            recorder.up(round_number, u, data)

        def receive(data: bytes = data) -> None:
            server.receive(decode(data))  # type: ignore[arg-type]

        meter(receive)
    out = meter(server.close_round)
    assert isinstance(out, dict)
    if recorder is not None:
        for u, reply in sorted(out.items()):
            recorder.down(round_number, u, reply.encode())
    return out

"""Measurements around a simulated session: the hardware floor and the server's peak memory.

Why separate: the session driver (:mod:`secagg.session`) and the simulator
(:mod:`secagg.sim`) only move messages and count bytes; measuring the floor
(:mod:`secagg.floor`) and replaying the session under ``tracemalloc`` cost more
than the session and are wanted only by ``secagg simulate`` and the benchmarks.
They compose with the driver: an observer records the client messages the
server received, and a fresh server is fed them again under ``tracemalloc``.
"""

from __future__ import annotations

import dataclasses
import tracemalloc
from collections.abc import Callable, Mapping
from typing import Unpack

import numpy as np

from secagg.config import SessionConfig
from secagg.crypto.prg import mask_dtype
from secagg.engine import Engine
from secagg.floor import measure_floor, measure_full_floor
from secagg.identity import TrustStore
from secagg.messages import ServerMessage
from secagg.packing import packed_size
from secagg.rounds import Round, decode_client
from secagg.server import ServerProtocol, ServerState, UnmaskedSum
from secagg.session import SessionObserver
from secagg.sim import Schedule, SimOptions, SimulationReport, run_simulation


class UploadRecorder(SessionObserver):
    """The client messages the server received, one batch per closed round (for replay)."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self._batch: list[bytes] = []

    def on_up(self, round: Round, client_id: int, data: bytes) -> None:
        self._batch.append(data)

    def on_round_closed(self, round: Round, outgoing: Mapping[int, ServerMessage]) -> None:
        self.batches.append(self._batch)
        self._batch = []


def replay_peak_memory(config: SessionConfig, batches: list[list[bytes]],
                       threads: int | None, *, trust_store: TrustStore | None = None,
                       engine: Engine | None = None) -> int:
    """Peak bytes a fresh server allocates while it processes a recorded session.

    The timed run does not trace memory (tracemalloc slows every allocation);
    the server is deterministic in its inputs, so replaying the same client
    messages into a new server under tracemalloc measures exactly its memory:
    the recorded messages were allocated before tracing started and are not counted.
    """
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        server = ServerProtocol(config, threads=threads, trust_store=trust_store, engine=engine)
        for batch in batches:
            for data in batch:
                server.receive(decode_client(data))
            server.close_round()
            if server.state in (ServerState.ABORTED, ServerState.DONE):
                break
        _, peak = tracemalloc.get_traced_memory()
        return max(0, peak - base)
    finally:
        if not was_tracing:
            tracemalloc.stop()


#: The replay holds every message the server received; above this many bytes of them
#: (estimated: per client its masked vector and k shared-key ciphertexts) it is skipped by
#: default and ``peak_server_mb`` stays 0 (the report's resident-memory fields measure
#: such sessions).
REPLAY_LIMIT = 256 << 20
_SHARE_UPLOAD = 128  # bytes a client uploads per neighbour (ShareKeys, UnmaskResponse)


def replay_fits(config: SessionConfig) -> bool:
    """Whether recording the session for the memory replay stays under REPLAY_LIMIT."""
    masked = packed_size(config.dim, max(1, (config.modulus - 1).bit_length()))
    return config.n * (masked + _SHARE_UPLOAD * config.degree) <= REPLAY_LIMIT


def simulate(
    config: SessionConfig,
    inputs: Mapping[int, np.ndarray] | Callable[[int], np.ndarray],
    schedule: Schedule | None = None,
    *,
    measure_memory: bool | None = None,
    measure_floor_time: bool = True,
    **options: Unpack[SimOptions],
) -> SimulationReport:
    """:func:`secagg.sim.simulate`, then the measurements its report leaves at zero.

    ``measure_memory``: replay the session into a fresh server under tracemalloc
    (``peak_server_mb``); None (default) replays when :func:`replay_fits`.
    ``measure_floor_time``: time the hardware floor of the same work
    (``floor_seconds``, ``server_to_floor``) and the full floor of every primitive
    the server ran (``full_floor_seconds``, ``server_to_full_floor``).
    ``engine``: workers for the server's unmasking (the memory replay uses them too,
    so its peak is the coordinator's).
    """
    if measure_memory is None:
        measure_memory = replay_fits(config)
    uploads = UploadRecorder() if measure_memory else None
    threads, engine = options.get("threads"), options.get("engine")
    observers = [*options.get("observers", ()), *([uploads] if uploads else [])]
    watched: SimOptions = {**options, "observers": observers}
    run = run_simulation(config, inputs, schedule, **watched)
    report = run.report
    peak = (replay_peak_memory(config, uploads.batches, threads, trust_store=run.trust_store,
                               engine=engine)
            if uploads is not None else 0)
    # the cores the server's unmasking used: its worker processes, or its threads
    parallelism = report.workers if report.workers > 1 else report.threads
    floor = 0.0
    if run.result is not None and measure_floor_time:
        R = config.modulus
        floor = measure_floor(run.result.masks_expanded, len(run.result.included), config.dim,
                              mask_dtype(R), R, parallelism)
    report = dataclasses.replace(
        report, floor_seconds=floor, peak_server_mb=peak / 2**20,
        server_to_floor=(report.server_seconds / floor) if floor > 0 else None)
    if run.result is None or not measure_floor_time:
        return report
    return _with_full_floor(report, config, run.result, parallelism)


def _with_full_floor(report: SimulationReport, config: SessionConfig, result: UnmaskedSum,
                     parallelism: int) -> SimulationReport:
    """The report with the full floor of what its server did, over the same cores."""
    full = measure_full_floor(result.work, keystream_floor=report.floor_seconds, n=config.n,
                              parallelism=parallelism, spread_ids=config.degree < config.n - 1)
    return dataclasses.replace(
        report, full_floor_seconds=full.seconds, full_floor_parts=full.parts,
        server_to_full_floor=(report.server_seconds / full.seconds) if full.seconds > 0
        else None)

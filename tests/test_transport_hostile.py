"""Transport under hostile clients (spec §17.5): real server and client processes on
127.0.0.1 alongside callers that try to exhaust the server's RPC threads, its upload slots
and its buffers. Every wait is bounded; the whole file aims at well under a minute."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from secagg.config import SessionConfig
from secagg.transport import certs, framing
from secagg.transport import secagg_pb2 as pb
from secagg.transport import secagg_pb2_grpc as pb_grpc
from secagg.transport.local import LocalCluster, Proc, expected_sum
from secagg.transport.server import ServerSettings, TransportServer

pytestmark = pytest.mark.slow

SEED = 5
ROUND_TIMEOUT = 4.0
DIM = 100_000
HONEST = range(1, 11)
TRICKLER = 11  # a cohort member: silent in rounds 0-1, then trickles at masked-input
OUTSIDER = 99  # holds a valid certificate, but is never in the cohort
STALLED_CALLS = 40


def _blocked(stop: threading.Event) -> Iterator[pb.ClientChunk]:
    """A request stream that never sends a chunk (until the test ends)."""
    stop.wait(120)
    return
    yield  # pragma: no cover - makes this a generator


class Outsider:
    """Keeps ``STALLED_CALLS`` Send calls open that never send a chunk, re-opening each
    one the server ends; every end is recorded with its status and how long it took."""

    def __init__(self, target: str, cert_dir: Path) -> None:
        self.channel = grpc.secure_channel(target, certs.channel_credentials(cert_dir, OUTSIDER))
        self.stub = pb_grpc.AggregatorStub(self.channel)
        self.stop = threading.Event()
        self.ends: list[tuple[grpc.StatusCode, float]] = []
        #: cleared once the session has ended: calls cut by the server's exit are not refusals
        self.recording = True
        self._lock = threading.Lock()

    def start(self) -> None:
        for _ in range(STALLED_CALLS):
            self._open()

    def _open(self) -> None:
        if self.stop.is_set():
            return
        started = time.monotonic()
        try:
            future = self.stub.Send.future(_blocked(self.stop), timeout=60)
        except ValueError:  # the channel closed meanwhile: the test is over
            return
        future.add_done_callback(lambda f: self._ended(f, started))

    def _ended(self, future: Any, started: float) -> None:
        code = future.code()
        with self._lock:
            if self.recording:
                self.ends.append((code, time.monotonic() - started))
        if not self.stop.is_set():
            threading.Timer(0.5, self._open).start()

    def close(self) -> None:
        self.stop.set()
        self.channel.close()


class Trickler:
    """Cohort member ``TRICKLER``: joins, answers no round, sends an oversized frame in
    every round, and at masked-input opens its two allowed Sends, trickling one byte
    every 2 s (a valid length, so only the slot policy and rate limit can stop it)."""

    def __init__(self, target: str, cert_dir: Path, server: Proc) -> None:
        self.channel = grpc.secure_channel(target, certs.channel_credentials(cert_dir, TRICKLER))
        self.stub = pb_grpc.AggregatorStub(self.channel)
        self.server = server
        self.stop = threading.Event()
        self.codes: dict[str, grpc.StatusCode] = {}
        self.config: SessionConfig | None = None
        self.opened = threading.Event()

    def join(self) -> None:
        call = self.stub.Join(pb.JoinRequest(client_id=TRICKLER, version=1), timeout=120,
                              wait_for_ready=True)
        threading.Thread(target=lambda: (self.stop.wait(120), call.cancel()),
                         daemon=True).start()
        try:
            for env in call:
                if env.WhichOneof("body") == "open":
                    self.config = SessionConfig.decode(env.open.config)
                    self.opened.set()
        except grpc.RpcError:
            pass

    def _send(self, chunks: Iterator[pb.ClientChunk]) -> grpc.StatusCode:
        try:
            self.stub.Send(chunks, timeout=60)
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    def _trickle(self, sid: bytes, rnd: int, total: int) -> Iterator[pb.ClientChunk]:
        yield pb.ClientChunk(session_id=sid, round=rnd, client_id=TRICKLER, total_length=total,
                             data=b"S")
        while not self.stop.wait(2.0):
            yield pb.ClientChunk(data=b"\0")

    def attack(self) -> None:
        trickles: list[threading.Thread] = []
        for rnd in range(4):  # advertise, share-keys, masked-input, unmask
            self.server.wait_event(lambda e, r=rnd: e.get("event") == "round"
                                   and e.get("round") == r, 90)
            assert self.opened.wait(30) and self.config is not None
            sid = self.config.session_id
            if rnd == 2:
                total = framing.masked_input_length(self.config)
                for k in range(2):
                    t = threading.Thread(target=self._record, daemon=True,
                                         args=(f"trickle-{k}", self._trickle(sid, rnd, total)))
                    t.start()
                    trickles.append(t)
            huge = framing.masked_input_length(self.config) + 4096  # over every round's limit
            self.codes[f"oversized-{rnd}"] = self._send(iter([pb.ClientChunk(
                session_id=sid, round=rnd, client_id=TRICKLER, total_length=huge,
                data=bytes(1024))]))

    def _record(self, key: str, chunks: Iterator[pb.ClientChunk]) -> None:
        self.codes[key] = self._send(chunks)

    def close(self) -> None:
        self.stop.set()
        self.channel.close()


def test_honest_cohort_finishes_beside_stalled_calls_trickler_and_oversized_frames(
        tmp_path: Path) -> None:
    """40 never-sending calls from a certificate outside the cohort, a cohort member
    trickling two masked-input uploads and oversized frames in every round: the ten honest
    clients' sum is exact and the session ends within its round deadlines."""
    ids = [*HONEST, TRICKLER, OUTSIDER]
    with LocalCluster(ids, tmp=tmp_path) as cluster:
        server = cluster.start_server(
            "--clients", len(HONEST) + 1, "--dim", DIM, "--round-timeout", ROUND_TIMEOUT,
            "--join-timeout", 60, "--min-cohort", 5, "--out", tmp_path / "out.npz")
        target = f"127.0.0.1:{cluster.port}"
        outsider = Outsider(target, cluster.certs)
        outsider.start()  # before anyone joins: the calls compete with every Join
        trickler = Trickler(target, cluster.certs, server)
        workers = [threading.Thread(target=trickler.join, daemon=True),
                   threading.Thread(target=trickler.attack, daemon=True)]
        for w in workers:
            w.start()
        try:
            for u in HONEST:
                cluster.start_client(u, "--seed", SEED, "--connect-timeout", 10,
                                     "--sessions", 1)
            deadline = time.monotonic() + 120  # (events are polled: other threads consume
            while time.monotonic() < deadline and server.popen.poll() is None and not any(
                    e.get("event") == "session-end" for e in list(server.events)):  # the queue)
                time.sleep(0.05)
            with outsider._lock:
                outsider.recording = False
            code = server.wait(120)
        finally:
            trickler.close()
            outsider.close()
        for w in workers:
            w.join(timeout=10)
        assert code == 0, server._stderr_tail()
        (end,) = [e for e in server.events if e.get("event") == "session-end"]
        assert not end["aborted"], end["abort_reason"]
        assert end["included_ids"] == list(HONEST)
        with np.load(tmp_path / "out.npz") as data:
            got = data["sum"]
        assert np.array_equal(got, expected_sum(SEED, HONEST, end["round_index"], DIM, 1 << 32))
        # round 0 waits its deadline for the silent trickler; every other round is quick
        assert end["wall_seconds"] < 4 * ROUND_TIMEOUT, end["wall_seconds"]
        for u in HONEST:  # 0, or 1 when a starved client missed the SessionEnd before the
            # server process exited (its sum is in the result all the same)
            assert cluster.clients[u].wait(30) in (0, 1)
    # the outsider never got a call through, and every call was refused when it was
    # identified (no session yet, or not in the cohort): never by the first-chunk deadline
    # (CANCELLED), the per-certificate cap or a full server (RESOURCE_EXHAUSTED)
    refused_on_sight = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION}
    codes_seen = {c for c, _ in outsider.ends}
    assert outsider.ends and codes_seen <= refused_on_sight, codes_seen
    assert any(c is grpc.StatusCode.PERMISSION_DENIED for c, _ in outsider.ends)
    codes = trickler.codes
    # round 0 stays open for the silent trickler; a later round may close before the
    # oversized frame arrives (then it is refused as stale), but none is ever accepted
    assert codes.get("oversized-0") is grpc.StatusCode.RESOURCE_EXHAUSTED, codes
    assert {codes.get(f"oversized-{r}") for r in range(1, 4)} <= {
        grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION}, codes
    assert codes.get("trickle-0") is not grpc.StatusCode.OK
    assert codes.get("trickle-1") is not grpc.StatusCode.OK


# -- in-process checks of single rules (plaintext, library API) -----------------------------
def _never(stop: threading.Event) -> Iterator[pb.ClientChunk]:
    stop.wait(60)
    return
    yield  # pragma: no cover


def test_a_call_without_a_first_chunk_is_cut_at_its_deadline() -> None:
    """A Send whose first chunk never comes is cancelled after ``first_chunk_timeout``
    (before the fix it held a server thread until its own deadline)."""
    settings = ServerSettings(clients=3, dim=4, sessions=1, join_timeout=0.1,
                              first_chunk_timeout=0.5)
    server = TransportServer(settings, credentials=None)
    port = server.start()
    stop = threading.Event()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.AggregatorStub(channel).Send(_never(stop), timeout=20)
        assert time.monotonic() - start < 5
        assert info.value.code() is grpc.StatusCode.CANCELLED
    finally:
        stop.set()
        channel.close()
        server.shutdown()


def test_calls_from_outside_the_cohort_are_refused_before_any_read(tmp_path: Path) -> None:
    """40 Send calls that never send a chunk, from a valid certificate that is in no
    session: each is refused at once, from its certificate alone (before the fix each held
    one of the server's RPC threads until its own deadline)."""
    bundle = certs.init_dev_ca(tmp_path / "certs", [1, 2, 3, OUTSIDER], days=1)
    settings = ServerSettings(clients=3, dim=4, sessions=1, join_timeout=30.0)
    server = TransportServer(settings, credentials=certs.server_credentials(bundle.directory))
    port = server.start()
    stop = threading.Event()
    channel = grpc.secure_channel(f"127.0.0.1:{port}",
                                  certs.channel_credentials(bundle.directory, OUTSIDER))
    stub = pb_grpc.AggregatorStub(channel)
    try:
        start = time.monotonic()
        futures = [stub.Send.future(_never(stop), timeout=4) for _ in range(STALLED_CALLS)]
        codes = [f.exception().code() for f in futures]  # type: ignore[union-attr]
        assert time.monotonic() - start < 3
        assert set(codes) <= {grpc.StatusCode.FAILED_PRECONDITION,
                              grpc.StatusCode.PERMISSION_DENIED}, set(codes)
    finally:
        stop.set()
        channel.close()
        server.request_stop()
        server.shutdown()

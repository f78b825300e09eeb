"""The gRPC transport with real processes on 127.0.0.1: dropouts killed with SIGKILL at
every round, authentication refusals, a misbehaving client, a server killed mid-session,
and 'secagg simulate --transport grpc'. Every wait is bounded; round deadlines are short."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from secagg.client import ClientProtocol
from secagg.config import Mode, SessionConfig, SessionSettings
from secagg.errors import ConfigError
from secagg.messages import AdvertiseKeys
from secagg.rounds import Round, decode_server
from secagg.transport import certs, framing
from secagg.transport import secagg_pb2 as pb
from secagg.transport import secagg_pb2_grpc as pb_grpc
from secagg.transport.client import channel_options, demo_input
from secagg.transport.local import LocalCluster, expected_sum
from secagg.transport.server import ServerSettings, SessionOutcome, TransportServer
from tests.thread_clients import run_thread_clients

pytestmark = pytest.mark.slow

ROUND_TIMEOUT = 3.0
SEED = 11


def _sums(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _session_ends(proc: Any) -> list[dict[str, Any]]:
    return [e for e in proc.events if e.get("event") == "session-end"]


# -- dropouts ------------------------------------------------------------------------------
def test_twenty_clients_killed_at_each_of_the_four_rounds(tmp_path: Path) -> None:
    """Four back-to-back sessions; in session s two clients SIGKILL themselves at round s.

    Every session's sum is exact over exactly the clients the protocol includes,
    and each session finishes within twice the round deadline.
    """
    n = 20
    rounds = [Round.ADVERTISE_KEYS, Round.SHARE_KEYS, Round.MASKED_INPUT, Round.UNMASKING]
    victims = {s: (2 * s + 1, 2 * s + 2) for s in range(4)}
    with LocalCluster(range(1, n + 1), tmp=tmp_path) as cluster:
        server = cluster.start_server(
            "--clients", n, "--dim", 257, "--round-timeout", ROUND_TIMEOUT, "--sessions", 4,
            "--join-timeout", 120, "--out", tmp_path / "out.npz")
        for u in range(1, n + 1):
            die = [s for s, ids in victims.items() if u in ids]
            cluster.start_client(u, "--seed", SEED, "--connect-timeout", 20,
                                 die_at=rounds[die[0]] if die else None,
                                 die_session=die[0] if die else 0)
        assert server.wait(240) == 0, server._stderr_tail()
        ends = _session_ends(server)
        assert len(ends) == 4
        sums = _sums(tmp_path / "out.npz")
        for s, end in enumerate(ends):
            gone_before = {v for k in range(s) for v in victims[k]}
            cohort = set(range(1, n + 1)) - gone_before
            included = cohort - set(victims[s]) if rounds[s] is not Round.UNMASKING else cohort
            assert not end["aborted"], end["abort_reason"]
            assert end["clients"] == len(cohort)
            assert set(end["included_ids"]) == included, (s, end["included_ids"])
            want = expected_sum(SEED, sorted(included), end["round_index"], 257, 1 << 32)
            assert np.array_equal(sums[f"sum_{s}"], want), f"session {s}: wrong sum"
            assert end["wall_seconds"] < 2 * ROUND_TIMEOUT, (s, end["wall_seconds"])
        for victim in (v for ids in victims.values() for v in ids):
            assert cluster.clients[victim].wait(10) == -signal.SIGKILL
        survivors = set(range(1, n + 1)) - {v for ids in victims.values() for v in ids}
        for u in survivors:
            # a survivor leaves on the server's goodbye; past --connect-timeout (20 s) a
            # client that missed it would report the server unreachable (exit 1): wait
            # beyond that, so what the test sees is the client's own verdict
            client = cluster.clients[u]
            code = client.wait(45)
            assert code == 0, (u, code, client.events[-4:], client._stderr_tail())
            statuses = [e["status"] for e in _session_ends(cluster.clients[u])]
            assert statuses == ["done"] * 4, (u, statuses)


# -- authentication ---------------------------------------------------------------------------
def _join_error(target: str, creds: grpc.ChannelCredentials | None, claimed: int = 0
                ) -> grpc.StatusCode:
    channel = (grpc.insecure_channel(target) if creds is None
               else grpc.secure_channel(target, creds))
    try:
        call = pb_grpc.AggregatorStub(channel).Join(pb.JoinRequest(client_id=claimed, version=1),
                                                    timeout=5)
        next(iter(call))
    except grpc.RpcError as exc:
        return exc.code()
    finally:
        channel.close()
    return grpc.StatusCode.OK


def test_unauthenticated_and_impostor_clients_are_refused(tmp_path: Path) -> None:
    with LocalCluster([1, 2, 3], tmp=tmp_path) as cluster:
        cluster.start_server("--clients", 3, "--dim", 8, "--join-timeout", 60)
        target = f"127.0.0.1:{cluster.port}"
        ca = certs.ca_file(cluster.certs).read_bytes()
        cert1, key1 = (p.read_bytes() for p in certs.client_files(cluster.certs, 1))
        # no client certificate
        no_cert = grpc.ssl_channel_credentials(root_certificates=ca)
        assert _join_error(target, no_cert) != grpc.StatusCode.OK
        # a client certificate from another CA (same name, same id)
        other = certs.init_dev_ca(tmp_path / "other", [1])
        foreign = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=other.clients[1][1].read_bytes(),
            certificate_chain=other.clients[1][0].read_bytes())
        assert _join_error(target, foreign) != grpc.StatusCode.OK
        # a valid certificate for client 1 claiming to be client 2
        own = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key1,
                                           certificate_chain=cert1)
        assert _join_error(target, own, claimed=2) == grpc.StatusCode.PERMISSION_DENIED
        # plaintext to the TLS port
        assert _join_error(target, None, claimed=1) != grpc.StatusCode.OK
        # a server certificate presented as a client certificate carries no client id
        s_cert, s_key = (p.read_bytes() for p in certs.server_files(cluster.certs))
        as_server = grpc.ssl_channel_credentials(root_certificates=ca, private_key=s_key,
                                                 certificate_chain=s_cert)
        assert _join_error(target, as_server) in (grpc.StatusCode.UNAUTHENTICATED,
                                                  grpc.StatusCode.UNAVAILABLE)
        # the client CLI gives up on a server it cannot authenticate to, within its timeout
        bad = cluster.dir / "bad"
        certs.init_dev_ca(bad, [3])
        proc = subprocess.run(
            [sys.executable, "-m", "secagg.cli", "client", "--server", target, "--id", "3",
             "--certs", str(bad), "--connect-timeout", "2", "--json"],
            capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 1, proc.stderr


# -- a misbehaving client ----------------------------------------------------------------------
class Adversary:
    """Client 10 in this process: plays the protocol honestly, but first tries every
    malformed, oversized, forged, duplicate and stale message on the real server."""

    def __init__(self, target: str, cert_dir: Path, release: threading.Event) -> None:
        self.release = release  # set once the round-0 attacks are done
        creds = certs.channel_credentials(cert_dir, 10)
        options = [o for o in channel_options() if o[0] != "grpc.max_send_message_length"]
        options.append(("grpc.max_send_message_length", 8 << 20))  # to reach gRPC's limit
        self.channel = grpc.secure_channel(target, creds, options=options)
        self.stub = pb_grpc.AggregatorStub(self.channel)
        self.codes: dict[str, grpc.StatusCode] = {}
        self.old: tuple[bytes, bytes] | None = None  # (sid, AdvertiseKeys) of session 0
        self.done: list[str] = []

    def send(self, chunks: list[pb.ClientChunk]) -> grpc.StatusCode:
        try:
            self.stub.Send(iter(chunks), timeout=5)
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    @staticmethod
    def frame(sid: bytes, rnd: int, data: bytes, total: int | None = None
              ) -> list[pb.ClientChunk]:
        out = []
        for offset, piece in framing.split(data):
            if offset == 0:
                out.append(pb.ClientChunk(session_id=sid, round=rnd, client_id=10, data=piece,
                                          total_length=len(data) if total is None else total))
            else:
                out.append(pb.ClientChunk(data=piece))
        return out

    def attack_round0(self, seq: int, sid: bytes, msg: AdvertiseKeys) -> None:
        data = msg.encode()
        c = self.codes
        if seq == 0:
            c["oversized"] = self.send(self.frame(sid, 0, data, total=1 << 30))
            c["grpc-limit"] = self.send([pb.ClientChunk(session_id=sid, round=0, client_id=10,
                                                        total_length=3 << 20,
                                                        data=bytes(3 << 20))])
            c["truncated"] = self.send(self.frame(sid, 0, data, total=len(data) + 100))
            c["malformed"] = self.send(self.frame(sid, 0, b"XX" + data[2:]))
            forged = AdvertiseKeys(3, msg.enc_pk, msg.mask_pk).encode()
            c["forged-sender"] = self.send(self.frame(sid, 0, forged))
            c["wrong-round"] = self.send(self.frame(sid, 5, data))
            c["genuine"] = self.send(self.frame(sid, 0, data))
            c["duplicate"] = self.send(self.frame(sid, 0, data))
            self.old = (sid, data)
            self.release.set()
        else:
            assert self.old is not None
            old_sid, old_data = self.old
            c["replay-old-session"] = self.send(self.frame(old_sid, 0, old_data))
            c["genuine-1"] = self.send(self.frame(sid, 0, data))

    def run(self, sessions: int) -> None:
        call = self.stub.Join(pb.JoinRequest(client_id=10, version=1), timeout=120)
        proto: ClientProtocol | None = None
        sid = b""
        rnd = 0
        parts: framing.Reassembler | None = None
        for env in call:
            kind = env.WhichOneof("body")
            if kind == "open":
                config = SessionConfig.decode(env.open.config)
                sid = config.session_id
                vec = demo_input(SEED, 10, config.round_index, config.dim, config.modulus)
                proto = ClientProtocol(config, 10, vec)
                rnd = 0
                self.attack_round0(env.open.sequence, sid, proto.start())
            elif kind == "chunk" and proto is not None:
                if parts is None:
                    parts = framing.Reassembler(env.chunk.total_length, 1 << 20)
                parts.add(env.chunk.data, env.chunk.offset)
                if not parts.complete:
                    continue
                reply = proto.handle(decode_server(parts.finish()))
                parts = None
                rnd = env.chunk.round
                if reply is not None:
                    self.codes[f"reply-{len(self.done)}-{rnd}"] = self.send(
                        self.frame(sid, rnd, reply.encode()))
            elif kind == "end":
                self.done.append(pb.SessionEnd.Status.Name(env.end.status))
                if len(self.done) == sessions:
                    call.cancel()
                    return
            elif kind == "goodbye":
                return


def _sleeper(target: str, cert_dir: Path, release: threading.Event, cid: int = 11,
             opened: threading.Event | None = None, timeout: float = 120) -> None:
    """Client ``cid`` joins and never answers, holding round 0 of session 0 open until
    ``release``; then it leaves (the server drops it at once, seeing the stream close).
    ``opened`` is set when its stream delivers a SessionOpen (so it is in the cohort)."""
    channel = grpc.secure_channel(target, certs.channel_credentials(cert_dir, cid))
    call = pb_grpc.AggregatorStub(channel).Join(pb.JoinRequest(client_id=cid, version=1),
                                                timeout=timeout, wait_for_ready=True)
    threading.Thread(target=lambda: (release.wait(timeout), call.cancel()), daemon=True).start()
    try:
        for env in call:
            if opened is not None and env.WhichOneof("body") == "open":
                opened.set()
    except grpc.RpcError:
        pass
    finally:
        channel.close()


def test_bad_messages_are_refused_and_everyone_else_finishes(tmp_path: Path) -> None:
    n = 10
    with LocalCluster(range(1, n + 2), tmp=tmp_path) as cluster:
        server = cluster.start_server(
            "--clients", n + 1, "--dim", 300, "--round-timeout", 8, "--sessions", 2,
            "--join-timeout", 120, "--out", tmp_path / "out.npz")
        for u in range(1, n):
            cluster.start_client(u, "--seed", SEED, "--connect-timeout", 20)
        target = f"127.0.0.1:{cluster.port}"
        release = threading.Event()
        adversary = Adversary(target, cluster.certs, release)
        workers = [threading.Thread(target=adversary.run, args=(2,), daemon=True),
                   threading.Thread(target=_sleeper, args=(target, cluster.certs, release),
                                    daemon=True)]
        for w in workers:
            w.start()
        assert server.wait(180) == 0, (server._stderr_tail(), _session_ends(server),
                                       adversary.codes)
        for w in workers:
            w.join(timeout=30)
        adversary.channel.close()
        codes = adversary.codes
        want = {
            "oversized": grpc.StatusCode.RESOURCE_EXHAUSTED,
            "grpc-limit": grpc.StatusCode.RESOURCE_EXHAUSTED,
            "truncated": grpc.StatusCode.INVALID_ARGUMENT,
            "malformed": grpc.StatusCode.INVALID_ARGUMENT,
            "forged-sender": grpc.StatusCode.PERMISSION_DENIED,
            "wrong-round": grpc.StatusCode.FAILED_PRECONDITION,
            "genuine": grpc.StatusCode.OK,
            "duplicate": grpc.StatusCode.ALREADY_EXISTS,
            "replay-old-session": grpc.StatusCode.FAILED_PRECONDITION,
            "genuine-1": grpc.StatusCode.OK,
        }
        assert {k: codes.get(k) for k in want} == want
        assert all(c is grpc.StatusCode.OK for k, c in codes.items() if k.startswith("reply"))
        assert adversary.done == ["DONE", "DONE"]
        sums = _sums(tmp_path / "out.npz")
        for s, end in enumerate(_session_ends(server)):
            assert end["included_ids"] == list(range(1, n + 1))
            want_sum = expected_sum(SEED, range(1, n + 1), end["round_index"], 300, 1 << 32)
            assert np.array_equal(sums[f"sum_{s}"], want_sum)
        assert _session_ends(server)[0]["refusals"]["INVALID_ARGUMENT"] >= 2


# -- server killed mid-session -----------------------------------------------------------------
def test_server_killed_mid_session_then_restarted(tmp_path: Path) -> None:
    n = 6
    task = bytes(range(32))
    with LocalCluster(range(1, n + 2), tmp=tmp_path) as cluster:
        # round 0 deadline far beyond any wait below: only the kill may end session 0
        server = cluster.start_server(
            "--clients", n + 1, "--dim", 64, "--round-timeout", 600, "--min-cohort", 5,
            "--task-hash", task.hex(), "--join-timeout", 600)
        port = cluster.port
        for u in range(1, n + 1):
            cluster.start_client(u, "--seed", SEED, "--connect-timeout", 30)
        # client 7 joins and never answers: round 0 stays open after the honest clients
        # have generated and sent their keys, so the kill is mid-session. It leaves only
        # when released (after the kill), never on a timer of its own.
        release, sleeper_open = threading.Event(), threading.Event()
        sleeper = threading.Thread(target=_sleeper, daemon=True,
                                   args=(f"127.0.0.1:{port}", cluster.certs, release, n + 1,
                                         sleeper_open, 900))
        sleeper.start()
        try:
            opened = server.wait_event(lambda e: e.get("event") == "session-open", 300)
            assert opened["cohort"] == list(range(1, n + 2))
            assert sleeper_open.wait(60)
            for u in range(1, n + 1):  # each honest client's AdvertiseKeys was accepted
                cluster.clients[u].wait_event(
                    lambda e: e.get("event") == "sent" and e.get("round") == 0
                    and e.get("session_id") == opened["session_id"], 120)
            assert server.popen.poll() is None  # session 0 is still in round 0
            server.popen.send_signal(signal.SIGKILL)
            assert server.wait(10) == -signal.SIGKILL
        finally:
            release.set()
        sleeper.join(timeout=10)
        old_sid = opened["session_id"]
        old_config = SessionConfig.create(range(1, n + 2), 64, 1 << 32, task_hash=task,
                                          min_cohort=5)
        assert old_config.session_id.hex() == old_sid

        events: queue.Queue[dict[str, Any]] = queue.Queue()

        def factory(seq: int, cohort: tuple[int, ...]) -> SessionConfig:
            if seq == 0:
                return old_config  # a restarted server trying to resume the old session
            return SessionConfig.create(cohort, 64, 1 << 32, min_cohort=5, round_index=1)

        settings = ServerSettings(clients=n, dim=64, session=SessionSettings(min_cohort=5),
                                  round_timeout=2.0,
                                  join_timeout=60.0, sessions=2)
        restarted = TransportServer(settings, credentials=certs.server_credentials(cluster.certs),
                                    address=f"127.0.0.1:{port}", on_event=events.put,
                                    config_factory=factory)
        deadline = time.monotonic() + 20
        while True:  # the old port can take a moment to become free again
            try:
                restarted.start()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            outcomes = restarted.run()
        finally:
            restarted.shutdown()
        assert outcomes[0].aborted  # nobody resumed the old session
        assert not outcomes[1].aborted and outcomes[1].included_ids == list(range(1, n + 1))
        assert outcomes[1].sum is not None
        want = expected_sum(SEED, range(1, n + 1), 1, 64, 1 << 32)
        assert np.array_equal(outcomes[1].sum, want)
        for u in range(1, n + 1):
            proc = cluster.clients[u]
            assert proc.wait(20) == 0
            opens = [e for e in proc.events if e.get("event") == "session-open"]
            ends = _session_ends(proc)
            refused = [e for e in proc.events if e.get("event") == "session-refused"]
            assert [e["status"] for e in ends] == ["lost", "done"], (u, ends)
            assert [e["session_id"] for e in refused] == [old_sid]
            assert len(opens) == 2 and opens[1]["session_id"] != old_sid
            assert opens[0]["keys_sha256"] != opens[1]["keys_sha256"]  # fresh keys


def _one_session_with_threads(
    server: TransportServer, port: int, n: int,
    client_kwargs: Callable[[int], dict[str, Any]] = lambda u: {},
) -> tuple[SessionOutcome, dict[int, int]]:
    """Clients 1..n, each a thread with its demo input, against ``server`` (started on
    ``port``) for its one session; the outcome and each client's exit code."""
    outcomes, codes = run_thread_clients(server, port, n, SEED,
                                         lambda u: {"client_kwargs": client_kwargs(u)})
    (outcome,) = outcomes
    return outcome, codes


# -- upload slots: at most upload_slots MaskedInput vectors buffered at once -------------------
def test_masked_uploads_are_buffered_at_most_upload_slots_at_once() -> None:
    """Every client uploads its MaskedInput at once; the server's instrumented hook sees
    at most ``upload_slots`` uploads holding a buffer. The first holders are kept in the
    hook until every other upload is waiting for a slot, so the cap is actually contended
    (events, not timing)."""
    n, dim, slots = 8, 2000, 2
    settings = ServerSettings(clients=n, dim=dim, round_timeout=60.0, sessions=1,
                              join_timeout=60.0, upload_slots=slots,
                              session=SessionSettings(min_cohort=5))
    server = TransportServer(settings, credentials=None)
    lock = threading.Lock()
    all_waiting = threading.Event()
    seen: dict[str, list[int]] = {"waiting": [], "acquired": [], "released": []}
    holders: set[int] = set()
    peak = [0]
    holders_when_all_waiting: list[int] = []

    def hook(event: str, cid: int, reported: int) -> None:
        with lock:
            seen[event].append(cid)
            if event == "acquired":
                holders.add(cid)
            elif event == "released":
                holders.discard(cid)
            peak[0] = max(peak[0], len(holders), reported)
            if len(seen["waiting"]) == n and not all_waiting.is_set():
                holders_when_all_waiting.append(len(holders))
                all_waiting.set()
        if event == "acquired":
            assert all_waiting.wait(30), "not every upload reached the slot queue"

    server.upload_hook = hook
    port = server.start()
    outcome, codes = _one_session_with_threads(server, port, n)
    assert not outcome.aborted, outcome.abort_reason
    assert outcome.included_ids == list(range(1, n + 1))
    assert outcome.sum is not None
    assert np.array_equal(outcome.sum, expected_sum(SEED, range(1, n + 1), 0, dim, 1 << 32))
    assert sorted(seen["waiting"]) == sorted(seen["acquired"]) == sorted(seen["released"]) \
        == list(range(1, n + 1))
    assert holders_when_all_waiting and holders_when_all_waiting[0] <= slots
    assert peak[0] == slots  # reached, never exceeded
    assert codes == dict.fromkeys(range(1, n + 1), 0)


def test_upload_slots_setting_is_checked() -> None:
    with pytest.raises(ConfigError):
        ServerSettings(clients=3, dim=4, upload_slots=0)


# -- the simulator over real processes ---------------------------------------------------------
def test_simulate_transport_grpc_json(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "secagg.cli", "simulate", "--transport", "grpc", "--clients", "10",
         "--dim", "1000", "--dropout", "0.2", "--drop-at", Round.MASKED_INPUT.label, "--seed", "3",
         "--round-timeout", "5", "--json"],
        capture_output=True, text=True, timeout=150, check=False)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    inproc = subprocess.run(
        [sys.executable, "-m", "secagg.cli", "simulate", "--clients", "10", "--dim", "1000",
         "--dropout", "0.2", "--drop-at", Round.MASKED_INPUT.label, "--seed", "3", "--json"],
        capture_output=True, text=True, timeout=150, check=True)
    reference = json.loads(inproc.stdout)
    assert set(reference) <= set(report)
    assert report["exact"] and report["included"] == 8 and report["transport"] == "grpc"
    assert report["dropped_ids"] == reference["dropped_ids"]  # same seed, same dropouts
    assert report["bytes_up_per_client"] == pytest.approx(reference["bytes_up_per_client"])
    assert report["bytes_on_wire_per_client"] > report["bytes_up_per_client"]
    assert report["wall_seconds"] > 0 and report["session_seconds"] > 0
    # the honest floor from the server process's own counts: 2 dropped clients' pairwise
    # masks need their agreements with the 8 survivors (complete graph), plus 8 self masks
    work = report["server_work"]
    assert work["self_masks"] == 8 and work["pairwise_masks"] == 2 * 8
    assert work["agreements"] == reference["server_work"]["agreements"] > 0
    assert report["full_floor_seconds"] > report["floor_seconds"] > 0
    assert report["server_to_full_floor"] == pytest.approx(
        report["server_seconds"] / report["full_floor_seconds"])


# -- active mode over the transport (library API, in-process threads, plaintext) ----------------
def test_active_mode_runs_its_extra_round_over_grpc() -> None:
    identity = pytest.importorskip("secagg.identity")

    if not hasattr(Mode, "ACTIVE"):
        pytest.skip("this tree has no active mode")

    n, dim, task = 10, 100, bytes(range(32))
    keys, store = identity.generate_identities(range(1, n + 1))
    settings = ServerSettings(clients=n, dim=dim, session=SessionSettings(mode=Mode.ACTIVE),
                              round_timeout=10.0,
                              task_hash=task, sessions=1, join_timeout=60.0)
    server = TransportServer(settings, credentials=None, protocol_kwargs={"trust_store": store})
    port = server.start()
    outcome, codes = _one_session_with_threads(
        server, port, n, lambda u: {"identity": keys[u], "trust_store": store,
                                    "expected_task_hash": task})
    report = outcome.report()
    assert not outcome.aborted, outcome.abort_reason
    assert [r["state"] for r in report["rounds"]][3] == Round.CONSISTENCY_CHECK.state_name
    assert outcome.sum is not None
    assert np.array_equal(outcome.sum, expected_sum(SEED, range(1, n + 1), 0, dim, 1 << 32))
    assert codes == dict.fromkeys(range(1, n + 1), 0)

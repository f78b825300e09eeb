"""Transport pieces that need no network: generated stubs, dev certificates, chunk
framing and limits, the identity rules, and the CLI's refusal of unsafe settings."""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from secagg.config import SessionConfig
from secagg.errors import ConfigError
from secagg.rounds import Round
from secagg.transport import certs, framing, sockstat
from secagg.transport.settings import ServerSettings

ROOT = Path(__file__).resolve().parent.parent


def test_generated_stubs_import_and_round_trip() -> None:
    from secagg.transport import secagg_pb2 as pb
    from secagg.transport import secagg_pb2_grpc as pb_grpc

    env = pb.ServerEnvelope(chunk=pb.Chunk(session_id=b"s" * 32, round=2, total_length=3,
                                           offset=0, data=b"abc"))
    back = pb.ServerEnvelope.FromString(env.SerializeToString())
    assert back.WhichOneof("body") == "chunk" and back.chunk.data == b"abc"
    assert pb_grpc.AggregatorStub and pb_grpc.add_AggregatorServicer_to_server
    for name in ("secagg_pb2.py", "secagg_pb2_grpc.py"):
        head = (ROOT / "secagg" / "transport" / name).read_text().splitlines()[:4]
        assert any("grpcio-tools 1.71.2" in line for line in head), name


def test_stub_descriptor_matches_proto_file() -> None:
    """The committed stubs were generated from the committed .proto (no drift)."""
    from secagg.transport import secagg_pb2 as pb

    proto = (ROOT / "secagg" / "transport" / "secagg.proto").read_text()
    for message in pb.DESCRIPTOR.message_types_by_name.values():
        assert f"message {message.name} {{" in proto
        for fld in message.fields:
            assert f" {fld.name} = {fld.number};" in proto, (message.name, fld.name)
    service = pb.DESCRIPTOR.services_by_name["Aggregator"]
    assert {m.name for m in service.methods} == {"Join", "Send"}


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SECAGG_PROTOBUF_MATRIX"),
                    reason="installs protobuf 5.x/6.x/7.x in temporary venvs (needs a package "
                    "index); set SECAGG_PROTOBUF_MATRIX=1")
def test_stubs_import_under_protobuf_5_6_and_7() -> None:
    out = subprocess.run(["bash", str(ROOT / "scripts" / "check_protobuf_compat.sh")],
                         capture_output=True, text=True, timeout=900, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("ok: protobuf") == 3


def test_dev_ca_files_keys_and_validity(tmp_path: Path) -> None:
    paths = certs.init_dev_ca(tmp_path, [1, 2, 7], days=3)
    assert sorted(paths.clients) == [1, 2, 7]
    for key in [paths.ca_key, paths.server_key, *(k for _, k in paths.clients.values())]:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert isinstance(server.public_key(), ec.EllipticCurvePublicKey)
    lifetime = server.not_valid_after_utc - server.not_valid_before_utc
    assert lifetime <= datetime.timedelta(days=3, minutes=10)
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert certs.certificate_client_id(paths.clients[7][0].read_bytes()) == 7
    assert certs.certificate_client_id(paths.server_cert.read_bytes()) is None
    with pytest.raises(ConfigError):
        certs.init_dev_ca(tmp_path, [1])  # refuses to replace the CA silently
    with pytest.raises(ConfigError):
        certs.init_dev_ca(tmp_path / "x", [1], days=0)


def test_channel_credentials_refuse_a_certificate_of_another_id(tmp_path: Path) -> None:
    certs.init_dev_ca(tmp_path, [1, 2])
    cert2, key2 = certs.client_files(tmp_path, 2)
    cert1, key1 = certs.client_files(tmp_path, 1)
    cert1.write_bytes(cert2.read_bytes())
    key1.write_bytes(key2.read_bytes())
    with pytest.raises(ConfigError):
        certs.channel_credentials(tmp_path, 1)
    assert certs.channel_credentials(tmp_path, 2) is not None


@pytest.mark.parametrize(("cn", "alts", "want"), [
    ([b"secagg-client-5"], [b"secagg-client-5"], 5),
    ([b"secagg-client-5"], [], 5),
    ([b"secagg-client-5"], [b"secagg-client-6"], None),  # names two clients
    ([b"secagg-client-05"], [], None),  # non-canonical number
    ([b"secagg-client-0"], [], None),
    ([b"secagg-client-4294967296"], [], None),  # above 2**32 - 1
    ([b"secagg-server"], [], None),
    ([], [b"secagg-client-5"], None),
    ([b"secagg-client-1", b"secagg-client-2"], [], None),
])
def test_identity_from_certificate_names(cn: list[bytes], alts: list[bytes],
                                         want: int | None) -> None:
    assert certs.identity_from_names(cn, alts) == want


def test_reassembler_limits_and_order() -> None:
    with pytest.raises(framing.FrameTooLargeError):
        framing.Reassembler(101, 100)
    with pytest.raises(framing.FrameError):
        framing.Reassembler(0, 100)
    r = framing.Reassembler(10, 100)
    r.add(b"abcd", 0)
    with pytest.raises(framing.FrameError):
        r.add(b"x", 7)  # gap
    with pytest.raises(framing.FrameError):
        r.add(b"0123456789")  # past the declared end
    with pytest.raises(framing.FrameError):
        r.finish()  # truncated
    r.add(b"efghij", 4)
    assert r.finish() == b"abcdefghij"
    data = bytes(range(256)) * 9000
    pieces = list(framing.split(data, 1000))
    assert all(len(p) <= 1000 for _, p in pieces)
    assert b"".join(p for _, p in pieces) == data
    assert [o for o, _ in pieces] == list(range(0, len(data), 1000))


def test_message_limits_follow_the_config() -> None:
    cfg = SessionConfig.create(range(1, 11), 1_000_000, 1 << 32)
    masked = framing.client_message_limit(cfg, Round.MASKED_INPUT)
    assert 4_000_000 < masked < 4_000_000 + 2048
    assert framing.client_message_limit(cfg, Round.ADVERTISE_KEYS) < 2048
    for r in Round:  # every round has its own bound; only masked-input scales with m
        if r is not Round.MASKED_INPUT:
            assert framing.client_message_limit(cfg, r) < 64 << 10, r
    assert framing.server_message_limit(cfg) < 8192
    assert framing.GRPC_MESSAGE_LIMIT < 4 << 20  # gRPC's own limit stays explicit and small


def test_tcp_byte_counters_available() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("TCP_INFO byte counters are Linux-only")
    assert sockstat.tcp_bytes(peer_port=1) == (0, 0)  # no such connection: nothing counted


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "secagg.cli", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.mark.slow
def test_cli_needs_certs_or_explicit_insecure(tmp_path: Path) -> None:
    out = _cli("server", "--clients", "3", "--dim", "10")
    assert out.returncode == 2 and "--certs" in out.stderr
    out = _cli("client", "--server", "127.0.0.1:1", "--id", "1")
    assert out.returncode == 2 and "--insecure" in out.stderr
    # plaintext only when asked, and loudly: no client comes, so the session aborts
    out = _cli("server", "--clients", "3", "--dim", "10", "--insecure", "--join-timeout", "0.5")
    assert "WARNING: --insecure" in out.stderr and out.returncode == 1
    assert _cli("certs", "init", str(tmp_path / "c"), "--clients", "2").returncode == 0
    assert (tmp_path / "c" / "client-2.pem").exists()
    assert _cli("certs", "init", str(tmp_path / "c")).returncode == 2  # no silent overwrite


class _Ctx:
    """A stand-in for grpc.ServicerContext: counts cancels."""

    def __init__(self) -> None:
        self.cancels = 0

    def cancel(self) -> None:
        self.cancels += 1

    def is_active(self) -> bool:
        return True


def _gate(**kw: float) -> Any:
    from secagg.transport.gate import UploadGate

    args: dict[str, Any] = {"sends_per_client": 2, "slots": 2, "first_chunk_timeout": 1.0,
                            "stall_timeout": 0.5, "min_rate": 1000.0}
    args.update(kw)
    return UploadGate(**args)


def test_stalled_masked_uploads_lose_their_slot() -> None:
    """A call reading chunks that receives none for the stall timeout is cancelled; one
    whose chunks are all in (being decoded or accepted) is never cut."""
    import time

    from secagg.transport.gate import Phase

    gate = _gate()
    watches = []
    for _ in range(3):
        with gate.watched(_Ctx()) as w:  # type: ignore[arg-type]
            watches.append(w)
    stalled, fresh, finished = watches
    for w in watches:
        w.phase = Phase.READING
        w.received = 10**6  # fast enough: only the stall timer matters here
        gate._watched.add(w)
    stalled.last_progress -= 5
    finished.last_progress -= 5
    finished.phase = Phase.DONE
    gate.sweep()
    gate.sweep()  # idempotent
    assert (stalled.cancelled, fresh.cancelled, finished.cancelled) == (True, False, False)
    assert [w.context.cancels for w in watches] == [1, 0, 0]
    assert fresh.last_progress <= time.monotonic()
    with pytest.raises(ConfigError):
        ServerSettings(clients=3, dim=4, upload_stall_timeout=0)


def test_gate_deadlines_first_chunk_and_minimum_rate() -> None:
    """No first chunk within its deadline: cut. A trickle that never stalls long enough
    for the stall timer, but stays below the minimum rate: cut too (§17.5)."""
    from secagg.transport.gate import Phase, Watch

    silent = Watch(_Ctx(), 100.0)  # type: ignore[arg-type]
    assert silent.overdue(100.9, 1.0, 0.5, 1000.0) == ""
    assert "first chunk" in silent.overdue(101.1, 1.0, 0.5, 1000.0)
    trickle = Watch(_Ctx(), 100.0)  # type: ignore[arg-type]
    trickle.phase = Phase.READING
    for second in range(1, 20):  # one byte every 0.4 s: never 0.5 s without progress
        now = 100.0 + 0.4 * second
        trickle.last_progress, trickle.received = now, second
        if trickle.overdue(now, 1.0, 0.5, 1000.0):
            break
    assert trickle.overdue(now, 1.0, 0.5, 1000.0) == "upload below the minimum rate"
    assert now < 102.0
    fast = Watch(_Ctx(), 100.0)  # type: ignore[arg-type]
    fast.phase = Phase.READING
    fast.last_progress, fast.received = 110.0, 20_000
    assert fast.overdue(110.0, 1.0, 0.5, 1000.0) == ""
    waiting = Watch(_Ctx(), 100.0)  # type: ignore[arg-type]
    waiting.phase = Phase.WAITING  # queued for a slot: bounded by the round, not the gate
    assert waiting.overdue(1000.0, 1.0, 0.5, 1000.0) == ""


def test_gate_caps_calls_per_certificate_and_slots_per_client() -> None:
    """Over the per-certificate cap a call is refused at once; a client not expected now
    gets no slot, and one client never holds two (§17.5)."""
    import grpc

    from secagg.transport.gate import RefusedError

    gate = _gate(sends_per_client=2)
    with gate.counted(7), gate.counted(7):
        with pytest.raises(RefusedError) as info, gate.counted(7):
            pass
        assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        with gate.counted(8):  # other certificates are not affected
            pass
    with gate.counted(7):  # released again
        pass
    with gate.watched(_Ctx()) as w:  # type: ignore[arg-type]
        no = RefusedError(grpc.StatusCode.FAILED_PRECONDITION, "not expected")
        with pytest.raises(RefusedError) as info, gate.slot(7, w, lambda: no):
            pass
        assert info.value is no
        with gate.slot(7, w, lambda: None):
            with pytest.raises(RefusedError) as info, gate.slot(7, w, lambda: None):
                pass
            assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
            with gate.slot(8, w, lambda: None):
                pass

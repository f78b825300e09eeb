"""Development PKI for the gRPC transport, and client identity from certificates.

The transport authenticates both ends with TLS client certificates (mTLS): the
server proves it is the server (its certificate names ``127.0.0.1``/``localhost``)
and every client proves its protocol id, which the server reads from the
certificate (common name and DNS SAN ``secagg-client-<id>``) instead of trusting
an id the client claims. :func:`init_dev_ca` makes a throw-away CA for tests,
demos and simulations; production deployments bring their own CA and only need
to issue client certificates with that name.

Keys are EC P-256 (supported by every TLS stack gRPC ships with), certificates
are short-lived (7 days by default) and private keys are written with mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from secagg.checks import check_id
from secagg.errors import ConfigError
from secagg.wire import MAX_U32

CLIENT_NAME_PREFIX = "secagg-client-"
SERVER_NAME = "secagg-server"
CA_NAME = "secagg development CA"
DEFAULT_DAYS = 7
MAX_DAYS = 398  # the CA/Browser Forum ceiling; a development CA has no reason to exceed it
_CLIENT_NAME = re.compile(r"^secagg-client-([1-9][0-9]{0,9})$")
#: Clock skew tolerated between the machine that issues and the ones that verify.
_BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class CertPaths:
    """Where :func:`init_dev_ca` put things (file names are fixed, see :func:`client_files`)."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    clients: Mapping[int, tuple[Path, Path]]  # id -> (certificate, key)


def client_name(client_id: int) -> str:
    """The certificate name that carries protocol id ``client_id``."""
    check_id(client_id)
    return f"{CLIENT_NAME_PREFIX}{client_id}"


def client_files(directory: Path | str, client_id: int) -> tuple[Path, Path]:
    """(certificate, key) paths of one client inside a certificate directory."""
    check_id(client_id)
    d = Path(directory)
    return d / f"client-{client_id}.pem", d / f"client-{client_id}.key"


def server_files(directory: Path | str) -> tuple[Path, Path]:
    """(certificate, key) paths of the server inside a certificate directory."""
    d = Path(directory)
    return d / "server.pem", d / "server.key"


def ca_file(directory: Path | str) -> Path:
    return Path(directory) / "ca.pem"


def parse_client_name(name: str) -> int | None:
    """The protocol id in ``secagg-client-<id>``, or None if ``name`` is not such a name."""
    m = _CLIENT_NAME.match(name)
    if m is None:
        return None
    value = int(m.group(1))
    return value if 1 <= value <= MAX_U32 else None


def identity_from_names(common_names: Sequence[bytes], alt_names: Sequence[bytes]) -> int | None:
    """The client id a verified certificate carries, from gRPC's auth context values.

    The common name must be exactly one ``secagg-client-<id>``; every subject
    alternative name of that form must name the same id (a certificate naming
    two clients proves neither). Returns None when there is no valid identity.
    """
    if len(common_names) != 1:
        return None
    cid = parse_client_name(_text(common_names[0]))
    if cid is None:
        return None
    for alt in alt_names:
        text = _text(alt)
        if text.startswith(CLIENT_NAME_PREFIX) and parse_client_name(text) != cid:
            return None
    return cid


def certificate_client_id(pem: bytes) -> int | None:
    """The client id a PEM certificate names (no chain verification: that is TLS's job)."""
    cert = x509.load_pem_x509_certificate(pem)
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        alts = [n.encode() for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        alts = []
    return identity_from_names([str(c).encode() for c in cns], alts)


def init_dev_ca(
    directory: Path | str,
    client_ids: Iterable[int],
    *,
    days: int = DEFAULT_DAYS,
    hosts: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1", "::1"),
    overwrite: bool = False,
) -> CertPaths:
    """Create a development CA, a server certificate and one certificate per client.

    Refuses (ConfigError) to overwrite an existing CA unless ``overwrite``: a
    new CA silently invalidates every certificate issued by the old one.
    """
    if not 1 <= days <= MAX_DAYS:
        raise ConfigError(f"certificate validity must be 1..{MAX_DAYS} days")
    ids = sorted(set(client_ids))
    for cid in ids:
        check_id(cid)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if ca_file(d).exists() and not overwrite:
        raise ConfigError(f"{ca_file(d)} exists; pass overwrite (--force) to replace the CA")
    try:
        ip_list = [ipaddress.ip_address(a) for a in ips]
    except ValueError as exc:
        raise ConfigError(f"invalid server IP address: {exc}") from None
    now = datetime.datetime.now(datetime.UTC)
    not_after = now + datetime.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    ca_cert = (
        _builder(ca_subject, ca_subject, ca_key.public_key(), now, not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(d / "ca.key", ca_key)
    _write_cert(ca_file(d), ca_cert)

    server_alt: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
    server_alt += [x509.IPAddress(ip) for ip in ip_list]
    s_cert, s_key = server_files(d)
    _issue(ca_cert, ca_key, SERVER_NAME, server_alt, ExtendedKeyUsageOID.SERVER_AUTH,
           now, not_after, s_cert, s_key)
    clients = {}
    for cid in ids:
        name = client_name(cid)
        c_cert, c_key = client_files(d, cid)
        _issue(ca_cert, ca_key, name, [x509.DNSName(name)], ExtendedKeyUsageOID.CLIENT_AUTH,
               now, not_after, c_cert, c_key)
        clients[cid] = (c_cert, c_key)
    return CertPaths(d, ca_file(d), d / "ca.key", s_cert, s_key, clients)


# -- helpers --------------------------------------------------------------------------------
def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             now: datetime.datetime, not_after: datetime.datetime) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )


def _issue(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, name: str,
           alt_names: list[x509.GeneralName], usage: x509.ObjectIdentifier,
           now: datetime.datetime, not_after: datetime.datetime,
           cert_path: Path, key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), now, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(key_path, key)
    _write_cert(cert_path, cert)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created 0600 from the start, so the key is never readable by others, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def server_credentials(directory: Path | str) -> grpc.ServerCredentials:
    """mTLS server credentials: serve ``server.pem``, require a client certificate from the CA."""
    cert, key = server_files(directory)
    pairs = [(_read(key), _read(cert))]
    return grpc.ssl_server_credentials(pairs, root_certificates=_read(ca_file(directory)),
                                       require_client_auth=True)


def channel_credentials(directory: Path | str, client_id: int) -> grpc.ChannelCredentials:
    """mTLS client credentials for ``client_id``; refuses a certificate naming another id."""
    cert, key = client_files(directory, client_id)
    cert_pem = _read(cert)
    named = certificate_client_id(cert_pem)
    if named != client_id:
        raise ConfigError(f"{cert.name} does not name client {client_id}")
    return grpc.ssl_channel_credentials(root_certificates=_read(ca_file(directory)),
                                        private_key=_read(key), certificate_chain=cert_pem)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path.name}: {exc.strerror}") from None

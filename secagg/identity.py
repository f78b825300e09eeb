"""Long-term client identities for active mode (spec §15.2, §15.3).

Why: against a server that deviates from the protocol, the only thing a client
can rely on is who signed what. Each client holds a long-term Ed25519
:class:`~secagg.crypto.signatures.SigningKey`; the deployment (not the server
of the session) tells every client which verification key belongs to which
client id, through a :class:`TrustStore`. A server that substitutes its own
X25519 keys for a peer's, or shows clients different survivor sets, would have
to forge a signature under a key it does not hold.

Trust stores are deliberately read-only lookups ``client id -> verify key``:

* :class:`MemoryTrustStore` for an in-process mapping (simulations, tests);
* :class:`FileTrustStore`, one JSON object ``{"<id>": "<hex key>"}``;
* :class:`DirectoryTrustStore`, one file ``<id>.pub`` per client holding the hex key;
* :class:`CallbackTrustStore`, any function (a PKI, a device-attestation service).

Every store validates what it returns (32 bytes, a canonical prime-order Ed25519
point); a malformed entry is a :class:`~secagg.errors.ConfigError`, an unknown id
is ``None``. The module also builds the exact byte strings that are signed, so the
client and the server cannot disagree on them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from secagg.checks import check_id
from secagg.crypto.entropy import Entropy
from secagg.crypto.kdf import encode_context
from secagg.crypto.labels import Label
from secagg.crypto.signatures import SigningKey, validate_verify_key
from secagg.errors import ConfigError, InvalidKeyError

__all__ = [
    "CallbackTrustStore",
    "DirectoryTrustStore",
    "FileTrustStore",
    "MemoryTrustStore",
    "TrustStore",
    "advertise_statement",
    "generate_identities",
    "lookup_verify_key",
    "view_statement",
]

#: Largest trust-store file read, so a mistaken path cannot exhaust memory.
MAX_STORE_FILE_BYTES = 64 << 20


@runtime_checkable
class TrustStore(Protocol):
    """Maps a client id to that client's long-term Ed25519 verification key.

    ``None`` means "no such identity": the protocol refuses a peer it cannot
    authenticate. Implementations must not consult the session's server.
    """

    def verify_key(self, client_id: int) -> bytes | None:
        """The 32-byte verification key registered for ``client_id``, or None."""
        ...


def _check_id(client_id: object) -> int:
    return check_id(client_id, "client ids in a trust store")


def _check_key(key: object, client_id: int) -> bytes:
    if not isinstance(key, bytes | bytearray):
        raise ConfigError(f"trust store entry for client {client_id} is not bytes")
    try:
        return validate_verify_key(bytes(key))
    except InvalidKeyError:
        raise ConfigError(
            f"trust store entry for client {client_id} is not a valid Ed25519 verify key"
        ) from None


def _parse_hex(text: str, client_id: int) -> bytes:
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigError(f"trust store entry for client {client_id} is not hex") from None
    return _check_key(raw, client_id)


def _check_distinct(keys: Mapping[int, bytes]) -> None:
    """One key, one identity: two ids sharing a key would let one signer count twice."""
    owner: dict[bytes, int] = {}
    for cid in sorted(keys):
        other = owner.setdefault(keys[cid], cid)
        if other != cid:
            raise ConfigError(f"clients {other} and {cid} share one verify key in the trust store")


def _no_duplicate_names(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """JSON keeps the last of two equal names; for identities that would hide an entry."""
    out: dict[str, object] = {}
    for name, value in pairs:
        if name in out:
            raise ConfigError("trust store file names one client id twice")
        out[name] = value
    return out


class MemoryTrustStore:
    """An in-memory mapping, validated once at construction."""

    def __init__(self, keys: Mapping[int, bytes]) -> None:
        checked = {_check_id(cid): _check_key(key, cid) for cid, key in keys.items()}
        _check_distinct(checked)
        self._keys = checked

    def verify_key(self, client_id: int) -> bytes | None:
        return self._keys.get(client_id)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"MemoryTrustStore({len(self._keys)} identities)"


class FileTrustStore(MemoryTrustStore):
    """A JSON file ``{"<decimal id>": "<64 hex digits>", ...}``, read once.

    Reading once means a session sees one consistent set of identities even if
    the file is replaced while it runs; build a new store to pick up changes.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            with open(self.path, "rb") as fh:
                data = fh.read(MAX_STORE_FILE_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read trust store file: {exc.strerror}") from None
        if len(data) > MAX_STORE_FILE_BYTES:
            raise ConfigError("trust store file is too large")
        try:
            obj = json.loads(data, object_pairs_hook=_no_duplicate_names)
        except (ValueError, UnicodeDecodeError):
            raise ConfigError("trust store file is not valid JSON") from None
        if not isinstance(obj, dict):
            raise ConfigError("trust store file must hold one JSON object id -> hex key")
        keys: dict[int, bytes] = {}
        for name, value in obj.items():
            if not (name.isascii() and name.isdigit()) or (len(name) > 1 and name[0] == "0"):
                raise ConfigError("trust store ids must be decimal integers without sign or zeros")
            cid = _check_id(int(name))
            if not isinstance(value, str):
                raise ConfigError(f"trust store entry for client {cid} must be a hex string")
            keys[cid] = _parse_hex(value, cid)
        super().__init__(keys)

    def __repr__(self) -> str:
        return f"FileTrustStore({len(self)} identities)"


class DirectoryTrustStore:
    """A directory with one file ``<decimal id>.pub`` per client holding its hex key.

    Files are read on first use and cached, so a large deployment need not load
    every identity for a session that involves a few hundred of them. Keys seen
    so far are kept distinct: a second id resolving to a key already returned for
    another id is refused (ConfigError) rather than silently accepted.
    """

    SUFFIX = ".pub"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if not os.path.isdir(self.path):
            raise ConfigError("trust store directory does not exist")
        self._cache: dict[int, bytes | None] = {}
        self._owner: dict[bytes, int] = {}

    def verify_key(self, client_id: int) -> bytes | None:
        cid = _check_id(client_id)
        if cid in self._cache:
            return self._cache[cid]
        file = os.path.join(self.path, f"{cid}{self.SUFFIX}")
        try:
            with open(file, "rb") as fh:
                raw = fh.read(1024)
        except FileNotFoundError:
            key = None
        except OSError as exc:
            raise ConfigError(f"cannot read trust store entry for client {cid}: "
                              f"{exc.strerror}") from None
        else:
            try:
                text = raw.decode("ascii")
            except UnicodeDecodeError:
                raise ConfigError(f"trust store entry for client {cid} is not hex") from None
            key = _parse_hex(text, cid)
            other = self._owner.setdefault(key, cid)
            if other != cid:
                raise ConfigError(
                    f"clients {other} and {cid} share one verify key in the trust store"
                )
        self._cache[cid] = key
        return key

    def __repr__(self) -> str:
        return "DirectoryTrustStore(<directory>)"


class CallbackTrustStore:
    """Any function ``client id -> verify key or None`` (for example a PKI client).

    The returned key is validated like every other store's; the callback's own
    exceptions propagate unchanged, because only the deployment knows whether
    they mean "unknown" or "try again".
    """

    def __init__(self, lookup: Callable[[int], bytes | None]) -> None:
        if not callable(lookup):
            raise ConfigError("CallbackTrustStore needs a callable")
        self._lookup = lookup

    def verify_key(self, client_id: int) -> bytes | None:
        cid = _check_id(client_id)
        key = self._lookup(cid)
        return None if key is None else _check_key(key, cid)

    def __repr__(self) -> str:
        return "CallbackTrustStore(<callback>)"


def lookup_verify_key(store: TrustStore, client_id: int) -> bytes | None:
    """``store.verify_key(client_id)``, re-validated: a custom store cannot hand the
    protocol a malformed or small-order key, which could make a signature verify
    for more than one statement."""
    key = store.verify_key(client_id)
    return None if key is None else _check_key(key, client_id)


def generate_identities(
    client_ids: Iterable[int], entropy: Entropy | None = None
) -> tuple[dict[int, SigningKey], MemoryTrustStore]:
    """Fresh identities for a simulated cohort: signing keys and the matching store.

    A real deployment provisions identities once, out of band; this exists so
    the simulator and tests can run active mode end to end.
    """
    keys = {_check_id(cid): SigningKey.generate(entropy) for cid in client_ids}
    return keys, MemoryTrustStore({cid: k.verify_key for cid, k in keys.items()})


# --- signed statements (spec §15.3) --------------------------------------------------------
def _statement(label: Label, context: bytes) -> bytes:
    return label.value + b"|" + context


def _ids_bytes(ids: Sequence[int]) -> bytes:
    return b"".join(cid.to_bytes(4, "big") for cid in ids)


def advertise_statement(session_id: bytes, client_id: int, enc_pk: bytes,
                        mask_pk: bytes) -> bytes:
    """What client u signs in round 0: its two fresh keys, bound to u and the session.

    The session id covers the whole configuration (cohort, threshold, task hash...),
    so a signature cannot be replayed into another session or another model.
    """
    return _statement(Label.SIGNED_ADVERTISE_KEYS,
                      encode_context(session_id, client_id, enc_pk, mask_pk))


def view_statement(session_id: bytes, signer: int, alive: Sequence[int],
                   dropped: Sequence[int]) -> bytes:
    """What client u signs in round 3: the survivor view it was shown.

    ``alive`` and ``dropped`` are the ascending id lists of the view (u's own
    neighbourhood in SecAgg+, every client in SecAgg), encoded as u32 strings so
    that any difference in either list changes the statement.
    """
    return _statement(Label.SIGNED_CONSISTENCY_VIEW,
                      encode_context(session_id, signer, _ids_bytes(alive), _ids_bytes(dropped)))

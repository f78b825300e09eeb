"""The attack harness: honest clients against a scriptable malicious server.

Why: the protocol's claims against a deviating server (spec §12.2, §15, §16) are
only worth what an actual deviating server fails to achieve. The harness runs
real :class:`~secagg.client.ClientProtocol` objects, byte for byte over the
codec, against a server that is the honest :class:`~secagg.server.ServerProtocol`
wrapped by an :class:`Attack`: every round, the attack sees what the honest
server would send and decides what is actually sent (tampered, replayed,
reordered or invented messages, several per client). The adversary holds only
what a real one would: every byte its server received (:class:`Knowledge`),
the X25519 keys it generated itself, and the secrets of the clients it
corrupted (their key material comes from a seed the adversary knows, so they
run the same client code but keep nothing from it). It cannot sign as an honest
client: it holds no honest identity key.

The harness records the session's transcript as it went over the wire (spec
§18.1), and :mod:`secagg.attacks.oracle` judges afterwards what the adversary
could compute from its knowledge.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from secagg import graph as graphs
from secagg.client import ClientProtocol
from secagg.config import Mode, SessionConfig, SessionSettings
from secagg.crypto.agreement import X25519PrivateKey
from secagg.crypto.entropy import DeterministicEntropy
from secagg.crypto.prg import mask_dtype
from secagg.crypto.signatures import SigningKey
from secagg.errors import ConfigError, ProtocolError
from secagg.identity import MemoryTrustStore, generate_identities, view_statement
from secagg.messages import ClientMessage, Message, ServerMessage, decode
from secagg.rounds import Round, rounds_of
from secagg.server import ServerProtocol, ServerState, UnmaskedSum
from secagg.session import Relay, SessionDriver, SessionObserver
from secagg.transcript import Transcript, TranscriptObserver, TranscriptRecorder

#: Model hashes used by the scenarios: every honest client trained on TASK_A.
TASK_A = hashlib.sha256(b"secagg attack suite: model A").digest()
TASK_B = hashlib.sha256(b"secagg attack suite: model B (served to one client only)").digest()
#: Vector length of every scenario: small, so the whole suite runs in seconds.
DIM = 16



@dataclass(frozen=True)
class Setting:
    """Where a scenario runs: the session's mode and graph."""

    mode: Mode
    graph: graphs.GraphKind

    @property
    def active(self) -> bool:
        return self.mode is Mode.ACTIVE


def canary_input(client: int, dim: int, modulus: int) -> np.ndarray:
    """A recognisable input for ``client``: a fixed pattern, distinct per client and index.

    The oracle searches every byte the adversary received for it (spec §19); a
    uniform random input would not be recognisable, and an all-zero one would
    match by accident.
    """
    i = np.arange(dim, dtype=np.uint64)
    words = (np.uint64(0x5EC0A600) + np.uint64(client) * np.uint64(0x01000193)
             + i * np.uint64(0x9E3779B1)) & np.uint64(0xFFFFFFFF)
    return (words % np.uint64(modulus)).astype(mask_dtype(modulus))


def session_config(setting: Setting, *, n: int | None = None, modulus: int = 1 << 32,
                   round_index: int = 7, task_hash: bytes = TASK_A,
                   min_cohort: int = 10) -> SessionConfig:
    """The config a scenario's honest clients are offered.

    Complete graph: n = 10 with a declared corrupt fraction of 0.3, so that the
    three clients some scenarios corrupt are within both modes' model (t = 6
    semi-honest, t = 7 active). Harary graph: n = 20, the finder's parameters
    for dropout 0.1 and corruption 0.05 (threat model by mode), or for these
    small n the smallest (k, t) the library's own check accepts.
    """
    def build(ids: range, settings: SessionSettings) -> SessionConfig:
        return SessionConfig.create(ids, DIM, modulus, settings=settings,
                                    round_index=round_index, task_hash=task_hash)

    base = SessionSettings(mode=setting.mode, min_cohort=min_cohort)
    if setting.graph is graphs.GraphKind.COMPLETE:
        return build(range(1, (n or 10) + 1), replace(base, corruption_rate=0.3))
    ids = range(1, (n or 20) + 1)
    harary = replace(base, graph=graphs.GraphKind.HARARY, dropout_rate=0.1,
                     corruption_rate=0.05)
    try:
        return build(ids, harary)
    except ConfigError:
        pass
    size = len(ids)
    for k in range(2, size - 1, 2):
        for t in range(2, k + 1):
            try:
                graphs.check_harary_params(size, k, t, 0.1, 0.05, threat=setting.mode.threat)
            except ConfigError:
                continue
            return build(ids, replace(harary, degree=k, threshold=t))
    raise ConfigError(f"no Harary parameters for n = {size}")


@dataclass
class Knowledge:
    """Everything the adversary holds: received bytes and keys of its own."""

    received: list[tuple[int, int, bytes]] = field(default_factory=list)  # (round, from, bytes)
    #: X25519 keys the adversary generated, each with the client it impersonates as a
    #: receiver of ciphertexts (None: any)
    enc_keys: list[tuple[int | None, X25519PrivateKey]] = field(default_factory=list)
    #: corrupt clients' share-encryption keys (c_u), rebuilt from their known seeds
    corrupt_enc_keys: dict[int, X25519PrivateKey] = field(default_factory=dict)

    def messages(self, round_number: int | None = None) -> list[tuple[int, Message]]:
        """The received messages that decode, as (claimed sender, message)."""
        out = []
        for r, sender, data in self.received:
            if round_number is not None and r != round_number:
                continue
            try:
                out.append((sender, decode(data)))
            except ProtocolError:
                continue
        return out


@dataclass(frozen=True)
class Delivery:
    """One server message handed to a client, and what the client did with it."""

    round: int
    client: int
    data: bytes
    tampered: bool
    accepted: bool
    refusal: str | None


class Attack:
    """Base class of the scenarios: an honest server unless a hook says otherwise.

    Hooks receive the :class:`Harness` (for the config, the clients' public
    messages, the adversary's keys) and return what is actually sent.
    """

    #: clients the adversary controls (it knows their secrets and signs as them)
    corrupt: frozenset[int] = frozenset()
    #: clients that misbehave on the wire while the server is honest
    malicious: frozenset[int] = frozenset()
    #: honest clients that were served a different model (oracle: never aggregated)
    misled: frozenset[int] = frozenset()

    def config(self, setting: Setting) -> SessionConfig:
        return session_config(setting)

    def setup(self, h: Harness) -> None:
        """Choose targets, corrupt clients, prepare replays; before any client exists."""

    def client_config(self, h: Harness, u: int) -> tuple[SessionConfig, dict[str, object], bool]:
        """Config and options client ``u`` is constructed with, and whether the adversary
        tampered with them (a refusal then counts as a defence)."""
        return h.config, h.default_options(u, h.config), False

    def server_messages(self, h: Harness, round_number: int,
                        honest: Mapping[int, Message]) -> dict[int, list[Message | bytes]]:
        """What is sent when round ``round_number`` closes; default: the honest messages."""
        return {u: [m] for u, m in honest.items()}

    def client_messages(self, h: Harness, round_number: int, u: int,
                        message: Message) -> list[bytes]:
        """What client ``u`` actually sends for ``message``; default: exactly it."""
        return [message.encode()]


class Harness:
    """Runs one session of ``attack`` in ``setting`` and keeps every observable."""

    def __init__(self, setting: Setting, attack: Attack, *,
                 identities: Mapping[int, SigningKey] | None = None,
                 seed: int = 0) -> None:
        self.setting = setting
        self.attack = attack
        self.seed = seed
        self.config = attack.config(setting)
        self.active = self.config.mode is Mode.ACTIVE
        self.identities: dict[int, SigningKey] = {}
        self.trust: MemoryTrustStore | None = None
        if self.active:
            if identities is None:
                keys, self.trust = generate_identities(self.config.cohort)
                self.identities = dict(keys)
            else:
                self.identities = dict(identities)
                self.trust = MemoryTrustStore({u: k.verify_key
                                               for u, k in self.identities.items()})
        self.knowledge = Knowledge()
        self.recorder = TranscriptRecorder()
        self.deliveries: list[Delivery] = []
        self.config_refusals: dict[int, str] = {}  # client -> why it refused its config
        self.config_tampered: dict[int, bool] = {}  # client -> was its config/policy tampered
        self.server_refusals: list[tuple[int, int, str]] = []
        self.accepted: dict[tuple[int, int], Message] = {}  # (client, round) -> what it accepted
        self.sent: dict[tuple[int, int], list[bytes]] = defaultdict(list)  # (client, round)
        self.client_configs: dict[int, SessionConfig] = {}
        self.clients: dict[int, ClientProtocol] = {}
        self.inputs: dict[int, np.ndarray] = {}
        self.result: UnmaskedSum | None = None
        self.abort_reason: str | None = None
        self.rounds = rounds_of(self.config.mode)
        attack.setup(self)
        self.server = ServerProtocol(self.config, threads=1, trust_store=self.trust)

    # -- helpers for attacks -----------------------------------------------------------------
    @property
    def honest(self) -> frozenset[int]:
        return frozenset(self.config.cohort) - self.attack.corrupt - self.attack.malicious

    def default_options(self, u: int, config: SessionConfig) -> dict[str, object]:
        """An honest client's options: identity, trust store and model hash in active mode."""
        if config.mode is not Mode.ACTIVE:
            return {}
        return {"identity": self.identities[u], "trust_store": self.trust,
                "expected_task_hash": TASK_A}

    def corrupt_entropy(self, u: int) -> DeterministicEntropy:
        """The (adversary-known) randomness of corrupt client ``u``."""
        return DeterministicEntropy(b"secagg-attack-corrupt|" + u.to_bytes(4, "big")
                                    + self.seed.to_bytes(8, "big"))

    def adversary_key(self, receiver: int | None = None) -> X25519PrivateKey:
        """A fresh X25519 key of the adversary's, remembered for decrypting later."""
        key = X25519PrivateKey.generate()
        self.knowledge.enc_keys.append((receiver, key))
        return key

    def sign_view(self, signer: int, alive: list[int] | tuple[int, ...],
                  dropped: list[int] | tuple[int, ...]) -> bytes:
        """A consistency signature of a corrupt client (the adversary holds its key)."""
        if signer not in self.attack.corrupt:
            raise ConfigError("the adversary can only sign as a corrupt client")
        return self.identities[signer].sign(view_statement(
            self.config.session_id, signer, sorted(alive), sorted(dropped)))

    def received(self, round_number: int) -> dict[int, Message]:
        """The first decodable message each client sent in ``round_number``."""
        out: dict[int, Message] = {}
        for sender, msg in self.knowledge.messages(round_number):
            out.setdefault(sender, msg)
        return out

    # -- the run -----------------------------------------------------------------------------
    def run(self, observers: Sequence[SessionObserver] = ()) -> Harness:
        """Run the session on the session driver, the attack plugged in as its relay;
        ``observers`` see the session too (e.g. the honest clients' receipts, §18.6)."""
        cfg = self.config
        self.recorder.begin(cfg, self.trust)
        for u in cfg.cohort:
            self._make_client(u)
        relay = _AttackRelay(self)
        observers = [_Observer(self, relay), TranscriptObserver(self.recorder), *observers]
        driver = SessionDriver(self.server, self.clients, relay=relay, observers=observers)
        driver.run()
        if self.server.state is ServerState.DONE:
            self.result = self.server.result
            assert self.result is not None
            self.recorder.publish_result(self.result.sum, self.result.included, cfg.modulus)
        else:
            self.abort_reason = self.server.abort_reason or "the session did not finish"
            self.recorder.publish_abort(self.abort_reason)
        return self

    def _make_client(self, u: int) -> None:
        cfg, options, tampered = self.attack.client_config(self, u)
        self.client_configs[u] = cfg
        self.config_tampered[u] = tampered
        vec = canary_input(u, cfg.dim, cfg.modulus)
        self.inputs[u] = vec
        kwargs = dict(options)
        if u in self.attack.corrupt:
            kwargs["entropy"] = self.corrupt_entropy(u)
            self.knowledge.corrupt_enc_keys[u] = X25519PrivateKey.generate(
                self.corrupt_entropy(u))
        try:
            self.clients[u] = ClientProtocol(cfg, u, vec, **kwargs)  # type: ignore[arg-type]
        except ConfigError as exc:
            self.config_refusals[u] = str(exc)

    # -- results -----------------------------------------------------------------------------
    def transcript(self) -> Transcript:
        return self.recorder.build()

    def tampered_counts(self) -> tuple[int, int]:
        """(tampered messages or configs given to honest clients, how many they refused)."""
        honest = self.honest
        sent = [d for d in self.deliveries if d.tampered and d.client in honest]
        refused = sum(1 for d in sent if not d.accepted)
        configs = [u for u in honest if self.config_tampered.get(u)]
        refused_configs = sum(1 for u in configs if u in self.config_refusals)
        return len(sent) + len(configs), refused + refused_configs


class _AttackRelay(Relay):
    """The attack as the driver's network: corrupt and malicious clients send what the
    attack says, and every closing round sends what the attack makes of the honest answers."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        #: the honest server's encoded answers of the round being handed out
        self.genuine: dict[int, bytes] = {}

    def upload(self, round: Round, client_id: int, message: ClientMessage,
               data: bytes) -> Sequence[bytes]:
        attack = self.h.attack
        if client_id in attack.corrupt or client_id in attack.malicious:
            return attack.client_messages(self.h, int(round), client_id, message)
        return (data,)

    def download(self, round: Round, honest: Mapping[int, ServerMessage]
                 ) -> list[tuple[int, bytes]]:
        self.genuine = {u: m.encode() for u, m in honest.items()}
        out = self.h.attack.server_messages(self.h, int(round), honest)
        return [(u, item if isinstance(item, bytes) else item.encode())
                for u, items in sorted(out.items()) for item in items]


class _Observer(SessionObserver):
    """Keeps the harness's observables: what the adversary received, what it sent,
    and what each client accepted or refused."""

    def __init__(self, h: Harness, relay: _AttackRelay) -> None:
        self.h = h
        self.relay = relay
        self._last: bytes = b""

    def on_up(self, round: Round, client_id: int, data: bytes) -> None:
        self.h.knowledge.received.append((int(round), client_id, data))

    def on_server_refusal(self, round: Round, client_id: int, error: ProtocolError) -> None:
        self.h.server_refusals.append((int(round), client_id, str(error)))

    def on_down(self, round: Round, client_id: int, data: bytes) -> None:
        self.h.sent[(client_id, int(round))].append(data)
        self._last = data

    def _delivery(self, round: Round, client_id: int, refusal: str | None) -> None:
        tampered = self._last != self.relay.genuine.get(client_id)
        self.h.deliveries.append(Delivery(int(round), client_id, self._last, tampered,
                                          refusal is None, refusal))

    def on_delivered(self, round: Round, client_id: int, message: ServerMessage,
                     reply: ClientMessage | None) -> None:
        self._delivery(round, client_id, None)
        if reply is not None:
            self.h.accepted[(client_id, int(round))] = message

    def on_refusal(self, round: Round, client_id: int, error: ProtocolError) -> None:
        self._delivery(round, client_id, str(error))

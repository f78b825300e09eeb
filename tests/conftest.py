"""Shared helpers for the protocol tests: configs, inputs, a plaintext oracle and a
step-by-step session driver that exposes every message, so a test can tamper with
one message and then prove the session still completes exactly."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from secagg import graph as graphs
from secagg.client import ClientProtocol, ClientState
from secagg.config import SessionConfig
from secagg.crypto.prg import mask_dtype
from secagg.errors import ConfigError
from secagg.messages import Abort
from secagg.rounds import Round
from secagg.server import ServerProtocol, ServerState
from secagg.session import SessionDriver


def cohort(n: int, start: int = 1) -> list[int]:
    return list(range(start, start + n))


def harary_config(
    ids: Iterable[int],
    dim: int,
    modulus: int,
    *,
    dropout_rate: float,
    corruption_rate: float = 0.05,
    min_cohort: int = 5,
) -> SessionConfig:
    """A Harary config from the parameter finder; when the finder (or the check of its
    output) refuses for a small n, the smallest (k, t) that the library's own check
    accepts for the same rates."""
    ids = sorted(ids)
    common = {
        "graph": "harary",
        "dropout_rate": dropout_rate,
        "corruption_rate": corruption_rate,
        "min_cohort": min_cohort,
    }
    try:
        return SessionConfig.create(ids, dim, modulus, **common)
    except ConfigError:
        pass
    n = len(ids)
    for k in range(2, n, 2):
        for t in range(2, k + 1):
            try:
                graphs.check_harary_params(n, k, t, dropout_rate, corruption_rate)
            except ConfigError:
                continue
            return SessionConfig.create(ids, dim, modulus, degree=k, threshold=t, **common)
    raise ConfigError(f"no Harary parameters for n={n}, dropout_rate={dropout_rate}")


def make_config(
    graph: str, n: int, *, dim: int = 16, modulus: int = 1 << 32, dropout_rate: float = 0.1
) -> SessionConfig:
    ids = cohort(n)
    if graph == "complete":
        return SessionConfig.create(ids, dim, modulus, min_cohort=min(n, 10))
    return harary_config(ids, dim, modulus, dropout_rate=dropout_rate, min_cohort=min(n, 10))


def random_inputs(config: SessionConfig, seed: int) -> dict[int, np.ndarray]:
    """Uniform inputs in [0, R) of the dtype the library expects."""
    rng = np.random.default_rng(seed)
    R, dim = config.modulus, config.dim
    dtype = mask_dtype(R)
    out = {}
    for u in config.cohort:
        if R == 1 << 64:
            vec = rng.integers(0, np.iinfo(np.uint64).max, dim, dtype=np.uint64, endpoint=True)
        else:
            vec = rng.integers(0, R, dim, dtype=np.uint64)
        out[u] = vec.astype(dtype)
    return out


def plaintext_sum(inputs: Mapping[int, np.ndarray], ids: Iterable[int], modulus: int,
                  dim: int) -> np.ndarray:
    """Independent oracle: the sum mod R with no library code (uint64 or Python ints)."""
    ids = list(ids)
    if modulus <= 1 << 32:
        acc = np.zeros(dim, dtype=np.uint64)
        for u in ids:
            acc = (acc + inputs[u].astype(np.uint64)) % np.uint64(modulus)
        return acc
    total = [0] * dim
    for u in ids:
        total = [(a + int(x)) % modulus for a, x in zip(total, inputs[u].tolist(), strict=True)]
    return np.array(total, dtype=object)


def sums_equal(result: np.ndarray, expected: np.ndarray) -> bool:
    return [int(x) for x in result.tolist()] == [int(x) for x in expected.tolist()]


def assert_exact_sum(server: ServerProtocol, inputs: Mapping[int, np.ndarray]) -> None:
    """The server finished and its sum equals the plaintext sum of the clients it included."""
    assert server.state is ServerState.DONE, server.abort_reason
    result = server.result
    assert result is not None
    expected = plaintext_sum(inputs, result.included, server.config.modulus, server.config.dim)
    assert sums_equal(result.sum, expected)


class Session:
    """Drives a real ServerProtocol and ClientProtocols round by round, in memory.

    ``advertise()`` returns the clients' round-0 messages; ``close(msgs)`` delivers
    client messages to the server and closes the round; ``respond(server_msgs)``
    lets every client answer its server message. Replies a test already produced
    by hand (``session.replies[u] = ...``) are reused, so a test can feed a client a
    tampered message, then the genuine one, and let the session go on.
    """

    def __init__(self, config: SessionConfig, seed: int = 0, *, threads: int = 1) -> None:
        self.config = config
        self.inputs = random_inputs(config, seed)
        self.server = ServerProtocol(config, threads=threads)
        self.clients = {u: ClientProtocol(config, u, self.inputs[u]) for u in config.cohort}
        self.replies: dict[int, object] = {}
        # every message travels as bytes through the library's session driver; a refusal
        # raises here, so a test sees it where it happens
        self.driver = SessionDriver(self.server, self.clients, strict=True)
        self._round = Round.ADVERTISE_KEYS

    def advertise(self, drop: Iterable[int] = ()) -> dict[int, object]:
        drop = set(drop)
        return {u: c.start() for u, c in self.clients.items() if u not in drop}

    def close(self, messages: Mapping[int, object], drop: Iterable[int] = ()) -> dict:
        drop = set(drop)
        round_ = self.driver.open_round
        if round_ is None:  # the session ended: the server itself refuses what comes now
            for u, msg in sorted(messages.items()):
                if u not in drop:
                    self.server.receive(msg)  # type: ignore[arg-type]
            return self.server.close_round()
        for u, msg in sorted(messages.items()):
            if u not in drop:
                self.driver.to_server(round_, u, msg.encode())  # type: ignore[attr-defined]
        self.replies = {}
        self._round = round_
        return self.driver.close(round_)

    def respond(self, server_messages: Mapping[int, object],
                drop: Iterable[int] = ()) -> dict[int, object]:
        drop = set(drop)
        out = {}
        for u, msg in sorted(server_messages.items()):
            if u in drop:
                continue
            if u in self.replies:
                out[u] = self.replies[u]
                continue
            reply = self.driver.to_client(self._round, u, msg.encode())  # type: ignore[attr-defined]
            if reply is not None and not isinstance(msg, Abort):
                out[u] = reply
        return out

    # convenience: whole rounds
    def to_share_keys(self, drop: Iterable[int] = ()) -> dict:
        """Run round 0; return the KeyBroadcasts."""
        return self.close(self.advertise(drop))

    def to_masked_input(self, drops: Mapping[str, Iterable[int]] | None = None) -> dict:
        """Run rounds 0-1; return the CiphertextBundles."""
        drops = drops or {}
        kb = self.to_share_keys(drops.get("advertise", ()))
        return self.close(self.respond(kb, drops.get("share-keys", ())))

    def to_unmasking(self, drops: Mapping[str, Iterable[int]] | None = None) -> dict:
        """Run rounds 0-2; return the UnmaskRequests."""
        drops = drops or {}
        bundles = self.to_masked_input(drops)
        return self.close(self.respond(bundles, drops.get("masked-input", ())))

    def finish(self, requests: Mapping[int, object], drop: Iterable[int] = ()) -> None:
        self.close(self.respond(requests, drop))

    def run(self, drops: Mapping[str, Iterable[int]] | None = None) -> None:
        drops = drops or {}
        self.finish(self.to_unmasking(drops), drops.get("unmask", ()))

    def assert_exact(self) -> None:
        """The server finished and its sum equals the plaintext sum of ``included``."""
        assert_exact_sum(self.server, self.inputs)


def client_snapshot(client: ClientProtocol) -> tuple[ClientState, dict, str | None]:
    return client.state, client.released, client.abort_reason

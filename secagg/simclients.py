"""The simulator's clients spread over an engine's workers, round by round (issue 15).

Why: simulating a large cohort is mostly the clients' work (their key agreements,
Shamir shares and masks), and one process runs it on one core. Here each worker
of a :class:`~secagg.engine.PinnedEngine` keeps a *shard* of the clients: unchanged
:class:`~secagg.client.ClientProtocol` state machines, built in the worker from the
config, their inputs' source and (active mode) their identities. Every round the
coordinator sends each shard the server's messages for its clients, as bytes, and
gets their replies back as bytes; the workers only run the clients' own code.

Streaming (memory O(m) per party, not O(n m)):

* a client's input is made only when it masks (:class:`SeededInputs` regenerates any
  client's vector, or any range of it, from one seed). Each client is built with a
  shared zero vector and its input is added to the masked vector it produced: masking
  is additive mod R (§8.3), so the bytes are exactly those it would have sent had it
  held the input from the start;
* replies come back in windows of bounded size and each is handed to the server as
  soon as it is posted, so the coordinator holds a window of masked vectors, never n.

Secrets (keys, self-mask seeds, inputs) stay in the simulated clients, as in the
in-process simulator; the module's reprs show none of them.
"""

from __future__ import annotations

import itertools
import resource
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from secagg import messages as msgs
from secagg.client import ClientProtocol
from secagg.config import SessionConfig
from secagg.crypto.prg import mask_dtype
from secagg.crypto.signatures import SigningKey
from secagg.engine import PinnedEngine
from secagg.errors import ConfigError, ProtocolError
from secagg.identity import TrustStore
from secagg.kernels.arith import add_into
from secagg.packing import pack, packed_size, unpack
from secagg.rounds import Round, decode_client, decode_server
from secagg.session import ClientChannel, SessionDriver, SessionObserver

#: Bytes of replies the coordinator takes back at once (at least one reply per window).
REPLY_BUDGET = 256 << 20

InputSource = Callable[[int], np.ndarray]


@dataclass(frozen=True)
class SeededInputs:
    """Simulated quantized updates: uniform in Z_R, each client's from one seed.

    Made by chunks of ``chunk`` elements, each from its own generator keyed by
    (seed, client, chunk index), so any range of any client's input can be
    regenerated alone: the plaintext check streams by range and no party holds n
    inputs. Picklable, so workers make their clients' inputs themselves.
    """

    seed: int
    dim: int
    modulus: int
    chunk: int = 1 << 16

    def __call__(self, u: int) -> np.ndarray:
        return self.range(u, 0, self.dim)

    def range(self, u: int, start: int, stop: int) -> np.ndarray:
        """Elements ``[start, stop)`` of client ``u``'s input."""
        dtype = mask_dtype(self.modulus)
        out = np.empty(stop - start, dtype=dtype)
        for j in range(start // self.chunk, -(-stop // self.chunk)):
            a, b = max(start, j * self.chunk), min(stop, (j + 1) * self.chunk)
            block = np.random.default_rng([self.seed, u, j]).integers(
                0, self.modulus - 1, size=min(self.dim, (j + 1) * self.chunk) - j * self.chunk,
                dtype=dtype, endpoint=True)
            out[a - start:b - start] = block[a - j * self.chunk:b - j * self.chunk]
        return out

    def __repr__(self) -> str:
        return f"SeededInputs(dim={self.dim}, modulus={self.modulus}, seed=<hidden>)"


@dataclass(frozen=True)
class ShardSpec:
    """What a worker needs to build its clients (inputs and identities are secret)."""

    token: str
    config: SessionConfig
    ids: tuple[int, ...]
    inputs: InputSource | Mapping[int, np.ndarray]
    identities: Mapping[int, SigningKey] | None
    trust_store: TrustStore | None
    min_cohort: int | None

    def __repr__(self) -> str:
        return f"ShardSpec(clients={len(self.ids)}, inputs=<hidden>, identities=<hidden>)"


class Reply(NamedTuple):
    """One client's answer: its message as bytes (None: nothing to send), the reason
    it refused the server's message (None: accepted) and its computing seconds."""

    client_id: int
    data: bytes | None
    refusal: str | None
    seconds: float


class ClientShard:
    """Some of the session's clients, in the process that runs them."""

    def __init__(self, spec: ShardSpec) -> None:
        cfg = spec.config
        self.modulus = cfg.modulus
        self.dtype = mask_dtype(cfg.modulus)
        inputs = spec.inputs
        self.inputs: InputSource = inputs if callable(inputs) else inputs.__getitem__
        # one zero vector for all (ClientProtocol keeps a contiguous input as given)
        zero = np.zeros(cfg.dim, dtype=self.dtype)
        options: dict[str, Any] = {"min_cohort": spec.min_cohort}
        if spec.identities is not None:
            options.update(trust_store=spec.trust_store, expected_task_hash=cfg.task_hash)
        self.clients = {
            u: ClientProtocol(cfg, u, zero, identity=(
                spec.identities[u] if spec.identities is not None else None), **options)
            for u in spec.ids
        }

    def __repr__(self) -> str:
        return f"ClientShard(clients={len(self.clients)})"

    def start(self, ids: Sequence[int]) -> list[Reply]:
        out = []
        for u in ids:
            t0 = time.perf_counter()
            data = self.clients[u].start().encode()
            out.append(Reply(u, data, None, time.perf_counter() - t0))
        return out

    def handle(self, items: Sequence[tuple[int, bytes]]) -> list[Reply]:
        out = []
        for u, data in items:
            t0 = time.perf_counter()
            try:
                reply = self.clients[u].handle(decode_server(data))
            except ProtocolError as exc:
                out.append(Reply(u, None, str(exc), time.perf_counter() - t0))
                continue
            if isinstance(reply, msgs.MaskedInput):
                reply = self._with_input(u, reply)
            encoded = None if reply is None else reply.encode()
            out.append(Reply(u, encoded, None, time.perf_counter() - t0))
        return out

    def _with_input(self, u: int, reply: msgs.MaskedInput) -> msgs.MaskedInput:
        """The masked vector of a client that masked zeros, with its input added (§8.3)."""
        vec = unpack(reply.packed, reply.bits, reply.count, self.dtype)
        add_into(vec, np.ascontiguousarray(self.inputs(u), dtype=self.dtype), self.modulus)
        return msgs.MaskedInput(reply.sender, reply.bits, reply.count, pack(vec, reply.bits))


# --- the calls a worker runs (module-level: they pickle by reference) ----------------------
_SHARDS: dict[str, ClientShard] = {}


def _open(spec: ShardSpec) -> int:
    _SHARDS[spec.token] = ClientShard(spec)
    return len(spec.ids)


def _start(job: tuple[str, list[int]]) -> list[Reply]:
    return _SHARDS[job[0]].start(job[1])


def _handle(job: tuple[str, list[tuple[int, bytes]]]) -> list[Reply]:
    return _SHARDS[job[0]].handle(job[1])


def _close(token: str) -> int:
    """Drop the shard; this worker's peak resident memory in bytes (for the report)."""
    _SHARDS.pop(token, None)
    return peak_rss_bytes()


def peak_rss_bytes(who: int = resource.RUSAGE_SELF) -> int:
    """``ru_maxrss`` in bytes (Linux counts KiB, macOS bytes)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(who).ru_maxrss * scale


# --- the coordinator's side ---------------------------------------------------------------
class ShardChannel(ClientChannel):
    """A :class:`~secagg.session.ClientChannel` to clients kept in ``engine``'s workers.

    Made by :func:`open_shards` (which builds the shards), stopped with :meth:`close`
    (drops them and returns the workers' peak resident memory). Client ``u`` lives on
    worker ``position(u) mod K``. Replies are posted in the order the server's
    messages were sent, and each is handed to the server at once when it is
    collecting that round, so at most one window of replies is held here.
    """

    def __init__(self, engine: PinnedEngine, config: SessionConfig, token: str) -> None:
        self.engine = engine
        k = engine.workers
        # one registry key per worker: an in-process engine keeps every shard in one registry
        self.tokens = [f"{token}/{w}" for w in range(k)]
        self.owner = {u: i % k for i, u in enumerate(config.cohort)}
        reply = packed_size(config.dim, max(1, (config.modulus - 1).bit_length()))
        self.window = max(1, min(config.n, REPLY_BUDGET // max(1, reply)))

    def __repr__(self) -> str:
        return f"ShardChannel(workers={self.engine.workers}, window={self.window})"

    def close(self) -> int:
        """Drop the shards; the sum of the workers' peak resident memory, in bytes."""
        return sum(self.engine.run_on([(w, _close, self.tokens[w])
                                       for w in range(self.engine.workers)]))

    def open(self, driver: SessionDriver, round: Round, client_ids: Sequence[int]) -> None:
        for batch in self._windows(u for u in client_ids if u in self.owner):
            replies = self._calls(_start, batch, lambda u: u)
            for u in batch:
                # popped: a reply is dropped once the server has it, not when the next
                # window has arrived (at m = 10^8 that is one vector less at the peak)
                _post(driver, round, round, replies.pop(u), None)

    def deliver(self, driver: SessionDriver, round: Round, following: Round | None,
                items: Iterable[tuple[int, bytes]]) -> None:
        for batch in self._windows((u, d) for u, d in items if u in self.owner):
            replies = self._calls(_handle, batch, lambda item: item[0])
            for u, data in batch:
                # an honest client answers with the message of the round that follows
                _post(driver, round, following, replies.pop(u), data)

    def _calls(self, fn: Callable[[Any], list[Reply]], batch: Sequence[Any],
               key: Callable[[Any], int]) -> dict[int, Reply]:
        """``fn`` on every worker that holds a client of ``batch``, all at once."""
        by_worker: dict[int, list[Any]] = {}
        for item in batch:
            by_worker.setdefault(self.owner[key(item)], []).append(item)
        results = self.engine.run_on([(w, fn, (self.tokens[w], items))
                                      for w, items in sorted(by_worker.items())])
        return {r.client_id: r for rs in results for r in rs}

    def _windows(self, items: Iterable[Any]) -> Iterator[list[Any]]:
        it = iter(items)
        while batch := list(itertools.islice(it, self.window)):
            yield batch


def open_shards(engine: PinnedEngine, config: SessionConfig,
                inputs: InputSource | Mapping[int, np.ndarray],
                identities: Mapping[int, SigningKey] | None, trust_store: TrustStore | None,
                min_cohort: int | None) -> ShardChannel:
    """Build the clients on ``engine``'s workers (a mapping of inputs is split among them;
    a source travels whole and each worker makes its own clients' inputs)."""
    channel = ShardChannel(engine, config, secrets.token_hex(8))
    shards: dict[int, list[int]] = {}
    for u in config.cohort:
        shards.setdefault(channel.owner[u], []).append(u)
    calls: list[tuple[int, Callable[[ShardSpec], int], ShardSpec]] = []
    for worker, ids in sorted(shards.items()):
        own = inputs if callable(inputs) else {u: inputs[u] for u in ids}
        keys = None if identities is None else {u: identities[u] for u in ids}
        spec = ShardSpec(channel.tokens[worker], config, tuple(ids), own, keys, trust_store,
                         min_cohort)
        calls.append((worker, _open, spec))
    engine.run_on(calls)
    return channel


def _post(driver: SessionDriver, closed: Round, following: Round | None, reply: Reply,
          sent: bytes | None) -> None:
    """A reply as the in-process channel handles one: billed, a refusal recorded,
    observers told, queued, and handed to the server at once if it collects that round."""
    u = reply.client_id
    driver.client_seconds[u] = driver.client_seconds.get(u, 0.0) + reply.seconds
    if reply.refusal is not None:
        driver.refusals[u] = reply.refusal
        for obs in driver.observers:
            obs.on_refusal(closed, u, ProtocolError(reply.refusal))
        return
    if sent is not None:
        _tell_delivered(driver, closed, u, sent, reply.data)
    if reply.data is None or following is None:
        return
    driver.post_bytes(following, u, reply.data)
    if driver.open_round is following:
        driver.receive(following)


def _tell_delivered(driver: SessionDriver, round: Round, u: int, sent: bytes,
                    data: bytes | None) -> None:
    """on_delivered for the observers that use it (decoding costs, so only for them)."""
    watching = [o for o in driver.observers
                if type(o).on_delivered is not SessionObserver.on_delivered]
    if not watching:
        return
    message = decode_server(sent)
    reply = None if data is None else decode_client(data)
    for obs in watching:
        obs.on_delivered(round, u, message, reply)


def check_picklable_inputs(inputs: object) -> None:
    """Refuse an input source that cannot travel to a worker process."""
    import pickle

    try:
        pickle.dumps(inputs)
    except (pickle.PicklingError, AttributeError, TypeError):
        raise ConfigError("inputs for clients on worker processes must be picklable: "
                          "pass a mapping or a secagg.simclients.SeededInputs") from None


__all__ = ["REPLY_BUDGET", "ClientShard", "Reply", "SeededInputs", "ShardChannel",
           "ShardSpec", "check_picklable_inputs", "open_shards", "peak_rss_bytes"]

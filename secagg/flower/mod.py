"""Client side: a Flower mod that runs our protocol around the ClientApp's training.

``ClientApp(client_fn=..., mods=[secaggplus_mod])`` (or with ``@app.train()``
functions) is all a Flower client changes. The mod answers the four stages of
:class:`secagg.flower.SecAggPlusWorkflow` with a :class:`~secagg.client.ClientProtocol`;
at the masked-input stage it calls the training function, encodes the returned
parameters, the example count and the declared metrics into one vector of Z_R
and returns only the masked vector: no parameter, count or metric leaves the
client in clear.

State across messages. Flower may run each message in a fresh process (its
process isolation, and always in the deployment engine) or on another
simulation worker, so nothing may live only in memory. Until the masked input
is sent the mod persists in ``Context.state`` (which stays on the client's
node) a fresh 32-byte secret seed per session, the session config and the
server messages it accepted. Every secret of the session comes from a DRBG
keyed by that seed, so the state machine is rebuilt exactly by replaying the
accepted messages (keys, shares and self-mask seed come out identical); before
the masked input that replay is two key generations and, at the masked-input
stage, one ShareKeys (agreements, Shamir splits, seals), never a mask.

Once the masked input is sent, the client's protocol state is only the shares
its neighbours sent it (``ClientProtocol`` drops its keys and self-mask seed
there, spec §8.3), so the mod replaces the seed and the history by those
shares (``held``). Why this is safe, and safer than before: the shares are
what the in-memory client holds until unmasking, and they were already
derivable from the stored seed and history (the history holds their
ciphertexts, the seed the key that opens them); the seed, in turn, would let
whoever reads the node's state after the masked input recompute this client's
own masks and so its input. It is erased instead, and the unmask stage costs
one share lookup instead of a replay that regenerates every mask. A refused
message is never persisted, and the session's last accepted message (the
unmask request) leaves the client DONE: a second request for shares, whatever
it asks, is refused.

Timing. Every stage logs one DEBUG line on the ``secagg.flower.mod`` logger
(``secagg stage <name>: rebuild ... protocol ... train ... total ... s``, the
numbers also in the record's ``secagg_timing`` attribute) and leaves them in
:attr:`SecAggPlusMod.last_timing`; nothing of it is sent to the server (the
training time would hint at the example count, which the session keeps secret).

Every refusal raises :class:`~secagg.errors.ProtocolError` or
:class:`~secagg.errors.ConfigError`; Flower turns it into an error reply, which
the server treats as a dropout. A training request that does not come with
secure aggregation is refused too, so a server cannot simply ask for the
update in clear.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from flwr.app import ConfigRecord, ConfigRecordValues, Context, Message, MessageType, RecordDict
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import Code, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat

from secagg.checks import is_plain_int
from secagg.client import ClientProtocol, ClientState
from secagg.config import SessionConfig
from secagg.crypto.prg import mask_dtype
from secagg.errors import ConfigError, ProtocolError
from secagg.flower import receipts
from secagg.flower.common import (
    DP_STATE_KEY,
    EVALUATE_LAYOUT,
    LABEL_PREFIX,
    LEGACY_EVALUATE_PARAMETERS,
    LEGACY_INS_PARAMETERS,
    RECORD_KEY,
    STATE_KEY,
    RecordField,
    SessionParams,
    Stage,
    encode_update,
    get_field,
    model_hash,
    model_layout,
    model_record,
    task_hash,
)
from secagg.messages import SHARE_LEN, Abort, CiphertextBundle, KeyBroadcast, UnmaskRequest, decode
from secagg.rounds import decode_server
from secagg.wire import Reader, Writer

if TYPE_CHECKING:
    from secagg.dp.params import DPParams
    from secagg.flower.dp import DPOptions

SEED_LEN = 32
_HELD_ENTRY = 4 + 2 * SHARE_LEN  # u32 peer id, its s-share, its b-share
logger = logging.getLogger(__name__)
_EXPECTED: dict[Stage, type[KeyBroadcast | CiphertextBundle | UnmaskRequest]] = {
    Stage.SHARE_KEYS: KeyBroadcast,
    Stage.MASKED_INPUT: CiphertextBundle,
    Stage.UNMASK: UnmaskRequest,
}
#: the stage each accepted server message moves the client to
_NEXT = {Stage.ADVERTISE_KEYS: Stage.SHARE_KEYS, Stage.SHARE_KEYS: Stage.MASKED_INPUT,
         Stage.MASKED_INPUT: Stage.UNMASK, Stage.UNMASK: None}


class _SessionEntropy:
    """SHAKE-256 keyed by the session's secret seed: every secret of one client session.

    The seed comes from the OS and is kept only in the client's own Context, so
    the stream is as secret as a key stored there (Flower's own mod stores its
    private keys in the same place). Determinism is what makes replay exact.
    """

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._counter = 0

    def random_bytes(self, n: int) -> bytes:
        h = hashlib.shake_256(LABEL_PREFIX + b"client-state-drbg")
        h.update(self._seed)
        h.update(self._counter.to_bytes(8, "big"))
        self._counter += 1
        return h.digest(n)

    def __repr__(self) -> str:
        return "_SessionEntropy(<seed hidden>)"


@dataclass
class _Persisted:
    """What survives between messages (in ``Context.state``).

    Before the masked input: the seed and the accepted server messages (``history``).
    After it: neither, only the neighbours' shares (``held``); see the module docstring.
    """

    config: bytes
    client_id: int
    seed: bytes
    params: SessionParams
    history: list[bytes]
    next_stage: Stage | None  # None: the session is over (done or aborted)
    held: list[bytes] = field(default_factory=list)  # u32 id || s-share || b-share

    def to_record(self) -> ConfigRecord:
        return ConfigRecord({
            RecordField.CONFIG: self.config, RecordField.CLIENT_ID: self.client_id,
            "seed": self.seed,
            "history": list(self.history),
            "held": list(self.held),
            "next-stage": self.next_stage.value if self.next_stage else "",
            **self.params.to_record(),
        })

    @classmethod
    def from_record(cls, record: ConfigRecord) -> _Persisted:
        nxt = str(record.get("next-stage", ""))
        return cls(
            config=get_field(record, RecordField.CONFIG, bytes),
            client_id=get_field(record, RecordField.CLIENT_ID, int),
            seed=get_field(record, "seed", bytes),
            params=SessionParams.from_record(record),
            history=_byte_list(record, "history"),
            next_stage=Stage(nxt) if nxt else None,
            held=_byte_list(record, "held"),
        )

    def held_shares(self) -> dict[int, tuple[bytes, bytes]]:
        """The persisted shares as :meth:`ClientProtocol.resume_unmasking` takes them."""
        out = {}
        for raw in self.held:
            if len(raw) != _HELD_ENTRY:
                raise ProtocolError("the persisted shares are malformed")
            r = Reader(raw)
            peer = r.u32("peer")
            out[peer] = (r.fixed(SHARE_LEN, "s-share"), r.fixed(SHARE_LEN, "b-share"))
        if len(out) != len(self.held):
            raise ProtocolError("the persisted shares repeat a peer")
        return out


def _byte_list(record: ConfigRecord, key: str) -> list[bytes]:
    """A list of bytes of a persisted state (the history, the held shares), or refused."""
    value = record.get(key, [])
    if not isinstance(value, list) or not all(isinstance(b, bytes) for b in value):
        raise ProtocolError(f"the persisted session {key} is malformed")
    return [b for b in value if isinstance(b, bytes)]


def _encode_held(held: Mapping[int, tuple[bytes, bytes]]) -> list[bytes]:
    return [Writer().u32(v).fixed(s, SHARE_LEN).fixed(b, SHARE_LEN).getvalue()
            for v, (s, b) in sorted(held.items())]


@dataclass
class StageTiming:
    """Seconds one stage took in the mod: rebuilding the client state machine (replay or
    resume), the protocol's own step, the training function (with encoding), in all."""

    stage: str
    rebuild_s: float = 0.0
    protocol_s: float = 0.0
    train_s: float = 0.0
    total_s: float = 0.0

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Add the time spent inside the block to ``<name>_s``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            attr = f"{name}_s"
            setattr(self, attr, getattr(self, attr) + time.perf_counter() - start)

    def as_dict(self) -> dict[str, float | str]:
        return {"stage": self.stage, "rebuild_s": self.rebuild_s,
                "protocol_s": self.protocol_s, "train_s": self.train_s,
                "total_s": self.total_s}


class SecAggPlusMod:
    """The client mod; :data:`secaggplus_mod` is an instance with default policy.

    ``min_cohort`` is this client's own floor on the cohort size (spec §15.8):
    a session with fewer clients is refused whatever the server's config says.
    ``cache=False`` rebuilds the client from the persisted state for every message
    (a replay before the masked input, a resume from the held shares after it),
    which is what happens when Flower runs each message in a new process.
    ``receipt_dir``: keep a receipt of each session (spec §18.6) and write it there
    when the session ends, for ``secagg audit TRANSCRIPT --receipts DIR``; without
    it no digest is kept (nothing would read them), so the Context stays smaller.
    ``dp``: the distributed-DP target this client checks a training session against
    and encodes with (:class:`secagg.flower.dp.DPOptions`; spec §21.12); None takes it
    from the run config's ``dp-*`` keys, and without those a DP session is refused.
    """

    def __init__(self, *, min_cohort: int | None = None, cache: bool = True,
                 receipt_dir: str | None = None, dp: DPOptions | None = None) -> None:
        if min_cohort is not None and (isinstance(min_cohort, bool) or min_cohort < 3):
            raise ConfigError("min_cohort must be an int >= 3")
        self.min_cohort = min_cohort
        #: this client's own DP target (None: the run config's ``dp-*`` keys, if any)
        self.dp = dp
        self.cache = cache
        self.receipt_dir = receipt_dir
        self._lock = threading.Lock()
        self._live: dict[tuple[int, int], tuple[bytes, ClientProtocol]] = {}
        #: the timing of the last stage this instance answered (in this process)
        self.last_timing: StageTiming | None = None

    def __repr__(self) -> str:
        return (f"SecAggPlusMod(min_cohort={self.min_cohort}, cache={self.cache}, "
                f"receipt_dir={self.receipt_dir!r})")

    def __getstate__(self) -> dict[str, object]:
        """Pickle the policy only: Flower's Ray engine ships the ClientApp (and so
        this mod) to its workers; the lock and the cache stay in this process."""
        return {"min_cohort": self.min_cohort, "cache": self.cache,
                "receipt_dir": self.receipt_dir, "dp": self.dp}

    def __setstate__(self, state: dict[str, object]) -> None:
        # re-run __init__ on the unpickled instance, so the policy's checks apply again
        self.__init__(**state)  # type: ignore[misc]  # mypy refuses explicit __init__ calls

    # -- entry point ---------------------------------------------------------------------
    def __call__(self, msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
        """Answer one Flower message: protocol stages here; anything but training and
        secure evaluation passes (evaluation without the ``secagg`` record: in clear)."""
        kind = msg.metadata.message_type.split(".")[0]
        secure = msg.has_content() and RECORD_KEY in msg.content.config_records
        if kind not in (MessageType.TRAIN, MessageType.EVALUATE) or (
                kind == MessageType.EVALUATE and not secure):
            return call_next(msg, ctxt)
        if not secure:
            raise ProtocolError(
                "refused: this client trains only under secure aggregation, and the "
                "training request carries no secure-aggregation stage"
            )
        record = msg.content.config_records[RECORD_KEY]
        try:
            stage = Stage(get_field(record, RecordField.STAGE, str))
        except ValueError:
            raise ProtocolError("unknown secure-aggregation stage") from None
        timing = StageTiming(stage.value)
        out: bytes | None = None
        with timing.part("total"):
            if stage is Stage.ADVERTISE_KEYS:
                out = self._advertise(record, ctxt, timing, kind == MessageType.EVALUATE)
            elif stage is Stage.ABORT:
                self._abort(record, ctxt)
            else:
                out = self._step(stage, msg, record, ctxt, call_next, timing)
        self.last_timing = timing
        logger.debug("secagg stage %s: rebuild %.4f protocol %.4f train %.4f total %.4f s",
                     stage.value, timing.rebuild_s, timing.protocol_s, timing.train_s,
                     timing.total_s, extra={"secagg_timing": timing.as_dict()})
        reply: dict[str, ConfigRecordValues] = {RecordField.STAGE: stage.value}
        if out is not None:
            reply[RecordField.MESSAGE] = out
        return Message(RecordDict({RECORD_KEY: ConfigRecord(reply)}), reply_to=msg)

    # -- stages --------------------------------------------------------------------------
    def _advertise(self, record: ConfigRecord, ctxt: Context, timing: StageTiming,
                   evaluate: bool = False) -> bytes:
        """Stage 0: a new session (any earlier one is forgotten), fresh seed and keys."""
        config_bytes = get_field(record, RecordField.CONFIG, bytes)
        client_id = get_field(record, RecordField.CLIENT_ID, int)
        params = SessionParams.from_record(record)
        config = SessionConfig.decode(config_bytes)
        if not _dp_check(record, ctxt, self.dp, config, evaluate) and params.quantization(
                config.n).modulus != config.modulus:
            raise ProtocolError("the session's modulus is not the one its quantization needs")
        state = _Persisted(config_bytes, client_id, os.urandom(SEED_LEN), params, [],
                           Stage.SHARE_KEYS)
        with timing.part("protocol"):
            protocol = ClientProtocol(config, client_id, _placeholder(config),
                                      entropy=_SessionEntropy(state.seed),
                                      min_cohort=self.min_cohort)
            advertise = protocol.start().encode()
        self._forget(ctxt)
        self._save(ctxt, state)
        if self.receipt_dir is not None:  # else no digests: a smaller Context to ship
            receipts.start(ctxt, config, client_id, advertise)
        return advertise

    def _step(self, stage: Stage, msg: Message, record: ConfigRecord, ctxt: Context,
              call_next: ClientAppCallable, timing: StageTiming) -> bytes:
        """Stages 1, 2, 4: one server message, replayed state, one reply."""
        state = self._load(ctxt)
        if state is None or state.next_stage is not stage:
            expected = state.next_stage.value if state and state.next_stage else "advertise-keys"
            raise ProtocolError(f"stage {stage.value} not expected (expected {expected})")
        incoming = decode(get_field(record, RecordField.MESSAGE, bytes))
        if not isinstance(incoming, _EXPECTED[stage]):
            raise ProtocolError(f"stage {stage.value} must carry a "
                                f"{_EXPECTED[stage].__name__}")
        config = SessionConfig.decode(state.config)
        vector = None
        if stage is Stage.MASKED_INPUT:
            with timing.part("train"):
                vector = self._train(msg, ctxt, call_next, config, state.params)
        with timing.part("rebuild"):
            protocol = self._rebuild(ctxt, stage, config, state, vector)
        with timing.part("protocol"):
            reply = protocol.handle(incoming)  # refuses (ProtocolError) before any change
        assert reply is not None
        if self.receipt_dir is not None:
            receipts.step(ctxt, incoming.encode(), reply)
        state.next_stage = _NEXT[stage]
        if state.next_stage is None:  # done: the shares have no use left, forget them
            receipts.finish(ctxt, self.receipt_dir)
            self._forget(ctxt)
            ctxt.state.config_records[STATE_KEY] = ConfigRecord({"next-stage": ""})
        elif stage is Stage.MASKED_INPUT:  # the seed's work is done: keep the shares only
            held = _encode_held(protocol.unmasking_state())
            state.seed, state.history, state.held = b"", [], held
            self._save(ctxt, state)
            if self.cache:
                with self._lock:
                    self._live[_node_key(ctxt)] = (hashlib.sha256(b"".join(held)).digest(),
                                                   protocol)
        else:
            state.history.append(incoming.encode())
            self._save(ctxt, state)
        return reply.encode()

    def _abort(self, record: ConfigRecord, ctxt: Context) -> None:
        """The server ended the session: forget every secret of it."""
        raw = record.get(RecordField.MESSAGE)
        if isinstance(raw, bytes) and not isinstance(decode(raw), Abort):
            raise ProtocolError("an abort stage must carry an Abort message")
        receipts.finish(ctxt, self.receipt_dir, raw if isinstance(raw, bytes) else None)
        self._forget(ctxt)
        ctxt.state.config_records[STATE_KEY] = ConfigRecord({"next-stage": ""})

    # -- training ------------------------------------------------------------------------
    def _train(self, msg: Message, ctxt: Context, call_next: ClientAppCallable,
               config: SessionConfig, params: SessionParams) -> np.ndarray:
        """Check the model against the session, train (or evaluate), and encode the
        reply into Z_R. An evaluation session's vector is the loss and metrics only."""
        content = msg.content
        evaluate = msg.metadata.message_type.split(".")[0] == MessageType.EVALUATE
        _, model = model_record(content)
        dp_params = None if evaluate else _dp_params(ctxt)
        expected_hash = task_hash(params, model_hash(model), evaluate=evaluate)
        if dp_params is not None:  # the DP parameters are bound into the task hash (§21.12)
            from secagg.flower import dp

            expected_hash = dp.dp_task_hash(expected_hash, dp_params)
        if expected_hash != config.task_hash:
            raise ProtocolError(
                f"the model sent for {'evaluation' if evaluate else 'training'} is not the "
                "one this session was opened for"
            )
        global_arrays, layout = ([], EVALUATE_LAYOUT) if evaluate else model_layout(model)
        if dp_params is not None:  # checked at the first stage; the model's size only now
            if dp_params.dim != layout.size:
                raise ProtocolError("the session's DP dimension does not match the model")
        elif params.dim(layout) != config.dim:
            raise ProtocolError("the session's vector length does not match the model")
        del content.config_records[RECORD_KEY]  # the training function sees Flower's own
        legacy = (LEGACY_EVALUATE_PARAMETERS if evaluate
                  else LEGACY_INS_PARAMETERS) in content.array_records
        out = call_next(msg, ctxt)
        if out.has_error():
            raise ProtocolError(f"local training failed: {out.error.reason}")
        arrays, weight, metrics = _local_result(out.content, legacy, evaluate, params.weight_key)
        if isinstance(weight, float) and weight.is_integer():
            weight = int(weight)
        if not is_plain_int(weight):
            raise ConfigError("the example count must be an integer")
        if dp_params is not None:  # uniform weights: the count stays on the client (spec §21.12)
            vector = dp.encode_update(arrays, global_arrays, dp_params, config)
            dp.spend(ctxt.state.config_records)
            return vector
        numeric = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
        return encode_update(arrays, numeric, weight, params, layout, config.n)

    # -- state ---------------------------------------------------------------------------
    def _rebuild(self, ctxt: Context, stage: Stage, config: SessionConfig, state: _Persisted,
                 vector: np.ndarray | None) -> ClientProtocol:
        """The client state machine as the persisted state left it, ready for ``stage``."""
        if stage is not Stage.UNMASK:
            return self._protocol(config, state, vector)
        cached = self._cached(ctxt, config, state)
        if cached is not None:
            return cached
        try:
            return ClientProtocol.resume_unmasking(config, state.client_id, state.held_shares(),
                                                   min_cohort=self.min_cohort)
        except ConfigError as exc:
            raise ProtocolError(f"the persisted unmasking state is unusable: {exc}") from None

    def _protocol(self, config: SessionConfig, state: _Persisted,
                  vector: np.ndarray | None) -> ClientProtocol:
        """Rebuild the client state machine by replaying the accepted server messages.

        Only before the masked input (after it, the state is the held shares): the
        replay is the two key generations and, at the masked-input stage, the
        ShareKeys step. Before training the input is a placeholder of zeros, read
        only when the masked input is computed, which no replay reaches.
        """
        if vector is None:
            vector = _placeholder(config)
        protocol = ClientProtocol(config, state.client_id, vector,
                                  entropy=_SessionEntropy(state.seed), min_cohort=self.min_cohort)
        protocol.start()
        for raw in state.history:
            protocol.handle(decode_server(raw))  # accepted before: a server message
        return protocol

    def _cached(self, ctxt: Context, config: SessionConfig,
                state: _Persisted) -> ClientProtocol | None:
        """This process's own client of the session, if it still holds exactly the
        persisted shares (``cache=True``): saves even the resume."""
        if not self.cache:
            return None
        with self._lock:
            entry = self._live.get(_node_key(ctxt))
        if entry is None:
            return None
        held_digest, protocol = entry
        if (held_digest != hashlib.sha256(b"".join(state.held)).digest()
                or protocol.state is not ClientState.UNMASKING or protocol.config != config):
            return None
        return protocol

    def _forget(self, ctxt: Context) -> None:
        with self._lock:
            self._live.pop(_node_key(ctxt), None)
        ctxt.state.config_records.pop(STATE_KEY, None)

    @staticmethod
    def _load(ctxt: Context) -> _Persisted | None:
        record = ctxt.state.config_records.get(STATE_KEY)
        if record is None or not record.get("next-stage"):
            return None
        return _Persisted.from_record(record)

    @staticmethod
    def _save(ctxt: Context, state: _Persisted) -> None:
        ctxt.state.config_records[STATE_KEY] = state.to_record()


def _dp_options(ctxt: Context, own: DPOptions | None) -> DPOptions | None:
    """The client's DP target: its own, else the run config's (``dp-*`` keys)."""
    if own is not None or not ctxt.run_config.get("dp"):
        return own
    from secagg.flower.dp import options_from_run_config

    return options_from_run_config(ctxt.run_config)


def _dp_check(record: ConfigRecord, ctxt: Context, own: DPOptions | None,
              config: SessionConfig, evaluate: bool) -> bool:
    """At the first stage: whether the session is DP; a DP session is checked against the
    client's own target and its parameters kept for the masked input (spec §21.12). A
    client with a DP target refuses a training session without DP, and one without a
    target refuses a DP session (it could not check the noise). Loads the DP code only
    when DP is configured on either side."""
    ctxt.state.config_records.pop(DP_STATE_KEY, None)
    options = _dp_options(ctxt, own)
    asked = "dp-mechanism" in record
    if evaluate and asked:
        raise ProtocolError("refused: distributed DP applies to training sessions only")
    if evaluate or (options is None and not asked):
        return False  # secure evaluation sums the loss and metrics, never the update
    from secagg.flower import dp

    if options is None:
        raise ProtocolError("refused: the session asks for distributed DP, which this client "
                            "is not configured for")
    if not asked:
        raise ProtocolError("refused: this client trains only with distributed DP, and the "
                            "session carries no DP parameters")
    params = dp.params_from_record(record)
    dp.check_session(params, options, config)
    dp.check_budget(ctxt.state.config_records, options)
    ctxt.state.config_records[dp.STATE_KEY] = ConfigRecord(dp.params_to_record(params))
    return True


def _dp_params(ctxt: Context) -> DPParams | None:
    """The DP parameters this session's first stage checked and kept; None if not DP."""
    record = ctxt.state.config_records.get(DP_STATE_KEY)
    if record is None:
        return None
    from secagg.flower.dp import params_from_record

    return params_from_record(record)


def _placeholder(config: SessionConfig) -> np.ndarray:
    """The input given to the state machine before training: never sent anywhere."""
    return np.zeros(config.dim, dtype=mask_dtype(config.modulus))


def _node_key(ctxt: Context) -> tuple[int, int]:
    return (int(ctxt.run_id), int(ctxt.node_id))


def _local_result(content: RecordDict, legacy: bool, evaluate: bool, weight_key: str
                  ) -> tuple[list[np.ndarray], object, Mapping[str, object]]:
    """Arrays, example count and metrics of the training (or evaluation) function's reply.

    Legacy evaluation: the loss is summed as the first metric (``loss``); message-API
    evaluation replies carry only a MetricRecord, and no arrays are summed.
    """
    if legacy and evaluate:
        evalres = compat.recorddict_to_evaluateres(content)
        if evalres.status.code != Code.OK:
            raise ProtocolError(f"local evaluation failed: {evalres.status.message}")
        return [], evalres.num_examples, {"loss": evalres.loss, **evalres.metrics}
    if legacy:
        fitres = compat.recorddict_to_fitres(content, keep_input=False)
        if fitres.status.code != Code.OK:
            raise ProtocolError(f"local training failed: {fitres.status.message}")
        return parameters_to_ndarrays(fitres.parameters), fitres.num_examples, dict(
            fitres.metrics)
    return _message_reply(content, weight_key, evaluate)


def _message_reply(content: RecordDict, weight_key: str, evaluate: bool = False
                   ) -> tuple[list[np.ndarray], object, Mapping[str, object]]:
    """Arrays, example count and metrics of a message-API training (evaluation) reply."""
    if len(content.array_records) != (0 if evaluate else 1) or len(
            content.metric_records) != 1:
        raise ConfigError("a training reply must carry exactly one ArrayRecord and one "
                          "MetricRecord (an evaluation reply: one MetricRecord only)")
    arrays = [] if evaluate else next(iter(content.array_records.values())).to_numpy_ndarrays()
    metrics = dict(next(iter(content.metric_records.values())))
    if weight_key not in metrics:
        raise ConfigError(f"the training reply's MetricRecord has no {weight_key!r}")
    weight = metrics.pop(weight_key)
    return arrays, weight, metrics


#: The mod with the default client policy: ``ClientApp(mods=[secaggplus_mod])``.
secaggplus_mod = SecAggPlusMod()

__all__ = ["SecAggPlusMod", "secaggplus_mod"]

"""What the Flower client mod and the server workflow share: record keys, stages,
session parameters, the task hash and the (de)quantization of a Flower update.

Our protocol messages travel as their canonical bytes (spec §7) inside one
Flower ``ConfigRecord`` stored under :data:`RECORD_KEY` of a message's
``RecordDict``; the stage name travels next to them, so a message of the wrong
round is refused before it is even decoded. Everything a client needs to
encode its update (clip, levels, weight cap, which metrics are summed) is sent
in the first stage and bound into the session's task hash, so every client of a
session provably uses the same parameters: a client shown other parameters
derives another session id and cannot complete a pair derivation with the rest.

This module imports flwr; :mod:`secagg.flower` checks that it is installed.
"""

from __future__ import annotations

import enum
import hashlib
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, RecordDict

from secagg.checks import is_plain_int, is_plain_number
from secagg.errors import ConfigError, ProtocolError
from secagg.quantize import (
    MAX_QUANTIZATION_BITS,
    Layout,
    QuantizationConfig,
    decode_sum,
    encode,
    flatten,
    unflatten,
)
from secagg.rounds import Round
from secagg.wire import Writer

_T = TypeVar("_T", bool, bytes, float, int, str)

#: Key of the ConfigRecord carrying our stage and message in every secure-aggregation
#: Flower message (both directions).
RECORD_KEY = "secagg"
#: Key of the client's persisted protocol state in ``Context.state.config_records``.
STATE_KEY = "secagg.client"
#: the client's DP parameters of the current session, in ``Context.state`` (here, not in
#: ``secagg.flower.dp``, so the mod names it without loading the DP code)
DP_STATE_KEY = "secagg.client.dp"
#: The legacy (FitIns) path stores the global model under this key.
LEGACY_INS_PARAMETERS = "fitins.parameters"
#: ... and the legacy evaluation path (EvaluateIns) under this one.
LEGACY_EVALUATE_PARAMETERS = "evaluateins.parameters"
#: The layout of an evaluation session's vector: no model arrays, only the summed
#: metrics (the loss first) and the weight (spec §20.6).
EVALUATE_LAYOUT = Layout((), ())
#: Domain-separation prefix of the Flower adapter's hashes and its state DRBG
#: (spec §20.2, §20.4); disjoint from every label of ``secagg.crypto.labels``.
LABEL_PREFIX = b"secagg/v1/flower/"


class Stage(enum.Enum):
    """The protocol round a Flower message belongs to (spec §8, §20)."""

    ADVERTISE_KEYS = "advertise-keys"
    SHARE_KEYS = "share-keys"
    MASKED_INPUT = "masked-input"
    UNMASK = "unmask"
    ABORT = "abort"

    @property
    def round(self) -> Round:
        """The protocol round whose client messages this stage collects (ConfigError for ABORT)."""
        if self is Stage.ABORT:
            raise ConfigError("the abort stage collects no round")
        return Round.from_label(_STAGE_LABELS.get(self.value, self.value))

    @classmethod
    def of(cls, round: Round) -> Stage:
        """The stage that collects ``round`` (the Flower adapter runs no ConsistencyCheck)."""
        for stage in cls:
            if stage is not Stage.ABORT and stage.round is round:
                return stage
        raise ConfigError(f"the Flower adapter has no stage for round {round.label}")


#: Flower stage names that differ from the round's public label.
_STAGE_LABELS = {"advertise-keys": Round.ADVERTISE_KEYS.label}


class RecordField:
    """Field names inside the :data:`RECORD_KEY` ConfigRecord (both directions)."""

    STAGE = "stage"
    MESSAGE = "message"
    CONFIG = "config"
    CLIENT_ID = "client-id"
    CLIP = "clip"
    BITS = "bits"
    MAX_WEIGHT = "max-weight"
    MODULUS_BITS = "modulus-bits"
    METRIC_KEYS = "metric-keys"
    METRICS_RANGE = "metrics-range"
    WEIGHT_KEY = "weight-key"


@dataclass(frozen=True)
class SessionParams:
    """How a client turns its Flower update into a vector of Z_R, and back.

    ``clip``, ``bits``, ``max_weight`` and ``modulus_bits`` are those of
    :class:`~secagg.quantize.QuantizationConfig`. ``metric_keys`` are the
    training metrics summed inside the secure aggregate (weighted by the
    example count, like Flower's weighted averages); each is scaled from
    ``[-metrics_range, metrics_range]`` into ``[-clip, clip]`` before
    quantization, so a loss of 2.3 is not clipped at the model's clip of 0.1.
    ``weight_key`` names the example count in a message-API reply's MetricRecord.
    """

    clip: float
    bits: int
    max_weight: int
    modulus_bits: int
    metric_keys: tuple[str, ...] = ()
    metrics_range: float = 100.0
    weight_key: str = "num-examples"

    def __post_init__(self) -> None:
        if not isinstance(self.metric_keys, tuple) or not all(
            isinstance(k, str) and k for k in self.metric_keys
        ):
            raise ConfigError("metric_keys must be a tuple of non-empty strings")
        if len(set(self.metric_keys)) != len(self.metric_keys):
            raise ConfigError("metric_keys must not repeat a key")
        if not (math.isfinite(self.metrics_range) and self.metrics_range > 0):
            raise ConfigError("metrics_range must be a finite number > 0")
        if not isinstance(self.weight_key, str) or not self.weight_key:
            raise ConfigError("weight_key must be a non-empty string")
        # clip, bits, max_weight and modulus_bits are checked by QuantizationConfig
        self.quantization(1)

    def quantization(self, num_clients: int) -> QuantizationConfig:
        """The quantization of a session of ``num_clients`` (refuses a modulus too small)."""
        return QuantizationConfig(clip=self.clip, bits=self.bits, max_clients=num_clients,
                                  max_weight=self.max_weight, modulus_bits=self.modulus_bits)

    def encode(self) -> bytes:
        """Canonical bytes, an input of the task hash."""
        w = Writer().raw(struct.pack(">d", self.clip)).u8(self.bits).u64(self.max_weight)
        w.u8(self.modulus_bits).raw(struct.pack(">d", self.metrics_range))
        w.var(self.weight_key.encode()).u32(len(self.metric_keys))
        for key in self.metric_keys:
            w.var(key.encode())
        return w.getvalue()

    def to_record(self) -> dict[str, float | int | str | list[str]]:
        """The fields of the first stage's ConfigRecord."""
        f = RecordField
        return {
            f.CLIP: float(self.clip), f.BITS: self.bits, f.MAX_WEIGHT: self.max_weight,
            f.MODULUS_BITS: self.modulus_bits, f.METRIC_KEYS: list(self.metric_keys),
            f.METRICS_RANGE: float(self.metrics_range), f.WEIGHT_KEY: self.weight_key,
        }

    @classmethod
    def from_record(cls, record: ConfigRecord) -> SessionParams:
        """Inverse of :meth:`to_record`; malformed fields are refused (ProtocolError)."""
        f = RecordField
        keys = record.get(f.METRIC_KEYS, [])
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ProtocolError("metric keys must be a list of strings")
        try:
            return cls(
                clip=get_field(record, f.CLIP, float), bits=get_field(record, f.BITS, int),
                max_weight=get_field(record, f.MAX_WEIGHT, int),
                modulus_bits=get_field(record, f.MODULUS_BITS, int),
                metric_keys=tuple(str(k) for k in keys),
                metrics_range=get_field(record, f.METRICS_RANGE, float),
                weight_key=get_field(record, f.WEIGHT_KEY, str),
            )
        except ConfigError as exc:
            raise ProtocolError(f"unusable session parameters: {exc}") from None

    def dim(self, layout: Layout) -> int:
        """Vector length of a session: model scalars, summed metrics, the weight."""
        return layout.size + len(self.metric_keys) + self.quantization(1).dim_overhead


def get_field(record: ConfigRecord, key: str, kind: type[_T]) -> _T:
    """``record[key]`` if present and exactly of type ``kind`` (bool is not an int)."""
    if key not in record:
        raise ProtocolError(f"field {key!r} is missing")
    value = record[key]
    if type(value) is not kind:
        raise ProtocolError(f"field {key!r} must be of type {kind.__name__}")
    return value


# --------------------------------------------------------------------------- the model


def model_record(content: RecordDict) -> tuple[str, ArrayRecord]:
    """The one ArrayRecord of a training instruction: the global model.

    Legacy FitIns carry it as ``fitins.parameters``; message-API strategies as
    their ``arrayrecord_key`` (usually ``arrays``). Secure aggregation needs
    exactly one, since it sums one vector of fixed layout.
    """
    records = content.array_records
    if LEGACY_INS_PARAMETERS in records:
        return LEGACY_INS_PARAMETERS, records[LEGACY_INS_PARAMETERS]
    if len(records) != 1:
        raise ProtocolError(
            f"a training instruction must carry exactly one ArrayRecord, found {len(records)}"
        )
    name = next(iter(records))
    return name, records[name]


def model_hash(record: ArrayRecord) -> bytes:
    """SHA-256 over the global model exactly as it travels (keys, dtypes, shapes, bytes).

    Part of the task hash: a client checks that the model it received is the
    one the session was opened for, so a server cannot train different clients
    on different models inside one session (spec §20.2).
    """
    h = hashlib.sha256(LABEL_PREFIX + b"model")
    h.update(len(record).to_bytes(4, "big"))
    for key, array in record.items():
        for part in (key.encode(), array.dtype.encode(), array.stype.encode(), array.data):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
        h.update(len(array.shape).to_bytes(4, "big"))
        for d in array.shape:
            h.update(int(d).to_bytes(8, "big"))
    return h.digest()


def task_hash(params: SessionParams, model: bytes, *, evaluate: bool = False) -> bytes:
    """The SessionConfig task hash: the session parameters and the model hash.

    An evaluation session (its vector holds the loss and metrics, not the model)
    hashes under its own label, so one session cannot mix training and evaluation
    replies: a client shown the other purpose derives another session id.
    """
    label = b"evaluate" if evaluate else b"task"
    return hashlib.sha256(LABEL_PREFIX + label + params.encode() + model).digest()


def model_layout(record: ArrayRecord) -> tuple[list[np.ndarray], Layout]:
    """The global model's arrays and their layout (shapes and dtypes of the aggregate)."""
    arrays = record.to_numpy_ndarrays()
    if not arrays:
        raise ProtocolError("the global model has no arrays")
    _, layout = flatten(arrays)
    return arrays, layout


# --------------------------------------------------------------------------- vectors


def encode_update(arrays: Sequence[np.ndarray], metrics: Mapping[str, float], weight: int,
                  params: SessionParams, layout: Layout, num_clients: int) -> np.ndarray:
    """One client's update, metrics and weight as its protocol input (unmasked, in Z_R).

    The arrays must have the global model's shapes; each declared metric must
    be a finite number (it is clipped to ``metrics_range``); the weight must be
    an int in ``[1, max_weight]``: a larger one is refused rather than wrapped.
    """
    flat, got = flatten(arrays)
    if got.shapes != layout.shapes:
        raise ConfigError(f"update has shapes {got.shapes}, the model has {layout.shapes}")
    values = []
    for key in params.metric_keys:
        if key not in metrics:
            raise ConfigError(f"training metric {key!r} is declared for secure summing "
                              "but the training function did not report it")
        value = metrics[key]
        if not is_plain_number(value) or not math.isfinite(
                value):
            raise ConfigError(f"training metric {key!r} must be a finite number")
        values.append(float(value) * params.clip / params.metrics_range)
    vector = np.concatenate([flat, np.clip(np.asarray(values, dtype=np.float64),
                                           -params.clip, params.clip)])
    return encode(vector, params.quantization(num_clients), weight=weight)


@dataclass(frozen=True, eq=False)
class DecodedAggregate:
    """The server's view of a finished session: means, weight, nothing per client."""

    arrays: list[np.ndarray]
    metrics: dict[str, float]
    total_weight: int


def decode_aggregate(total: np.ndarray, params: SessionParams, layout: Layout,
                     num_clients: int, num_included: int) -> DecodedAggregate:
    """Weighted means of the model and the declared metrics from the exact sum mod R."""
    decoded = decode_sum(total, params.quantization(num_clients), num_clients=num_included)
    mean = decoded.mean
    arrays = unflatten(mean[: layout.size], layout)
    scale = params.metrics_range / params.clip
    metrics = {key: float(mean[layout.size + i]) * scale
               for i, key in enumerate(params.metric_keys)}
    return DecodedAggregate(arrays, metrics, decoded.total_weight)


def bits_of_range(value: int, name: str) -> int:
    """``log2`` of a power-of-two range given the way Flower's workflow takes it."""
    if not is_plain_int(value) or value < 2 or value & (
            value - 1):
        raise ConfigError(f"{name} must be a power of two >= 2 (got {value!r})")
    bits = value.bit_length() - 1
    if name == "quantization_range" and bits > MAX_QUANTIZATION_BITS:
        raise ConfigError(f"quantization_range must be at most 2**{MAX_QUANTIZATION_BITS}")
    return bits

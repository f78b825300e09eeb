"""What the server and every client of a deployment agree on, and how it is bound (§17.6).

A deployment quantizes each client's update with public parameters (clip range,
bits, weight cap, largest cohort: together they fix the modulus, §10.1) into a
vector whose length is fixed by the model's shapes. If a client quantized with
other parameters than the server decodes with, the sum would decode into a
plausible-looking but wrong model, silently. So every one of them is bound into
the session id: the server puts :func:`task_hash` of the parameters, the array
names and shapes and (optionally) the global model into the
:class:`~secagg.config.SessionConfig`'s task hash, and each client recomputes it
from its own parameters and refuses a session whose config differs
(:func:`check_session`, :class:`ParameterMismatchError`) before any key is made.

Everything here is a pure function of public data; the protocol decisions stay in
:mod:`secagg.client` and :mod:`secagg.server`.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from secagg.checks import require_int
from secagg.config import TASK_HASH_LEN, SessionConfig
from secagg.errors import ConfigError
from secagg.quantize import Layout, QuantizationConfig, error_bound, flatten
from secagg.wire import Writer

__all__ = [
    "AggregationParams",
    "ModelSpec",
    "ParameterMismatchError",
    "check_session",
    "model_digest",
    "split_update",
    "task_hash",
]

#: Domain separation of the deployment's task hash (disjoint from the Flower adapter's
#: ``secagg/v1/flower/`` and from every label of ``secagg.crypto.labels``).
LABEL_PREFIX: Final = b"secagg/v1/deploy/"
#: The model digest when a session is not bound to a global model.
UNBOUND: Final = bytes(32)

#: What a deployment's update may be: arrays in order, or a name -> array mapping
#: (a torch ``state_dict``: tensors are detached and copied to the CPU).
Update = Sequence[Any] | Mapping[str, Any]


class ParameterMismatchError(ConfigError):
    """The session's agreed parameters differ from this client's; nothing was sent.

    Raised by :meth:`DeploymentClient.submit` (and :func:`check_session`) when the
    server opened a session with another modulus, vector length or task hash than
    this client's clip, bits, max_weight, max_clients, array names and shapes
    (and global model, when bound) give: the client refuses before making a key.
    """


@dataclass(frozen=True)
class AggregationParams:
    """The public quantization parameters of a deployment (§10.1), the same on every side.

    ``clip`` bounds each coordinate to ``[-clip, clip]``; ``bits`` is the
    resolution; ``max_weight`` the largest weight a client may declare
    (``1``: unweighted mean); ``max_clients`` the largest cohort the server may
    open a session with. Together they fix the modulus so that no sum can wrap.
    """

    clip: float = 1.0
    bits: int = 16
    max_weight: int = 1
    max_clients: int = 100

    def __post_init__(self) -> None:
        q = self.quantization()  # refuses unusable values with the reason
        object.__setattr__(self, "clip", q.clip)
        object.__setattr__(self, "bits", q.bits)
        object.__setattr__(self, "max_weight", q.max_weight)
        object.__setattr__(self, "max_clients", q.max_clients)

    def quantization(self) -> QuantizationConfig:
        """The :class:`~secagg.quantize.QuantizationConfig` of every session (smallest safe R)."""
        return QuantizationConfig(clip=self.clip, bits=self.bits, max_clients=self.max_clients,
                                  max_weight=self.max_weight)

    @property
    def error_bound(self) -> float:
        """Per-coordinate bound on ``|secure mean - weighted mean of clipped updates|``."""
        return error_bound(self.quantization())

    def encode(self) -> bytes:
        """Canonical bytes, an input of the task hash."""
        q = self.quantization()
        assert q.modulus_bits is not None  # resolved by QuantizationConfig
        w = Writer().raw(struct.pack(">d", q.clip)).u8(q.bits).u64(q.max_weight)
        return w.u32(q.max_clients).u8(q.modulus_bits).getvalue()


@dataclass(frozen=True)
class ModelSpec:
    """The arrays a session aggregates: their names (None for a plain list) and layout."""

    names: tuple[str, ...] | None
    layout: Layout

    def dim(self, params: AggregationParams) -> int:
        """The session's vector length: every scalar plus the weight coordinate, if any."""
        return self.layout.size + params.quantization().dim_overhead

    def encode(self) -> bytes:
        """Names and shapes (not dtypes: every value is quantized from float64 alike)."""
        w = Writer().u8(0 if self.names is None else 1).u32(len(self.layout.shapes))
        for i, shape in enumerate(self.layout.shapes):
            w.var(b"" if self.names is None else self.names[i].encode())
            w.u32(len(shape))
            for d in shape:
                w.u64(d)
        return w.getvalue()


def _as_array(value: Any) -> np.ndarray:
    """An array, or a torch tensor detached and copied to the CPU (torch is not imported)."""
    detach = getattr(value, "detach", None)
    if callable(detach):
        value = detach().cpu().numpy()
    return np.asarray(value)


def split_update(update: Update) -> tuple[tuple[str, ...] | None, list[np.ndarray]]:
    """Names (None for a sequence) and numpy arrays of an update or a model."""
    if isinstance(update, np.ndarray):
        raise ConfigError("an update is a sequence of arrays (or a state_dict), not one array")
    if isinstance(update, Mapping):
        names = tuple(update)
        if not all(isinstance(k, str) for k in names):
            raise ConfigError("state_dict keys must be strings")
        return names, [_as_array(update[k]) for k in names]
    if not isinstance(update, Sequence) or isinstance(update, str | bytes):
        raise ConfigError("an update is a sequence of arrays or a name -> array mapping")
    return None, [_as_array(a) for a in update]


def spec_of(update: Update) -> tuple[ModelSpec, np.ndarray]:
    """The spec of an update or model, and its values as one float64 vector."""
    names, arrays = split_update(update)
    if not arrays:
        raise ConfigError("an update needs at least one array")
    flat, layout = flatten(arrays)
    if layout.size == 0:
        raise ConfigError("the update has no scalars to aggregate")
    return ModelSpec(names, layout), flat


def model_digest(model: Update) -> bytes:
    """SHA-256 of a global model's names, shapes and values (as float64).

    Bound into the task hash when the server binds its model: a client that
    trained from another model (a stale round, or a server showing different
    clients different models) then derives another task hash and refuses.
    The values are hashed as float64, so a float32 model and its float64 copy
    hash alike.
    """
    spec, flat = spec_of(model)
    h = hashlib.sha256(LABEL_PREFIX + b"model")
    h.update(spec.encode())
    h.update(np.ascontiguousarray(flat, dtype="<f8").tobytes())
    return h.digest()


def task_hash(params: AggregationParams, spec: ModelSpec, digest: bytes = UNBOUND) -> bytes:
    """The SessionConfig task hash: parameters, names and shapes, and the model digest."""
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise ConfigError("a model digest is 32 bytes")
    out = hashlib.sha256(LABEL_PREFIX + b"task" + params.encode() + spec.encode() + digest)
    return out.digest()[:TASK_HASH_LEN]


def check_session(config: SessionConfig, params: AggregationParams, spec: ModelSpec,
                  digest: bytes = UNBOUND) -> None:
    """Refuse (ParameterMismatchError) a session this client's update cannot join as agreed.

    The modulus, cohort size and vector length are compared first, so the message
    names what differs; the task hash then covers everything else (clip, names,
    shapes, the global model).
    """
    q = params.quantization()
    if config.modulus != q.modulus:
        raise ParameterMismatchError(
            f"the session's modulus is 2**{config.modulus.bit_length() - 1}, this client's "
            f"parameters give 2**{q.modulus_bits}: bits, max_weight or max_clients differ "
            "from the server's")
    if config.n > params.max_clients:
        raise ParameterMismatchError(
            f"the session has {config.n} clients, more than max_clients="
            f"{params.max_clients}: its sum could wrap around")
    dim = spec.dim(params)
    if config.dim != dim:
        raise ParameterMismatchError(
            f"the session aggregates {config.dim} values, this client's update gives {dim}: "
            "the model shapes or max_weight differ from the server's")
    if config.task_hash != task_hash(params, spec, digest):
        raise ParameterMismatchError(
            "the session's task hash differs from this client's: clip, bits, max_weight, "
            "max_clients, the array names or shapes, or the global model differ from the "
            "server's")


def check_weight(weight: int, params: AggregationParams) -> int:
    """A client's weight as an int in ``[1, max_weight]`` (refused, never wrapped)."""
    return require_int(weight, "weight", 1, params.max_weight)

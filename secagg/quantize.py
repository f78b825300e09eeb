"""Quantization of model updates into Z_R and decoding of their sum (spec §10.1-§10.4).

Secure aggregation works on integer vectors modulo ``R``: masks cancel only in
modular arithmetic, and the server learns only the sum mod ``R``. A client's
float update (Flower's ``NDArrays``: a list of numpy arrays) is therefore

1. flattened into one float64 vector (:func:`flatten`, inverted by :func:`unflatten`),
2. clipped to ``[-c, c]`` and mapped to the levels ``0 .. L`` with ``L = 2**q - 1``
   by unbiased stochastic rounding, multiplied by the client's integer weight
   ``w`` and, for weighted aggregation, followed by ``w`` itself (:func:`encode`),
3. summed mod ``R`` by the protocol, and
4. decoded by the server into the weighted sum and mean (:func:`decode_sum`).

Why the modulus check matters: the sum is only ever known mod ``R``, so a sum
that reaches ``R`` wraps around silently and decodes to garbage that looks like
a valid model. :class:`QuantizationConfig` refuses, at construction, any ``R``
that cannot hold the worst case ``max_clients * max_weight * L``; with a safe
``R`` the modular sum equals the integer sum and decoding is exact up to
quantization.

Error bound: the level ``k`` sent for a clipped value ``x`` satisfies
``|k * step - c - x| < step`` with ``step = 2c / L``, and ``E[k * step - c] = x``
(stochastic rounding is unbiased). A weighted mean of such values is therefore
within one ``step`` of the weighted mean of the clipped inputs, for any number of
clients; :func:`error_bound` returns that bound (plus float64 rounding slack).
"""

from __future__ import annotations

import math
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from secagg.checks import is_int_like, require_int
from secagg.crypto.prg import mask_dtype
from secagg.errors import ConfigError, ProtocolError

MAX_QUANTIZATION_BITS: Final = 32
MAX_MODULUS_BITS: Final = 64
_FLOAT_EPS: Final = float(np.finfo(np.float64).eps)
_NUMERIC_KINDS: Final = frozenset("biuf")
_EXACT_INT: Final = 2**53  # every integer of magnitude <= 2**53 is a float64


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Layout:
    """Shapes and dtypes of the arrays of one update, to undo :func:`flatten`.

    The server needs it to turn the aggregated vector back into arrays; it is
    public (the model architecture), not a secret.
    """

    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.shapes) != len(self.dtypes):
            raise ConfigError("layout needs one dtype per shape")
        for shape in self.shapes:
            if any(not is_int_like(d) or int(d) < 0 for d in shape):
                raise ConfigError("layout shapes must be tuples of non-negative ints")

    @property
    def size(self) -> int:
        """Total number of scalars, the length of the flat vector."""
        return sum(math.prod(shape) for shape in self.shapes)


def _check_numeric(dtype: np.dtype) -> None:
    """Only dtypes that float64 represents exactly can round-trip through a flat vector."""
    if dtype.kind not in _NUMERIC_KINDS:
        raise ConfigError("update arrays must have a bool, integer or float dtype")
    if dtype.kind == "f" and dtype.itemsize > 8:
        raise ConfigError("float dtypes wider than float64 are not supported")


def flatten(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, Layout]:
    """Concatenate an update's arrays into one float64 vector and remember the layout.

    NaN and inf are refused: clipping would silently turn inf into ``±c`` and
    NaN has no level at all, and either usually means a diverged client whose
    update should not be aggregated. 64-bit integers beyond 2**53 are refused
    too, since float64 cannot hold them and the round trip would not be exact.
    """
    if isinstance(arrays, np.ndarray):
        raise ConfigError("update must be a sequence of arrays, not a single array")
    parts: list[np.ndarray] = []
    shapes: list[tuple[int, ...]] = []
    dtypes: list[str] = []
    for array in arrays:
        a = np.asarray(array)
        _check_numeric(a.dtype)
        flat = a.astype(np.float64).ravel()
        if a.dtype.kind == "f":
            if not np.isfinite(flat).all():
                raise ConfigError("update contains NaN or inf")
        elif (
            a.dtype.kind in "iu"
            and a.dtype.itemsize == 8
            and a.size
            and (int(a.max()) > _EXACT_INT or int(a.min()) < -_EXACT_INT)
        ):
            raise ConfigError("64-bit integers beyond 2**53 cannot be represented exactly")
        parts.append(flat)
        shapes.append(tuple(int(d) for d in a.shape))
        dtypes.append(a.dtype.str)
    vector = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)
    return vector, Layout(tuple(shapes), tuple(dtypes))


def _int_range(dtype: np.dtype) -> tuple[float, float]:
    """Range an integer dtype can take from float64 without overflow (within ±2**53)."""
    if dtype.kind == "b":
        return 0.0, 1.0
    info = np.iinfo(dtype)
    return float(max(int(info.min), -_EXACT_INT)), float(min(int(info.max), _EXACT_INT))


def unflatten(vector: np.ndarray, layout: Layout) -> list[np.ndarray]:
    """Split a flat vector back into arrays of the layout's shapes and dtypes.

    The exact inverse of :func:`flatten`. Integer and bool arrays are rounded to
    the nearest integer and saturated to the dtype's range first, so a decoded
    (non-integral) mean maps to the closest representable value instead of
    being truncated towards zero or wrapping around.
    """
    v = np.asarray(vector)
    if v.ndim != 1 or v.size != layout.size:
        raise ConfigError("vector length does not match the layout")
    out: list[np.ndarray] = []
    start = 0
    for shape, dtype_str in zip(layout.shapes, layout.dtypes, strict=True):
        dtype = np.dtype(dtype_str)
        _check_numeric(dtype)
        n = math.prod(shape)
        chunk = v[start : start + n]
        start += n
        if dtype.kind in "biu":
            chunk = np.rint(np.clip(chunk, *_int_range(dtype)))
        out.append(chunk.astype(dtype).reshape(shape))
    return out


# --------------------------------------------------------------------------- config


def safe_modulus_bits(*, bits: int, max_clients: int, max_weight: int = 1) -> int:
    """Smallest ``log2 R`` for which no sum of ``max_clients`` contributions wraps.

    Every coordinate of a sum is at most ``max_clients * max_weight * (2**bits - 1)``
    and the weight coordinate at most ``max_clients * max_weight`` (never larger,
    since ``2**bits - 1 >= 1``), so ``R = 2**k`` is safe iff ``2**k`` exceeds the
    first, i.e. ``k >= worst.bit_length()``. Exact integer arithmetic: a float
    ``log2`` would round the wrong way near powers of two. The result may exceed
    64; :class:`QuantizationConfig` refuses such configurations.
    """
    q = require_int(bits, "bits", 1, MAX_QUANTIZATION_BITS)
    n = require_int(max_clients, "max_clients", 1)
    w = require_int(max_weight, "max_weight", 1)
    worst = n * w * ((1 << q) - 1)
    return worst.bit_length()


def _is_normal(value: float) -> bool:
    """Finite and not subnormal (nor zero): float arithmetic on it keeps full precision."""
    return math.isfinite(value) and abs(value) >= sys.float_info.min


def _check_derived(clip: float, levels: int, max_weight_total: int) -> None:
    """Refuse a clip whose derived quantities are not finite, normal floats (§10.1).

    A clip near the float64 maximum overflows ``2c`` (every value encodes to level
    0 and the decoded mean is NaN, silently); a subnormal clip makes the step (and
    :func:`error_bound`) zero or imprecise, so every update decodes to ``-c``.
    Checked: ``2c``, the step ``2c / L``, the error bound, and the largest
    intermediate of :func:`decode_sum`, ``2c`` times the largest total weight.
    """
    two_c = 2.0 * clip
    step = two_c / levels
    derived = {
        "2 * clip": two_c,
        "the quantization step 2 * clip / (2**bits - 1)": step,
        "the error bound": step + 16.0 * _FLOAT_EPS * clip,
        "2 * clip * max_clients * max_weight": two_c * max_weight_total,
    }
    for name, value in derived.items():
        if not _is_normal(value):
            raise ConfigError(
                f"clip={clip!r} is unusable: {name} is {value!r}, not a finite normal float; "
                "choose a clip such as 1.0 (inputs are scaled to [-clip, clip])"
            )


@dataclass(frozen=True)
class QuantizationConfig:
    """Public parameters shared by every client and the server of one session.

    ``modulus_bits=None`` picks the smallest safe modulus; after construction
    ``modulus_bits`` always holds the resolved ``int``. A modulus too small for
    the worst-case sum is refused here, before any data is encoded.
    """

    clip: float
    bits: int
    max_clients: int
    max_weight: int = 1
    modulus_bits: int | None = None

    def __post_init__(self) -> None:
        clip = self.clip
        if (
            isinstance(clip, bool | np.bool_)
            or not isinstance(clip, int | float | np.integer | np.floating)
            or not math.isfinite(float(clip))
            or float(clip) <= 0.0
        ):
            raise ConfigError("clip must be a finite number > 0")
        object.__setattr__(self, "clip", float(clip))
        q = require_int(self.bits, "bits", 1, MAX_QUANTIZATION_BITS)
        n = require_int(self.max_clients, "max_clients", 1)
        w = require_int(self.max_weight, "max_weight", 1)
        object.__setattr__(self, "bits", q)
        object.__setattr__(self, "max_clients", n)
        object.__setattr__(self, "max_weight", w)
        _check_derived(float(clip), (1 << q) - 1, n * w)
        needed = safe_modulus_bits(bits=q, max_clients=n, max_weight=w)
        if needed > MAX_MODULUS_BITS:
            raise ConfigError(
                f"worst-case sum needs a {needed}-bit modulus, more than the supported "
                f"{MAX_MODULUS_BITS}; lower bits, max_clients or max_weight"
            )
        if self.modulus_bits is None:
            object.__setattr__(self, "modulus_bits", needed)
            return
        k = require_int(self.modulus_bits, "modulus_bits", 1, MAX_MODULUS_BITS)
        if k < needed:
            raise ConfigError(
                f"modulus too small: the worst-case sum would wrap around; "
                f"modulus_bits must be at least {needed}"
            )
        object.__setattr__(self, "modulus_bits", k)

    @property
    def modulus(self) -> int:
        """``R = 2**modulus_bits``."""
        assert self.modulus_bits is not None  # resolved in __post_init__
        return 1 << self.modulus_bits

    @property
    def levels(self) -> int:
        """Highest quantization level ``L = 2**bits - 1``."""
        return (1 << self.bits) - 1

    @property
    def weighted(self) -> bool:
        """Whether clients send a weight coordinate (``max_weight > 1``)."""
        return self.max_weight > 1

    @property
    def dim_overhead(self) -> int:
        """Extra coordinates per encoded vector: 1 for the weight when weighted, else 0."""
        return 1 if self.weighted else 0

    @property
    def dtype(self) -> np.dtype:
        """Mask/vector dtype for this modulus (see :func:`dtype_for_modulus`)."""
        return dtype_for_modulus(self.modulus)


def dtype_for_modulus(modulus: int) -> np.dtype:
    """``uint32`` when ``R <= 2**32``, else ``uint64``: the narrowest dtype holding Z_R.

    Kept as an alias of :func:`secagg.crypto.prg.mask_dtype`, the one definition.
    """
    return mask_dtype(modulus)


def default_config(
    max_clients: int, *, clip: float = 1.0, bits: int = 16, max_weight: int = 1
) -> QuantizationConfig:
    """A config with the smallest safe modulus; the usual choice."""
    return QuantizationConfig(
        clip=clip, bits=bits, max_clients=max_clients, max_weight=max_weight, modulus_bits=None
    )


def quantization_step(config: QuantizationConfig) -> float:
    """Width of one level in input units: ``2c / (2**bits - 1)``."""
    return 2.0 * config.clip / config.levels


def error_bound(config: QuantizationConfig) -> float:
    """Bound on ``|decoded mean - weighted mean of clipped inputs|``, per coordinate.

    Each client's level is within one step of its clipped value, so any weighted
    mean of them is too, whatever the number of clients. The small extra term
    covers float64 rounding in the decoder (a few ulps of ``c``), which is far
    below one step for every ``bits <= 32``.
    """
    return quantization_step(config) + 16.0 * _FLOAT_EPS * config.clip


# --------------------------------------------------------------------------- encode


def _default_rng() -> np.random.Generator:
    """A fresh OS-seeded generator: stochastic rounding noise is not key material."""
    return np.random.default_rng(secrets.randbits(128))


def encode(
    update: np.ndarray,
    config: QuantizationConfig,
    *,
    weight: int = 1,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Quantize one client's flat update into Z_R (unmasked).

    The result has ``len(update) + config.dim_overhead`` elements of
    ``config.dtype``: ``weight * level`` per coordinate, then ``weight`` when the
    config is weighted, so the server can divide by the total weight.

    Stochastic rounding (round up with probability equal to the fractional part)
    makes each level an unbiased estimate of the clipped value, so rounding
    errors average out across clients instead of accumulating as a bias. Its
    randomness is not secret; ``rng`` exists for reproducible simulations and
    defaults to a fresh OS-seeded generator.
    """
    if not isinstance(config, QuantizationConfig):
        raise ConfigError("config must be a QuantizationConfig")
    w = require_int(weight, "weight", 1, config.max_weight)
    x = np.asarray(update)
    if x.ndim != 1:
        raise ConfigError("update must be a one-dimensional vector")
    if x.dtype.kind not in "iuf":
        raise ConfigError("update must have an integer or float dtype")
    x = x.astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        raise ConfigError("update contains NaN or inf")
    if rng is None:
        rng = _default_rng()
    elif not isinstance(rng, np.random.Generator):
        raise ConfigError("rng must be a numpy Generator")

    c = config.clip
    levels = float(config.levels)
    # (x + c) / (2c) lies in [0, 1] for clipped x (rounding is monotone), so y is
    # in [0, L]; the final clip only guards the invariant the bound relies on.
    y = (np.clip(x, -c, c) + c) / (2.0 * c) * levels
    np.clip(y, 0.0, levels, out=y)
    low = np.floor(y)
    level = low + (rng.random(y.shape[0]) < (y - low))
    quantized = level.astype(np.uint64) * np.uint64(w)

    out = np.empty(x.shape[0] + config.dim_overhead, dtype=config.dtype)
    out[: x.shape[0]] = quantized
    if config.weighted:
        out[-1] = w
    return out


# --------------------------------------------------------------------------- decode


@dataclass(frozen=True, eq=False)
class DecodedSum:
    """What the server learns from the aggregate.

    ``sum`` is ``Σ w_u x_u`` (weight coordinate removed), ``total_weight`` is
    ``Σ w_u`` (the number of clients when unweighted) and ``mean`` is
    ``sum / total_weight``, the FedAvg update.
    """

    sum: np.ndarray
    total_weight: int
    mean: np.ndarray


def decode_sum(total: np.ndarray, config: QuantizationConfig, *, num_clients: int) -> DecodedSum:
    """Turn the unmasked sum mod R of ``num_clients`` encodings into floats.

    With ``S = Σ w_u k_u`` and ``W = Σ w_u``, the weighted sum of the values is
    ``S * step - c * W``. The aggregate is checked against what honest,
    non-overflowing contributions can produce (``num_clients <= W <=
    num_clients * max_weight`` and every coordinate ``<= W * L``); anything else
    means a corrupted or malicious aggregate, which is refused rather than
    decoded into a plausible-looking model.
    """
    if not isinstance(config, QuantizationConfig):
        raise ConfigError("config must be a QuantizationConfig")
    n = require_int(num_clients, "num_clients", 1, config.max_clients)
    t = np.asarray(total)
    if t.ndim != 1 or t.dtype.kind not in "iu":
        raise ConfigError("total must be a one-dimensional integer vector")
    if t.shape[0] < config.dim_overhead:
        raise ProtocolError("aggregate is shorter than its weight coordinate")
    if t.size and (int(t.min()) < 0 or int(t.max()) >= config.modulus):
        raise ProtocolError("aggregate has an element outside Z_R")
    t = t.astype(np.uint64)

    if config.weighted:
        total_weight = int(t[-1])
        t = t[:-1]
        if not n <= total_weight <= n * config.max_weight:
            raise ProtocolError("aggregate weight is inconsistent with the number of clients")
    else:
        total_weight = n
    if total_weight <= 0:  # unreachable with n >= 1; kept as the division guard
        raise ProtocolError("total weight must be positive")
    if t.size and int(t.max()) > total_weight * config.levels:
        raise ProtocolError("aggregate exceeds what the contributions can sum to")

    step = quantization_step(config)
    weighted_sum = t.astype(np.float64) * step - config.clip * total_weight
    return DecodedSum(sum=weighted_sum, total_weight=total_weight, mean=weighted_sum / total_weight)

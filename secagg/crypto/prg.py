"""The mask PRG: expand a 32-byte seed into a uniform vector in Z_R^m (spec §4.6).

Every mask in the protocol (self masks PRG(b_u), pairwise masks PRG(s_uv)) comes
from :func:`expand_mask`. Design choices, and why:

* **Key derivation.** The stream-cipher key is ``HKDF(seed, MASK_PRG_KEY,
  context)``. The caller builds ``context`` with
  :func:`secagg.crypto.kdf.encode_context` from the session id, the purpose
  (self or pairwise mask) and the vector index, so a seed reused across
  sessions, purposes or vectors still never yields the same keystream. Because
  every key is single-use, the IV / nonce is fixed at all zeros (spec §4.6 argues
  why a zero IV is safe under single-use keys).
* **Speed.** The keystream is written by OpenSSL (``update_into``) straight into
  the output array's bytes, in 1 MiB chunks read from one shared, immutable
  all-zero buffer: no per-element Python and no large temporary. Measured on the
  reference machine, 1 MiB chunks are within ~1% of one whole-buffer call while
  keeping memory bounded for long vectors.
* **Exact distribution.** For R a power of two the low bits of each word are
  used directly. For any other R the words are masked to ``R.bit_length()``
  bits and rejection-sampled (values >= R are dropped, and the keystream simply
  continues), so the output is exactly uniform: no modulo bias. The accept /
  compact step is one fused, branch-free numba pass
  (:func:`secagg.kernels.arith.compact_below`), 2-9x faster than numpy's
  mask, compare and boolean-compress passes.

Output definition (normative, reproducible across platforms): read the
keystream as consecutive little-endian words of ``mask_dtype(R)`` width, AND
each word with ``2**R.bit_length() - 1`` (R not a power of two) or ``R - 1``
(R a power of two), and output the first ``length`` words that are ``< R``, in
keystream order. The chunking used internally does not change this result.

PRG versions (spec §4.6, §4.6.1). Version 1 is the definition above. Version 2
("chunked") exists so that any coordinate range of a mask can be regenerated
alone for *every* R, which is what unmasking on workers needs (§8.5): for R a
power of two it is version 1 exactly (output word i is already keystream bytes
[i w, (i + 1) w), so ranges are free); for other R the coordinates are cut into
chunks of :data:`PRG_CHUNK` = 2**17 values, and chunk j is rejection-sampled from
its own keystream: key ``HKDF(seed, MASK_PRG_CHUNKED_KEY, context)`` (one per
mask, a label of its own so no v2 stream ever equals a v1 stream), chunk index j
in the cipher's IV (AES-CTR: initial counter block ``j * 2**64``; ChaCha20:
nonce j). Rejection runs inside a chunk only, so chunk j's values do not depend
on any other chunk and a range [a, b) costs at most one chunk of extra keystream.
Why 2**17: each chunk pays a fixed setup (a cipher context and the Python around
one keystream call and one compaction: about 9 us measured) on top of about 110 us
of keystream and compaction per 2**17 values, so at R = 1000003, m = 10**6
(aes128-ctr, best of 100, one run) chunks of 2**16, 2**17, 2**18 values cost 1.20,
1.09, 1.04 times version 1 (``python -m bench.primitives`` reports the ratio);
2**17 (512 KiB of uint32, within L2) keeps that within 10 % while a
10**7-coordinate vector still splits into 77 ranges for workers.
"""

from __future__ import annotations

import enum
import sys

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from secagg.checks import is_int_like
from secagg.crypto.kdf import hkdf
from secagg.crypto.labels import Label
from secagg.errors import ConfigError, CryptoError
from secagg.kernels.arith import compact_below

__all__ = ["PRG_CHUNK", "PRG_VERSIONS", "SEED_LEN", "StreamCipher", "check_prg_version",
           "expand_mask", "expand_mask_range", "mask_dtype", "ranges_addressable"]

#: Length in bytes of every mask seed (b_u and s_uv).
SEED_LEN = 32

_CHUNK = 1 << 20  # bytes of keystream per update_into call
# Immutable, so sharing it between threads is safe; slices are zero-copy.
_ZEROS = memoryview(bytes(_CHUNK))
_BIG_ENDIAN_HOST = sys.byteorder == "big"

#: The PRG versions this implementation knows (spec §4.6): 1 (one stream per mask) and
#: 2 (chunked: one stream per chunk of PRG_CHUNK values where R is not a power of two).
PRG_VERSIONS = (1, 2)
#: Values per chunk of PRG version 2 (spec §4.6.1); normative, part of the output.
PRG_CHUNK = 1 << 17
#: Keystream bytes one chunk may consume (ChaCha20's 2**32 blocks of 64 bytes): a chunk
#: of 2**17 values, each word accepted with probability >= 1/2, needs more with
#: probability below 2**-(2**30); past it, expansion fails rather than share keystream.
_CHUNK_STREAM_LIMIT = 1 << 38


class StreamCipher(enum.Enum):
    """Which stream cipher expands the seed; the value is a stable wire name."""

    AES128_CTR = "aes128-ctr"
    CHACHA20 = "chacha20"


_KEY_LEN = {StreamCipher.AES128_CTR: 16, StreamCipher.CHACHA20: 32}
#: Keystream bytes per counter step: one AES block, one ChaCha20 block.
_BLOCK = {StreamCipher.AES128_CTR: 16, StreamCipher.CHACHA20: 64}


def mask_dtype(modulus: int) -> np.dtype:
    """The unsigned dtype that holds values mod ``modulus``.

    uint32 when ``modulus <= 2**32`` (half the memory and bandwidth of uint64),
    uint64 up to ``2**64``. Larger or degenerate moduli are refused.
    """
    if not is_int_like(modulus):
        raise ConfigError("modulus must be an integer")
    modulus = int(modulus)
    if modulus < 2 or modulus > 1 << 64:
        raise ConfigError("modulus must be in [2, 2**64]")
    return np.dtype(np.uint32) if modulus <= 1 << 32 else np.dtype(np.uint64)


def check_prg_version(version: object) -> int:
    """``version`` as an int if this implementation knows it, else ConfigError (§4.6)."""
    if not is_int_like(version) or int(version) not in PRG_VERSIONS:
        known = ", ".join(str(v) for v in PRG_VERSIONS)
        raise ConfigError(f"unknown PRG version {version!r} (known: {known})")
    return int(version)


def ranges_addressable(modulus: int, version: int) -> bool:
    """Whether any coordinate range of a mask can be regenerated alone (§4.6, §8.5):
    always with a power-of-two R, else only with the chunked PRG (version 2)."""
    return modulus & (modulus - 1) == 0 or version >= 2


def _key(seed: bytes, context: bytes, cipher: StreamCipher, label: Label) -> bytes:
    return hkdf(seed, label, context, length=_KEY_LEN[cipher])


def _cipher_at(key: bytes, cipher: StreamCipher, iv: int) -> CipherContext:
    """A fresh keystream generator: AES-CTR from counter block ``iv`` (128-bit
    big-endian), or ChaCha20 with block counter 0 and nonce ``iv`` (96-bit big-endian)."""
    if cipher is StreamCipher.AES128_CTR:
        return Cipher(algorithms.AES(key), modes.CTR(iv.to_bytes(16, "big"))).encryptor()
    # cryptography's ChaCha20 takes a 16-byte nonce: 32-bit little-endian counter ||
    # 96-bit nonce
    return Cipher(algorithms.ChaCha20(key, bytes(4) + iv.to_bytes(12, "big")),
                  mode=None).encryptor()


def _encryptor(seed: bytes, context: bytes, cipher: StreamCipher,
               counter: int = 0) -> CipherContext:
    """A fresh keystream generator keyed from (seed, context); never reused across calls.

    ``counter`` starts the keystream at block ``counter`` (0: the stream of §4.6);
    a worker regenerating a range of a mask starts there instead of at 0.
    """
    key = _key(seed, context, cipher, Label.MASK_PRG_KEY)
    if cipher is StreamCipher.AES128_CTR:
        # the 16-byte IV is the whole big-endian counter block, zero at the start
        return _cipher_at(key, cipher, counter)
    # ChaCha20: the block counter moves, the nonce stays zero
    return Cipher(algorithms.ChaCha20(key, counter.to_bytes(4, "little") + bytes(12)),
                  mode=None).encryptor()


def _fill_words(enc: CipherContext, words: np.ndarray) -> None:
    """Overwrite ``words`` (C-contiguous) with the next keystream bytes, as little-endian words."""
    buf = words.view(np.uint8).reshape(-1).data
    total = len(buf)
    for start in range(0, total, _CHUNK):
        stop = min(total, start + _CHUNK)
        enc.update_into(_ZEROS[: stop - start], buf[start:stop])
    if _BIG_ENDIAN_HOST:  # pragma: no cover - exercised only on big-endian hosts
        words.byteswap(inplace=True)


def _check_key(seed: bytes, context: bytes, cipher: StreamCipher) -> None:
    """Refuse a malformed seed, context or cipher before any keystream is made."""
    if not isinstance(seed, bytes | bytearray) or len(seed) != SEED_LEN:
        raise CryptoError(f"mask seed must be exactly {SEED_LEN} bytes")
    if not isinstance(context, bytes | bytearray):
        raise ConfigError("context must be bytes (build it with encode_context)")
    if not isinstance(cipher, StreamCipher):
        raise ConfigError("cipher must be a StreamCipher")


def _output(out: np.ndarray | None, dtype: np.dtype, length: int) -> np.ndarray:
    """A fresh output array, or the caller's ``out`` once it is checked to fit."""
    if out is None:
        return np.empty(length, dtype=dtype)
    _check_out(out, dtype, length)
    return out


def _keep_low_bits(out: np.ndarray, modulus: int, dtype: np.dtype) -> None:
    """Reduce keystream words mod a power-of-two ``modulus`` (exactly uniform), in place."""
    if modulus != 1 << (8 * dtype.itemsize):
        np.bitwise_and(out, dtype.type(modulus - 1), out=out)


def _check_out(out: np.ndarray, dtype: np.dtype, length: int) -> None:
    """Refuse an output buffer that would be silently reinterpreted or copied."""
    if not isinstance(out, np.ndarray):
        raise ConfigError("out must be a numpy array")
    if out.dtype != dtype:
        raise ConfigError(f"out has dtype {out.dtype}, expected {dtype} for this modulus")
    if out.ndim != 1 or out.shape[0] != length:
        raise ConfigError(f"out has shape {out.shape}, expected ({length},)")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ConfigError("out must be C-contiguous and writeable")


def expand_mask(
    seed: bytes,
    context: bytes,
    length: int,
    modulus: int,
    *,
    cipher: StreamCipher = StreamCipher.AES128_CTR,
    version: int = 1,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Expand ``seed`` into ``length`` independent uniform values in ``[0, modulus)``.

    ``context`` binds the keystream to one use (see the module docstring); it
    should come from :func:`secagg.crypto.kdf.encode_context`. ``version`` is the
    PRG version of the session (§4.6: 1, or 2 for the chunked expansion). If ``out``
    is given it must be a 1-D C-contiguous array of ``mask_dtype(modulus)`` and
    length ``length``; it is filled in place and returned (lets the caller
    reuse one scratch buffer per worker thread).
    """
    _check_key(seed, context, cipher)
    version = check_prg_version(version)
    if not is_int_like(length) or length < 0:
        raise ConfigError("length must be a non-negative integer")
    length = int(length)
    dtype = mask_dtype(modulus)
    modulus = int(modulus)
    out = _output(out, dtype, length)
    if length == 0:
        return out
    if version == 2 and modulus & (modulus - 1):
        _chunked_fill(bytes(seed), bytes(context), 0, out, modulus, cipher)
        return out

    enc = _encryptor(bytes(seed), bytes(context), cipher)
    _fill_words(enc, out)

    if modulus & (modulus - 1) == 0:  # power of two: low bits are exactly uniform
        _keep_low_bits(out, modulus, dtype)
        return out

    _rejection_fill(enc, out, modulus, dtype)
    return out


def expand_mask_range(
    seed: bytes,
    context: bytes,
    start: int,
    stop: int,
    modulus: int,
    *,
    cipher: StreamCipher = StreamCipher.AES128_CTR,
    version: int = 1,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Positions ``[start, stop)`` of ``expand_mask(seed, context, L, modulus, version=...)``
    for any ``L >= stop``, without generating the keystream of the positions before.

    A power-of-two ``modulus`` (either version): output word i is keystream bytes
    ``[i * w, (i + 1) * w)`` (w the word width), so the stream cipher starts at
    the block holding ``start * w`` (spec §4.6: AES-CTR's counter block, ChaCha20's
    block counter) and skips the bytes before it. Other moduli need version 2: each
    chunk the range meets is expanded from its own stream (§4.6.1), from the chunk's
    start (at most one chunk of extra keystream when ``start`` is not chunk-aligned).
    With version 1, rejection sampling makes positions data-dependent, and this is
    refused (ConfigError). Lets workers regenerate one coordinate range of every mask
    (spec §8.5).
    """
    _check_key(seed, context, cipher)
    version = check_prg_version(version)
    if not (is_int_like(start) and is_int_like(stop)) or not 0 <= start <= stop:
        raise ConfigError("a mask range needs integers 0 <= start <= stop")
    dtype = mask_dtype(modulus)
    modulus = int(modulus)
    if not ranges_addressable(modulus, version):
        raise ConfigError("a mask range needs a power-of-two modulus or PRG version 2: "
                          "with version 1, rejection sampling makes positions "
                          "data-dependent for other moduli")
    start, stop = int(start), int(stop)
    out = _output(out, dtype, stop - start)
    if stop == start:
        return out
    if modulus & (modulus - 1):
        _chunked_fill(bytes(seed), bytes(context), start, out, modulus, cipher)
        return out
    counter, skip = divmod(start * dtype.itemsize, _BLOCK[cipher])
    if cipher is StreamCipher.CHACHA20 and counter + 1 + (stop - start) * dtype.itemsize \
            // _BLOCK[cipher] >= 1 << 32:
        raise ConfigError("mask range beyond ChaCha20's 32-bit block counter")
    enc = _encryptor(bytes(seed), bytes(context), cipher, counter)
    if skip:
        enc.update(bytes(skip))
    _fill_words(enc, out)
    _keep_low_bits(out, modulus, dtype)
    return out


def _chunked_fill(seed: bytes, context: bytes, start: int, out: np.ndarray, modulus: int,
                  cipher: StreamCipher) -> None:
    """Positions ``[start, start + len(out))`` of the chunked expansion (§4.6.1), R not a
    power of two: chunk j (values ``[j C, (j + 1) C)``) is the first values below R of
    its own keystream (``_cipher_at(key, cipher, iv)`` with the chunk's IV), so each
    chunk is computed alone; a range starting inside a chunk computes that chunk's
    head and drops it.

    Speed: a chunk's keystream is written straight into ``out`` together with the
    words its rejections are expected to need (plus a margin), spilling into the next
    chunk's slots, which that chunk overwrites next; so one keystream call and one
    compaction usually finish a chunk, and only a short last chunk or an unlucky one
    needs a refill round.
    """
    key = _key(seed, context, cipher, Label.MASK_PRG_CHUNKED_KEY)
    shift = 64 if cipher is StreamCipher.AES128_CTR else 0  # AES: j in the top 64 bits
    dtype = out.dtype
    stop = start + out.shape[0]
    accept = modulus / float(1 << modulus.bit_length())
    rejects = PRG_CHUNK * (1.0 - accept) / accept  # expected per chunk
    # rare rejections (R just below 2^w): no spill, _rejection_fill's max check is cheaper
    spill = int(rejects * 1.02) + 256 if rejects >= 0.5 else 0
    scratch = np.empty(_CHUNK // dtype.itemsize, dtype)  # refills: at most 1 MiB each
    for j in range(start // PRG_CHUNK, -(-stop // PRG_CHUNK)):
        a, b = max(start, j * PRG_CHUNK), min(stop, (j + 1) * PRG_CHUNK)
        enc = _cipher_at(key, cipher, j << shift)
        head = a - j * PRG_CHUNK
        if head:
            target = np.empty(b - j * PRG_CHUNK, dtype)
            region = target
        else:
            target = out[a - start : b - start]
            region = out[a - start : min(out.shape[0], b - start + spill)]
        _fill_words(enc, region)
        _rejection_fill(enc, target, modulus, dtype, _CHUNK_STREAM_LIMIT, scratch, region)
        if head:
            out[a - start : b - start] = target[head:]


def _rejection_fill(enc: CipherContext, out: np.ndarray, modulus: int, dtype: np.dtype,
                    limit: int | None = None, scratch: np.ndarray | None = None,
                    region: np.ndarray | None = None) -> None:
    """Turn keystream words already in ``out`` into uniform values < ``modulus``.

    Each word is masked to ``modulus.bit_length()`` bits, so at least half of
    them are accepted; accepted values are compacted in order (one fused numba
    pass), and rejected slots are refilled from the continuing keystream in
    batches until ``out`` is full. When rejections are expected to be rare
    (R just below a power of two, e.g. 2**32 - 5 or 2**31 - 1), a cheap
    ``max`` check usually shows that nothing needs compacting. ``limit``: the most
    keystream bytes the stream may give in all (a chunk's reserve, §4.6.1), else
    CryptoError; ``scratch``: a buffer for the refills, reused when large enough;
    ``region``: the keystream words when they run past ``out`` (an array that starts
    with ``out``'s memory and is longer; its words past ``out`` come next in the stream
    and are free to overwrite).
    """
    bits = modulus.bit_length()
    word_mask = (1 << bits) - 1
    reject_rate = 1.0 - modulus / float(1 << bits)
    if region is not None and region.shape[0] > out.shape[0]:
        filled = min(out.shape[0], compact_below(region, word_mask, modulus))
    elif reject_rate * out.shape[0] < 0.5:
        if bits < 8 * dtype.itemsize:
            np.bitwise_and(out, dtype.type(word_mask), out=out)
        if int(out.max()) < modulus:
            filled = out.shape[0]
        else:
            filled = compact_below(out, word_mask, modulus)
    else:
        filled = compact_below(out, word_mask, modulus)
    max_words = _CHUNK // dtype.itemsize
    drawn = out.nbytes if region is None else region.nbytes
    while filled < out.shape[0]:
        need = out.shape[0] - filled
        draw = min(max_words, int(need / (1.0 - reject_rate) * 1.05) + 64)
        drawn += draw * dtype.itemsize
        if limit is not None and drawn > limit:  # pragma: no cover - probability < 2**-(2**30)
            raise CryptoError("a PRG chunk ran past its keystream reserve")
        if scratch is None or scratch.shape[0] < draw:
            scratch = np.empty(draw, dtype=dtype)
        batch = scratch[:draw]
        _fill_words(enc, batch)
        take = min(need, compact_below(batch, word_mask, modulus))
        out[filled : filled + take] = batch[:take]
        filled += take

"""Tests for the mask PRG: known answers, exact distribution, buffer contract."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from secagg.crypto import prg
from secagg.crypto.kdf import encode_context
from secagg.crypto.labels import Label
from secagg.crypto.prg import StreamCipher, expand_mask, mask_dtype
from secagg.errors import ConfigError, CryptoError

SEED = bytes(range(32))
CTX = encode_context(b"session-0123", "self-mask", 0)


def _reference_key(seed: bytes, context: bytes, length: int) -> bytes:
    """The PRG key computed straight from `cryptography`, not through secagg.crypto.kdf."""
    info = Label.MASK_PRG_KEY.value + b"|" + context
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(seed)


def _reference_keystream(seed: bytes, context: bytes, nbytes: int, cipher: StreamCipher) -> bytes:
    if cipher is StreamCipher.AES128_CTR:
        key = _reference_key(seed, context, 16)
        enc = Cipher(algorithms.AES(key), modes.CTR(b"\x00" * 16)).encryptor()
    else:
        key = _reference_key(seed, context, 32)
        enc = Cipher(algorithms.ChaCha20(key, b"\x00" * 16), mode=None).encryptor()
    return enc.update(b"\x00" * nbytes) + enc.finalize()


def _reference_mask(
    seed: bytes, context: bytes, length: int, modulus: int, cipher: StreamCipher
) -> np.ndarray:
    """Independent vectorised implementation of the normative output definition."""
    dtype = mask_dtype(modulus)
    le = dtype.newbyteorder("<")
    power_of_two = modulus & (modulus - 1) == 0
    bits = modulus.bit_length() - (1 if power_of_two else 0)
    mask = (1 << bits) - 1
    # Enough words that fewer than `length` acceptances is astronomically unlikely.
    nwords = 3 * length + 1024
    words = np.frombuffer(
        _reference_keystream(seed, context, nwords * dtype.itemsize, cipher), dtype=le
    )
    words = (words & dtype.type(mask)).astype(dtype)
    accepted = words if power_of_two else words[words < dtype.type(modulus)]
    assert accepted.shape[0] >= length
    return accepted[:length]


# --- known answers ---------------------------------------------------------------------------


def test_nist_sp800_38a_f51_ctr_aes128_encrypt() -> None:
    """Our keystream plumbing (chunked update_into) reproduces NIST SP 800-38A F.5.1."""
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    counter = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    plaintext = bytes.fromhex(
        "6bc1bee22e409f96e93d7e117393172a"
        "ae2d8a571e03ac9c9eb76fac45af8e51"
        "30c81c46a35ce411e5fbc1191a0a52ef"
        "f69f2445df4f9b17ad2b417be66c3710"
    )
    ciphertext = bytes.fromhex(
        "874d6191b620e3261bef6864990db6ce"
        "9806f66b7970fdff8617187bb9fffdff"
        "5ae4df3edbd5d35e5b4f09020db03eab"
        "1e031dda2fbe03d1792170a0f3009cee"
    )
    enc = Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor()
    keystream = np.empty(16, dtype=np.uint32)  # 64 bytes
    prg._fill_words(enc, keystream)
    got = bytes(a ^ b for a, b in zip(keystream.view(np.uint8).tobytes(), plaintext, strict=True))
    assert got == ciphertext


@pytest.mark.parametrize("cipher", list(StreamCipher))
@pytest.mark.parametrize("modulus", [2**32, 2**64, 2**16, 2**8, 2, 7, 1000003, 2**32 - 5, 3 << 30])
def test_matches_independent_reference(cipher: StreamCipher, modulus: int) -> None:
    length = 5000
    got = expand_mask(SEED, CTX, length, modulus, cipher=cipher)
    assert got.dtype == mask_dtype(modulus)
    np.testing.assert_array_equal(got, _reference_mask(SEED, CTX, length, modulus, cipher))


def test_raw_words_equal_aes_ctr_keystream() -> None:
    """R = 2**32: the output is exactly the AES-128-CTR keystream as little-endian uint32."""
    length = 1000
    ks = _reference_keystream(SEED, CTX, 4 * length, StreamCipher.AES128_CTR)
    expected = np.frombuffer(ks, dtype="<u4").astype(np.uint32)
    np.testing.assert_array_equal(expand_mask(SEED, CTX, length, 2**32), expected)


def test_refill_across_chunk_boundaries() -> None:
    """Rejection refills (several 1 MiB chunks) continue the same keystream."""
    # R = 3 rejects 1/4: the first pass spans 5 chunks, then ~300k words are refilled,
    # which takes two capped (1 MiB) refill draws.
    length = 1_200_000
    got = expand_mask(SEED, CTX, length, 3)
    expected = _reference_mask(SEED, CTX, length, 3, StreamCipher.AES128_CTR)
    np.testing.assert_array_equal(got, expected)


def test_rare_rejection_fast_path_still_rejects() -> None:
    """R = 2**32 - 2**22 rejects 1 word in 1024: the max-check fast path must still compact."""
    modulus, length = 2**32 - 2**22, 400
    rejected_somewhere = False
    for i in range(40):
        ctx = encode_context(b"fast-path", i)
        raw = np.frombuffer(
            _reference_keystream(SEED, ctx, 4 * length, StreamCipher.AES128_CTR), dtype="<u4"
        )
        rejected_somewhere |= bool((raw >= modulus).any())
        expected = _reference_mask(SEED, ctx, length, modulus, StreamCipher.AES128_CTR)
        np.testing.assert_array_equal(expand_mask(SEED, ctx, length, modulus), expected)
    assert rejected_somewhere


@settings(max_examples=60, deadline=None)
@given(
    modulus=st.one_of(st.integers(2, 2**64), st.sampled_from([2**32, 2**64, 2**31 - 1, 2**61 - 1])),
    length=st.integers(0, 300),
    cipher=st.sampled_from(list(StreamCipher)),
)
def test_property_reference_and_range(modulus: int, length: int, cipher: StreamCipher) -> None:
    got = expand_mask(SEED, CTX, length, modulus, cipher=cipher)
    assert got.shape == (length,)
    assert got.dtype == mask_dtype(modulus)
    assert all(int(v) < modulus for v in got)
    np.testing.assert_array_equal(got, _reference_mask(SEED, CTX, length, modulus, cipher))


# --- separation and determinism ---------------------------------------------------------------


@pytest.mark.parametrize("cipher", list(StreamCipher))
def test_deterministic(cipher: StreamCipher) -> None:
    a = expand_mask(SEED, CTX, 10_000, 1000003, cipher=cipher)
    b = expand_mask(bytearray(SEED), CTX, 10_000, 1000003, cipher=cipher)
    np.testing.assert_array_equal(a, b)


def test_contexts_seeds_and_ciphers_separate() -> None:
    base = expand_mask(SEED, CTX, 256, 2**32)
    other_ctx = expand_mask(SEED, encode_context(b"session-0123", "self-mask", 1), 256, 2**32)
    other_seed = expand_mask(bytes(32), CTX, 256, 2**32)
    chacha = expand_mask(SEED, CTX, 256, 2**32, cipher=StreamCipher.CHACHA20)
    streams = [base, other_ctx, other_seed, chacha]
    for i in range(len(streams)):
        for j in range(i + 1, len(streams)):
            # Independent uniform uint32 streams agree on a handful of positions at most.
            assert np.count_nonzero(streams[i] == streams[j]) < 3


def test_prefix_property() -> None:
    """A shorter mask is a prefix of a longer one (same keystream, same acceptances)."""
    long = expand_mask(SEED, CTX, 4000, 1000003)
    np.testing.assert_array_equal(expand_mask(SEED, CTX, 1234, 1000003), long[:1234])


# --- distribution -----------------------------------------------------------------------------


def _assert_uniform(counts: np.ndarray, probs: np.ndarray) -> None:
    n = counts.sum()
    assert chisquare(counts, n * probs).pvalue > 1e-6


def test_chi_square_power_of_two() -> None:
    m = 2**16
    values = expand_mask(SEED, CTX, 30 * m, m)
    _assert_uniform(np.bincount(values, minlength=m), np.full(m, 1.0 / m))


def test_chi_square_prime_modulus() -> None:
    modulus, buckets = 1000003, 1000
    values = expand_mask(SEED, CTX, 500_000, modulus)
    sizes = np.bincount(np.arange(modulus) % buckets, minlength=buckets)
    _assert_uniform(np.bincount(values % buckets, minlength=buckets), sizes / modulus)


def test_chi_square_near_word_modulus() -> None:
    modulus = 2**32 - 5
    values = expand_mask(SEED, CTX, 400_000, modulus)
    sizes = np.full(1024, 2**22, dtype=np.float64)
    sizes[-1] -= 5
    _assert_uniform(np.bincount(values >> 22, minlength=1024), sizes / modulus)


def test_chi_square_catches_modulo_bias_region() -> None:
    """R = 3·2**30: a naive `word % R` would make [0, 2**30) twice as likely."""
    modulus = 3 << 30
    values = expand_mask(SEED, CTX, 300_000, modulus)
    _assert_uniform(np.bincount(values >> 30, minlength=3), np.full(3, 1 / 3))


@pytest.mark.parametrize("modulus", [7, 2**8])
def test_every_residue_reachable(modulus: int) -> None:
    values = expand_mask(SEED, CTX, 50 * modulus, modulus)
    assert set(values.tolist()) == set(range(modulus))


# --- buffer and argument contract ---------------------------------------------------------------


def test_out_is_filled_in_place() -> None:
    out = np.zeros(1000, dtype=np.uint64)
    ret = expand_mask(SEED, CTX, 1000, 2**61 - 1, out=out)
    assert ret is out
    np.testing.assert_array_equal(out, expand_mask(SEED, CTX, 1000, 2**61 - 1))


@pytest.mark.parametrize(
    "out",
    [
        np.zeros(10, dtype=np.uint64),  # wrong dtype for R <= 2**32
        np.zeros(10, dtype=np.int32),
        np.zeros(9, dtype=np.uint32),  # wrong length
        np.zeros((2, 5), dtype=np.uint32),
        np.zeros(20, dtype=np.uint32)[::2],  # not contiguous
        [0] * 10,
    ],
)
def test_bad_out_rejected(out: object) -> None:
    with pytest.raises(ConfigError):
        expand_mask(SEED, CTX, 10, 2**32, out=out)  # type: ignore[arg-type]


def test_readonly_out_rejected() -> None:
    out = np.zeros(10, dtype=np.uint32)
    out.flags.writeable = False
    with pytest.raises(ConfigError):
        expand_mask(SEED, CTX, 10, 2**32, out=out)


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33), "x" * 32, None])
def test_bad_seed_rejected_without_echo(seed: object) -> None:
    with pytest.raises(CryptoError) as info:
        expand_mask(seed, CTX, 10, 2**32)  # type: ignore[arg-type]
    assert "x" * 32 not in str(info.value)


@pytest.mark.parametrize("modulus", [0, 1, -5, 2**64 + 1, 2**65, True, 3.0])
def test_bad_modulus_rejected(modulus: object) -> None:
    with pytest.raises(ConfigError):
        mask_dtype(modulus)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        expand_mask(SEED, CTX, 10, modulus)  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [-1, True, 2.0])
def test_bad_length_rejected(length: object) -> None:
    with pytest.raises(ConfigError):
        expand_mask(SEED, CTX, length, 2**32)  # type: ignore[arg-type]


def test_bad_context_and_cipher_rejected() -> None:
    with pytest.raises(ConfigError):
        expand_mask(SEED, "ctx", 10, 2**32)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        expand_mask(SEED, CTX, 10, 2**32, cipher="aes128-ctr")  # type: ignore[arg-type]


def test_mask_dtype_boundaries() -> None:
    assert mask_dtype(2) == np.uint32
    assert mask_dtype(2**32) == np.uint32
    assert mask_dtype(2**32 + 1) == np.uint64
    assert mask_dtype(2**64) == np.uint64
    assert mask_dtype(np.uint64(1000)) == np.uint32


def test_zero_length() -> None:
    assert expand_mask(SEED, CTX, 0, 7).shape == (0,)

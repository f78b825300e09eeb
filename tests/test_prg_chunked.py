"""PRG version 2, the chunked expansion (spec §4.6.1, issue 15): any range of a mask can be
regenerated alone at any R, so workers unmask by range; version 1 stays as it was; the
version is a session choice bound into the session id, and an unknown one is refused."""

from __future__ import annotations

import copy
import dataclasses
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg import cli
from secagg.client import ClientProtocol
from secagg.config import SessionConfig, SessionSettings
from secagg.crypto.kdf import hkdf
from secagg.crypto.labels import Label
from secagg.crypto.prg import (
    PRG_CHUNK,
    StreamCipher,
    expand_mask,
    expand_mask_range,
    mask_dtype,
)
from secagg.engine import InlineEngine, ProcessEngine
from secagg.errors import ConfigError, MessageDecodeError
from secagg.measure import simulate
from secagg.rounds import Round
from secagg.server import ServerProtocol
from secagg.unmask import range_align, split_ranges
from tests.conftest import Session, cohort, random_inputs

SEED = bytes(range(32))
CTX = b"chunked-test-context"
C = PRG_CHUNK
#: prime, just above and below a power of two, a tiny R, and a 64-bit R (rejection heavy or not)
MODULI = [1000003, (1 << 32) - 5, (1 << 16) + 1, 3, (1 << 64) - 59, (1 << 33) + 1]
LENGTH = 3 * C + 777  # three full chunks and a part


@pytest.fixture(scope="module")
def full() -> dict[tuple[int, StreamCipher], np.ndarray]:
    """The full version-2 expansion for each (R, cipher), computed once."""
    return {(r, c): expand_mask(SEED, CTX, LENGTH, r, cipher=c, version=2)
            for r in MODULI for c in StreamCipher}


@settings(max_examples=40, deadline=None)
@given(r=st.sampled_from(MODULI), cipher=st.sampled_from(list(StreamCipher)),
       first=st.integers(0, 3), chunks=st.integers(0, 4))
def test_any_chunk_aligned_range_is_the_slice(full: dict, r: int, cipher: StreamCipher,
                                              first: int, chunks: int) -> None:
    a = first * C
    b = min(LENGTH, a + chunks * C) if chunks < 4 else LENGTH  # 4: to the (unaligned) end
    got = expand_mask_range(SEED, CTX, a, b, r, cipher=cipher, version=2)
    assert got.dtype == mask_dtype(r)
    assert np.array_equal(got, full[(r, cipher)][a:b])


@settings(max_examples=30, deadline=None)
@given(r=st.sampled_from(MODULI), cipher=st.sampled_from(list(StreamCipher)),
       a=st.integers(0, LENGTH), size=st.integers(0, 2 * C + 5))
def test_any_range_is_the_slice(full: dict, r: int, cipher: StreamCipher, a: int,
                                size: int) -> None:
    """Unaligned ranges too: the chunk's head is computed and dropped."""
    b = min(LENGTH, a + size)
    got = expand_mask_range(SEED, CTX, a, b, r, cipher=cipher, version=2)
    assert np.array_equal(got, full[(r, cipher)][a:b])


@pytest.mark.parametrize("r", MODULI)
def test_ranges_of_a_partition_concatenate_to_the_expansion(full: dict, r: int) -> None:
    for cipher in StreamCipher:
        whole = full[(r, cipher)]
        assert int(whole.max()) < r
        for parts in (1, 2, 3, 7):
            ranges = split_ranges(LENGTH, parts, range_align(r))
            assert all(a % C == 0 for a, _ in ranges)
            pieces = [expand_mask_range(SEED, CTX, a, b, r, cipher=cipher, version=2)
                      for a, b in ranges]
            assert np.array_equal(np.concatenate(pieces), whole)
        # a prefix of a longer expansion is the shorter expansion (any m)
        assert np.array_equal(expand_mask(SEED, CTX, C + 3, r, cipher=cipher, version=2),
                              whole[:C + 3])


def test_each_chunk_has_its_own_stream() -> None:
    """Chunk j is the first values < R of its own keystream: key MASK_PRG_CHUNKED_KEY, the
    chunk index in the IV (AES: counter block j * 2^64; ChaCha20: nonce j), so rejection
    in one chunk never moves another's values; and it is not the version-1 stream."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    r = 1000003
    key = hkdf(SEED, Label.MASK_PRG_CHUNKED_KEY, CTX, length=16)
    whole = expand_mask(SEED, CTX, 2 * C, r, version=2)
    for j in (0, 1):
        enc = Cipher(algorithms.AES(key), modes.CTR((j << 64).to_bytes(16, "big"))).encryptor()
        words = np.frombuffer(enc.update(bytes(4 * 2 * C)), dtype="<u4") & ((1 << 20) - 1)
        assert np.array_equal(words[words < r][:C], whole[j * C:(j + 1) * C])
    key32 = hkdf(SEED, Label.MASK_PRG_CHUNKED_KEY, CTX, length=32)
    chacha = expand_mask(SEED, CTX, 2 * C, r, cipher=StreamCipher.CHACHA20, version=2)
    nonce = bytes(4) + (1).to_bytes(12, "big")
    enc = Cipher(algorithms.ChaCha20(key32, nonce), mode=None).encryptor()
    words = np.frombuffer(enc.update(bytes(4 * 2 * C)), dtype="<u4") & ((1 << 20) - 1)
    assert np.array_equal(words[words < r][:C], chacha[C:])
    v1 = expand_mask(SEED, CTX, 2 * C, r)
    assert not np.array_equal(v1[:64], whole[:64])


@pytest.mark.parametrize("bits", [1, 16, 20, 32, 33, 64])
def test_power_of_two_modulus_v2_is_v1(bits: int) -> None:
    for cipher in StreamCipher:
        v1 = expand_mask(SEED, CTX, C + 100, 1 << bits, cipher=cipher)
        v2 = expand_mask(SEED, CTX, C + 100, 1 << bits, cipher=cipher, version=2)
        assert np.array_equal(v1, v2)
        assert np.array_equal(expand_mask_range(SEED, CTX, 5, 77, 1 << bits, cipher=cipher,
                                                version=2), v1[5:77])


def test_version_1_is_unchanged_and_the_default() -> None:
    for r in (1000003, 1 << 32):
        assert np.array_equal(expand_mask(SEED, CTX, 5000, r),
                              expand_mask(SEED, CTX, 5000, r, version=1))
    with pytest.raises(ConfigError, match="power-of-two modulus or PRG version 2"):
        expand_mask_range(SEED, CTX, 0, 10, 1000003, version=1)


@pytest.mark.parametrize("bad", [0, 3, -1, True, 2.0, "2", None])
def test_unknown_version_is_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="unknown PRG version"):
        expand_mask(SEED, CTX, 10, 1000003, version=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown PRG version"):
        expand_mask_range(SEED, CTX, 0, 10, 1 << 32, version=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown PRG version"):
        SessionSettings(prg_version=bad)  # type: ignore[arg-type]
    if bad is not None:  # None: "not given" to create, the settings' version applies
        with pytest.raises(ConfigError, match="unknown PRG version"):
            SessionConfig.create(cohort(10), 8, 1000003,
                                 prg_version=bad)  # type: ignore[arg-type]


# --- the session choice --------------------------------------------------------------------
def test_session_ids_differ_by_version_and_version_1_encodings_are_unchanged() -> None:
    one = SessionConfig.create(cohort(10), 16, 1000003)
    two = SessionConfig.create(cohort(10), 16, 1000003, prg_version=2)
    via_settings = SessionConfig.create(cohort(10), 16, 1000003,
                                        settings=SessionSettings(prg_version=2))
    assert one.prg_version == 1 and two.prg_version == 2 and via_settings == two
    assert two.settings.prg_version == 2 and one.settings.prg_version == 1
    assert one.session_id != two.session_id
    assert two.encode() == one.encode() + b"\x02"
    assert SessionConfig.decode(two.encode()) == two
    assert SessionConfig.decode(one.encode()) == one
    # the spec's example (§2.6) is still 135 bytes with no version byte
    assert len(SessionConfig.create([1, 2, 3], 8, 2**16, min_cohort=3).encode()) == 135


@pytest.mark.parametrize("byte", [b"\x00", b"\x01", b"\x03", b"\x02\x00"])
def test_decode_refuses_a_bad_version_byte(byte: bytes) -> None:
    base = SessionConfig.create(cohort(10), 16, 1000003).encode()
    with pytest.raises(MessageDecodeError):
        SessionConfig.decode(base + byte)


def test_client_refuses_an_unknown_version_before_any_state() -> None:
    """A config that claims a version this client does not implement (forged past the
    constructor's check) is refused when the client is made: no keys, no state."""
    config = SessionConfig.create(cohort(10), 16, 1000003, prg_version=2)
    forged = copy.copy(config)
    object.__setattr__(forged, "prg_version", 9)
    vec = np.zeros(16, dtype=mask_dtype(1000003))
    with pytest.raises(ConfigError, match="unknown PRG version 9"):
        ClientProtocol(forged, 1, vec)
    assert ClientProtocol(config, 1, vec).state.name == "ADVERTISE_KEYS"


# --- unmasking on workers ------------------------------------------------------------------
def test_server_refuses_workers_for_version_1_at_a_prime_with_a_hint() -> None:
    config = SessionConfig.create(cohort(10), 16, 1000003)
    with pytest.raises(ConfigError, match="PRG version 2 \\(--prg-version 2\\)"):
        ServerProtocol(config, engine=InlineEngine(2))
    ServerProtocol(dataclasses.replace(config, prg_version=2), engine=InlineEngine(2))


@pytest.mark.parametrize("cipher", list(StreamCipher))
def test_sessions_mask_with_version_2(cipher: StreamCipher) -> None:
    """Clients mask and the server unmasks with the session's version: a version-2
    session over three chunks is exact with dropouts, on the threads and on workers."""
    config = SessionConfig.create(cohort(10), 2 * C + 50, 1000003, prg_version=2,
                                  prg=cipher)
    s = Session(config, seed=11, threads=2)
    s.run({"masked-input": {3, 8}})
    s.assert_exact()


def test_prime_modulus_session_on_two_process_workers_is_exact() -> None:
    n, d = 10, 3
    config = SessionConfig.create(cohort(n), C + 300, 1000003, prg_version=2, min_cohort=10)
    inputs = random_inputs(config, 12)
    with ProcessEngine(2) as pool:
        report = simulate(config, inputs, {Round.MASKED_INPUT: {1, 4, 9}}, engine=pool,
                          measure_memory=False)
    assert report.exact and report.workers == 2
    assert report.server_work["pairwise_masks"] == d * (n - d)


def test_cli_prg_version_and_modulus(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", "--clients", "10", "--dim", "300", "--dropout", "0.2", "--json",
            "--seed", "5", "--modulus", "1000003", "--workers", "2"]
    assert cli.main([*args, "--prg-version", "1"]) == 2
    err = capsys.readouterr().err
    assert "needs --prg-version 2" in err and "1000003" in err
    assert cli.main([*args, "--prg-version", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["exact"] and out["workers"] == 2 and out["modulus_bits"] == 20
    assert cli.main([*args, "--modulus-bits", "20"]) == 2
    assert "not both" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([*args, "--prg-version", "3"])


def test_version_2_range_cost_is_bounded() -> None:
    """A one-value range inside a chunk draws at most one chunk of keystream, not the
    whole mask before it (the reason version 2 exists)."""
    r = (1 << 16) + 1  # about half the words rejected
    far = 40 * C
    got = expand_mask_range(os.urandom(32), CTX, far + C - 1, far + C, r, version=2)
    assert got.shape == (1,) and int(got[0]) < r

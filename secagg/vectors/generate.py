"""The vector files: which vectors each file holds, and writing them (spec §21).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from secagg import masking
from secagg import messages as msgs
from secagg.config import PROTOCOL_VERSION, SessionConfig
from secagg.crypto import aead, shamir, signatures
from secagg.crypto.agreement import X25519PrivateKey
from secagg.crypto.entropy import DeterministicEntropy
from secagg.crypto.kdf import encode_context
from secagg.crypto.prg import PRG_CHUNK, StreamCipher
from secagg.packing import pack
from secagg.vectors.codec import (
    FORMAT,
    FORMAT_VERSION,
    GENERATOR,
    Json,
    _config_fields,
    _hex,
    _seeded,
)
from secagg.vectors.kinds import _KINDS, message_fields
from secagg.vectors.session import _session_inputs


def _vector(name: str, description: str, kind: str, inp: Json) -> Json:
    """One vector; the output is computed by the same function :func:`check_vectors` uses."""
    return {"name": name, "description": description, "kind": kind, "input": inp,
            "output": _KINDS[kind](inp)}


def _file_entropy() -> list[Json]:
    return [
        _vector("seed-abc", "DeterministicEntropy(b'abc'): calls 0, 1, 2 of 32, 32 and 99 bytes "
                "(SHAKE-256 over label || u32(len seed) || seed || u64(call))", "entropy",
                {"seed": _hex(b"abc"), "sizes": [32, 32, 99]}),
        _vector("seed-client-1", "the seed the session vector gives client 1; the first two "
                "calls are its c_u and s_u secrets (spec section 4.9 call order)", "entropy",
                {"seed": _hex(_session_seed(1)), "sizes": [32, 32, 32, 66]}),
    ]


def _ctx_field(value: bytes | int | str) -> Json:
    if isinstance(value, bytes):
        return {"type": "bytes", "value": _hex(value)}
    if isinstance(value, int):
        return {"type": "int", "value": value}
    return {"type": "str", "value": value}


def _file_kdf() -> list[Json]:
    ent = _seeded("kdf")
    sid = ent.random_bytes(32)
    ikm = ent.random_bytes(32)
    pk1, pk2 = ent.random_bytes(32), ent.random_bytes(32)
    out = [
        _vector("context-version", "encode_context(1), the session-id context", "encode_context",
                {"fields": [_ctx_field(1)]}),
        _vector("context-mixed", "encode_context of str, bytes and ints, including 0 and 2^32-1",
                "encode_context", {"fields": [_ctx_field("share-keys"), _ctx_field(sid),
                                              _ctx_field(0), _ctx_field(2**32 - 1),
                                              _ctx_field(b"")]}),
    ]
    contexts: dict[str, tuple[bytes, int]] = {
        "SHARE_ENCRYPTION": (encode_context(sid, 1, 2, pk1, pk2), 32),
        "PAIRWISE_MASK_SEED": (encode_context(sid, 1, 2, pk1, pk2), 32),
        "MASK_PRG_KEY": (encode_context("self-mask", sid, 1, 0), 16),
        "SESSION_ID": (encode_context(PROTOCOL_VERSION), 32),
        "GRAPH_PERMUTATION": (encode_context(10), 32),
    }
    for name, (ctx, length) in contexts.items():
        out.append(_vector(f"hkdf-{name.lower().replace('_', '-')}",
                           f"HKDF-SHA256 with label {name}, a context of the shape spec "
                           f"section 5 gives it, L = {length}", "hkdf",
                           {"label": name, "ikm": _hex(ikm), "context": _hex(ctx),
                            "length": length}))
    out.append(_vector("hkdf-mask-prg-key-chacha20", "HKDF with MASK_PRG_KEY, pairwise context, "
                       "L = 32 (ChaCha20 key)", "hkdf",
                       {"label": "MASK_PRG_KEY", "ikm": _hex(ikm),
                        "context": _hex(encode_context("pairwise-mask", sid, 1, 2, 0)),
                        "length": 32}))
    out.append(_vector("share-key-1-to-2", "share-encryption key and AD for sender 1, "
                       "receiver 2 (spec section 5)", "share_key",
                       {"agreed": _hex(ikm), "session_id": _hex(sid), "sender": 1,
                        "receiver": 2, "sender_enc_pk": _hex(pk1), "receiver_enc_pk": _hex(pk2)}))
    out.append(_vector("pairwise-seed-7-3", "s_uv for u = 7, v = 3: symmetric, the lower id's "
                       "key first in the context", "pairwise_seed",
                       {"agreed": _hex(ikm), "session_id": _hex(sid), "u": 7, "v": 3,
                        "mask_pk_u": _hex(pk1), "mask_pk_v": _hex(pk2)}))
    out.append(_vector("self-mask-commitment", "commit(sid, u, b_u) (spec section 4.8) and the "
                       "self-mask PRG context", "self_mask",
                       {"session_id": _hex(sid), "client_id": 5,
                        "b_seed": _hex(ent.random_bytes(32))}))
    out.append(_vector("hkdf-mask-prg-chunked-key", "HKDF with MASK_PRG_CHUNKED_KEY (PRG "
                       "version 2, spec section 4.6.1), self-mask context, L = 16", "hkdf",
                       {"label": "MASK_PRG_CHUNKED_KEY", "ikm": _hex(ikm),
                        "context": _hex(encode_context("self-mask", sid, 1, 0)),
                        "length": 16}))
    return out


def _file_x25519() -> list[Json]:
    ent = _seeded("x25519")
    p = 2**255 - 19
    out = [_vector("agreement", "two secrets (unclamped, as stored), their public keys and "
                   "the raw X25519 output", "x25519",
                   {"secret_a": _hex(ent.random_bytes(32)),
                    "secret_b": _hex(ent.random_bytes(32))})]
    good = X25519PrivateKey(ent.random_bytes(32)).public_key
    rejects: list[tuple[str, bytes]] = [
        ("zero", bytes(32)),
        ("one", (1).to_bytes(32, "little")),
        ("order-8-a", bytes.fromhex(
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")),
        ("order-8-b", bytes.fromhex(
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157")),
        ("p-minus-1", (p - 1).to_bytes(32, "little")),
        ("p", p.to_bytes(32, "little")),
        ("p-plus-1", (p + 1).to_bytes(32, "little")),
        ("high-bit", (int.from_bytes(good, "little") | 1 << 255).to_bytes(32, "little")),
        ("short", good[:31]),
    ]
    out.append(_vector("validate-accept", "a generated public key passes section 4.3",
                       "x25519_validate", {"public": _hex(good)}))
    for name, key in rejects:
        out.append(_vector(f"validate-reject-{name}", f"public key refused by section 4.3 ({name})",
                           "x25519_validate", {"public": _hex(key)}))
    return out


def _file_aead() -> list[Json]:
    ent = _seeded("aead")
    key, ad = ent.random_bytes(32), ent.random_bytes(40)
    pt = ent.random_bytes(74)
    sealed = aead.seal_once(key, pt, ad)
    nonce_one = bytes(11) + b"\x01" + sealed[12:]
    bad_tag = sealed[:-1] + bytes([sealed[-1] ^ 1])
    sid = ent.random_bytes(32)
    return [
        _vector("seal-74", "seal_once: zero nonce, 74-byte plaintext (a share payload's size)",
                "aead_seal", {"key": _hex(key), "plaintext": _hex(pt),
                              "associated_data": _hex(ad)}),
        _vector("seal-empty", "seal_once of the empty plaintext with empty AD", "aead_seal",
                {"key": _hex(key), "plaintext": "", "associated_data": ""}),
        _vector("open-reject-nonce", "a blob whose nonce is not 0^96 is refused", "aead_open",
                {"key": _hex(key), "sealed": _hex(nonce_one), "associated_data": _hex(ad)}),
        _vector("open-reject-tag", "a blob with one tag bit flipped is refused", "aead_open",
                {"key": _hex(key), "sealed": _hex(bad_tag), "associated_data": _hex(ad)}),
        _vector("open-reject-ad", "the right blob under other AD is refused", "aead_open",
                {"key": _hex(key), "sealed": _hex(sealed), "associated_data": _hex(ad[:-1])}),
        _vector("share-ciphertext-3-to-8", "one share ciphertext of round 1 (spec section 7.5): "
                "agreement, share key, AD, payload and sealed blob", "share_ciphertext",
                {"session_id": _hex(sid), "sender": 3, "receiver": 8,
                 "enc_secret_sender": _hex(ent.random_bytes(32)),
                 "enc_secret_receiver": _hex(ent.random_bytes(32)),
                 "s_share": _hex(b"\x00" + ent.random_bytes(32)),
                 "b_share": _hex(b"\x01" + ent.random_bytes(32))}),
    ]


def _file_signatures() -> list[Json]:
    ent = _seeded("signatures")
    seed = ent.random_bytes(32)
    sid = ent.random_bytes(32)
    key = signatures.SigningKey(seed)
    msg = b"secagg test vector"
    sig = key.sign(msg)
    bad = sig[:-1] + bytes([sig[-1] ^ 0x40])
    return [
        _vector("ed25519-empty", "Ed25519 (RFC 8032) of the empty message", "ed25519",
                {"seed": _hex(seed), "message": ""}),
        _vector("ed25519-text", "Ed25519 of a short ASCII message", "ed25519",
                {"seed": _hex(seed), "message": _hex(msg)}),
        _vector("ed25519-verify-reject", "a signature with one bit flipped is refused",
                "ed25519_verify", {"verify_key": _hex(key.verify_key), "message": _hex(msg),
                                   "signature": _hex(bad)}),
        _vector("ed25519-verify-reject-key", "the identity point as a verify key is refused",
                "ed25519_verify", {"verify_key": _hex((1).to_bytes(32, "little")),
                                   "message": _hex(msg), "signature": _hex(sig)}),
        _vector("signed-advertise-keys", "S_keys(u) of spec section 15.3 and its signature",
                "signed_advertise_keys",
                {"identity_seed": _hex(seed), "session_id": _hex(sid), "client_id": 4,
                 "enc_pk": _hex(ent.random_bytes(32)), "mask_pk": _hex(ent.random_bytes(32))}),
        _vector("signed-consistency-view", "S_view(u, A, D) of spec section 15.3 and its signature",
                "signed_consistency_view",
                {"identity_seed": _hex(seed), "session_id": _hex(sid), "signer": 4,
                 "alive": [1, 2, 4, 5, 9], "dropped": [3, 7]}),
    ]


def _file_prg() -> list[Json]:
    ent = _seeded("prg")
    seed = ent.random_bytes(32)
    ctx = masking.self_mask_context(ent.random_bytes(32), 1)
    moduli = [("2^32", 2**32), ("2^16", 2**16), ("2^64", 2**64), ("2^32-5", 2**32 - 5),
              ("1000003", 1000003), ("2^20", 2**20)]
    out: list[Json] = []
    for cipher in StreamCipher:
        for name, modulus in moduli:
            for length in (16, 4096):
                what = "first 16 values" if length == 16 else \
                    "4096 values: first and last 8 and a digest (rejection refills)"
                out.append(_vector(
                    f"{cipher.value}-{name}-{length}",
                    f"Expand(seed, self-mask ctx, m = {length}, R = {name}, {cipher.value}): "
                    f"{what}", "prg",
                    {"seed": _hex(seed), "context": _hex(ctx), "cipher": cipher.value,
                     "modulus": str(modulus), "length": length}))
    # PRG version 2 (§4.6.1): two full chunks and a part, so every chunk boundary rule
    # shows; at 2^32 it is version 1 exactly (same key, same values)
    length = 2 * PRG_CHUNK + 1000
    for cipher in StreamCipher:
        for name, modulus in (("1000003", 1000003), ("2^32", 2**32)):
            out.append(_vector(
                f"v2-{cipher.value}-{name}-{length}",
                f"PRG version 2, Expand(seed, self-mask ctx, m = {length}, R = {name}, "
                f"{cipher.value}): first and last 8, 4 values either side of each chunk "
                "boundary, and a digest", "prg",
                {"seed": _hex(seed), "context": _hex(ctx), "cipher": cipher.value,
                 "modulus": str(modulus), "length": length, "version": 2}))
    return out


def _file_shamir() -> list[Json]:
    ent = _seeded("shamir")
    secret = ent.random_bytes(32)
    out = [
        _vector("split-t3-of-5", "Split of a 32-byte secret, t = 3, at ids 1..5, coefficients "
                "from DeterministicEntropy (spec section 4.7)", "shamir_split",
                {"secret": _hex(secret), "threshold": 3, "xs": [1, 2, 3, 4, 5],
                 "entropy_seed": _hex(b"shamir-vector-1")}),
        _vector("split-t4-sparse-ids", "t = 4 at sparse ids up to 2^32 - 1", "shamir_split",
                {"secret": _hex(b"\xff" * 32), "threshold": 4,
                 "xs": [7, 1000, 65536, 123456789, 2**32 - 1],
                 "entropy_seed": _hex(b"shamir-vector-2")}),
    ]
    shares = shamir.split(secret, 3, [1, 2, 3, 4, 5],
                          entropy=DeterministicEntropy(b"shamir-vector-1"))
    pick = [{"x": x, "share": _hex(shares[x])} for x in (2, 4, 5)]
    out.append(_vector("reconstruct-2-4-5", "Reconstruct from the shares of ids 2, 4, 5 of "
                       "split-t3-of-5", "shamir_reconstruct", {"threshold": 3, "shares": pick}))
    bad = [*pick[:2], {"x": 5, "share": _hex(shamir.PRIME.to_bytes(33, "big"))}]
    out.append(_vector("reconstruct-reject-out-of-field", "a share value >= p fails the whole "
                       "call", "shamir_reconstruct", {"threshold": 3, "shares": bad}))
    return out


def _file_quantize() -> list[Json]:
    update = [0.0, 0.25, -0.25, 1.0, -1.0, 3.5, -7.0, 0.123456789, -0.999, 1e-9]
    hexed = [float(x).hex() for x in update]
    return [
        _vector("unweighted-8bit", "clip 1.0, 8 bits, 10 clients: stochastic rounding with "
                "numpy default_rng(seed).random(m) as U (listed)", "quantize_encode",
                {"clip": (1.0).hex(), "bits": 8, "max_clients": 10, "max_weight": 1,
                 "modulus_bits": None, "update": hexed, "weight": 1, "rng_seed": 2024}),
        _vector("weighted-16bit", "clip 0.5, 16 bits, weight 7 of at most 100, modulus 2^40: "
                "w * level per coordinate, then w", "quantize_encode",
                {"clip": (0.5).hex(), "bits": 16, "max_clients": 1000, "max_weight": 100,
                 "modulus_bits": 40, "update": hexed, "weight": 7, "rng_seed": 7}),
    ]


def _file_packing() -> list[Json]:
    ent = _seeded("packing")
    out = [
        _vector("spec-3-bits", "spec section 10.5 example [1, 2, 3, 4, 5] at b = 3", "pack",
                {"bits": 3, "values": ["1", "2", "3", "4", "5"]}),
        _vector("spec-9-bits", "spec section 10.5 example [0x1ff, 1] at b = 9", "pack",
                {"bits": 9, "values": [str(0x1FF), "1"]}),
    ]
    for bits in (1, 7, 8, 13, 16, 20, 31, 32, 33, 63, 64):
        raw = ent.random_bytes(8 * 11)
        values = [str(int.from_bytes(raw[8 * i : 8 * i + 8], "big") >> (64 - bits))
                  for i in range(11)]
        out.append(_vector(f"random-{bits}-bits", f"11 values of {bits} bits, LSB first",
                           "pack", {"bits": bits, "values": values}))
    out.append(_vector("unpack-reject-padding", "3 values of 3 bits with a padding bit set",
                       "unpack", {"bits": 3, "count": 3, "packed": "d1fe"}))
    out.append(_vector("unpack-reject-length", "3 values of 3 bits in 3 bytes (one too many)",
                       "unpack", {"bits": 3, "count": 3, "packed": "d10100"}))
    return out


def _file_config() -> list[Json]:
    spec_example = SessionConfig.create([1, 2, 3], 8, 2**16, min_cohort=3)
    configs = [
        ("spec-example", "the informative example of spec section 2.6 (135 bytes)", spec_example),
        ("session-vector", "the config of session.json", _session_config()),
        ("harary-chacha", "Harary graph (k = 4, t = 3) over sparse ids, ChaCha20, R = 2^64, "
         "round 7 and a task hash", SessionConfig.create(
             [3, 17, 29, 41, 56, 70, 88, 91, 104, 1000], 100, 2**64, graph="harary", degree=4,
             threshold=3, dropout_rate=0.0, corruption_rate=0.0, round_index=7,
             task_hash=bytes(range(32)), prg=StreamCipher.CHACHA20)),
        ("active-complete", "active mode, complete graph, default t = floor(2n/3) + 1, "
         "R = 1000003", SessionConfig.create(range(1, 11), 16, 1000003, mode="active",
                                            task_hash=b"\xaa" * 32)),
    ]
    out = [_vector(name, desc, "config", _config_fields(cfg)) for name, desc, cfg in configs]
    good = spec_example.encode()
    rejects = [
        ("wrong-version", "version byte 2", b"\x02" + good[1:]),
        ("unknown-mode", "mode name 'semi-honesT'", good[:5] + b"semi-honesT" + good[16:]),
        ("truncated", "last byte missing", good[:-1]),
        ("trailing", "one byte too many", good + b"\x00"),
        ("unsorted-cohort", "cohort 1, 3, 2", good[:-8] + (3).to_bytes(4, "big")
         + (2).to_bytes(4, "big")),
        ("unsafe-threshold", "t = 1", good[:99] + (1).to_bytes(4, "big") + good[103:]),
    ]
    for name, desc, data in rejects:
        out.append(_vector(f"decode-reject-{name}", f"SessionConfig.decode refuses: {desc}",
                           "config_decode", {"encoding": _hex(data)}))
    v2 = SessionConfig.create(range(1, 11), 16, 1000003, prg_version=2)
    out.append(_vector("prg-v2", "PRG version 2 (spec section 4.6.1), R = 1000003: the "
                       "encoding gains a last byte 0x02 and the session id changes",
                       "config", _config_fields(v2)))
    for name, desc, data in [
        ("prg-version-1-explicit", "a last byte 0x01 (version 1 is encoded by absence)",
         v2.encode()[:-1] + b"\x01"),
        ("prg-version-unknown", "a last byte 0x03 (no PRG version 3)",
         v2.encode()[:-1] + b"\x03"),
    ]:
        out.append(_vector(f"decode-reject-{name}", f"SessionConfig.decode refuses: {desc}",
                           "config_decode", {"encoding": _hex(data)}))
    return out


def _file_graph() -> list[Json]:
    seed = hashlib.sha256(b"secagg/v1 test vectors/graph").digest()
    ids10 = list(range(1, 11))
    sparse = [5, 9, 12, 40, 41, 77, 100, 256, 1024, 4096, 65537, 2**32 - 1]
    harary_cfg = SessionConfig.create(list(range(1, 21)), 8, 2**32, graph="harary", degree=6,
                                      threshold=4, dropout_rate=0.05, corruption_rate=0.0,
                                      min_cohort=10)
    return [
        _vector("permutation-10", "the session permutation of ids 1..10 from a 32-byte seed "
                "(spec section 6.2)", "permutation", {"ids": ids10, "seed": _hex(seed)}),
        _vector("harary-10-k4", "H(10, 4) neighbourhoods over that permutation (spec section 6.3)",
                "harary", {"ids": ids10, "k": 4, "seed": _hex(seed)}),
        _vector("harary-12-k6-sparse", "H(12, 6) over sparse ids", "harary",
                {"ids": sparse, "k": 6, "seed": _hex(seed)}),
        _vector("harary-from-config", "neighbourhoods of a Harary SessionConfig: seed = its "
                "session id", "harary_config", _config_fields(harary_cfg)),
    ]


def _file_messages() -> list[Json]:
    ent = _seeded("messages")

    def b(n: int) -> bytes:
        return ent.random_bytes(n)

    samples: list[tuple[str, msgs.Message]] = [
        ("advertise-keys", msgs.AdvertiseKeys(3, b(32), b(32))),
        ("advertise-keys-signed", msgs.AdvertiseKeys(3, b(32), b(32), b(64))),
        ("key-broadcast", msgs.KeyBroadcast((msgs.KeyEntry(1, b(32), b(32)),
                                             msgs.KeyEntry(3, b(32), b(32)),
                                             msgs.KeyEntry(9, b(32), b(32))))),
        ("share-keys", msgs.ShareKeys(3, ((1, b(102)), (9, b(102))), b(32))),
        ("ciphertext-bundle", msgs.CiphertextBundle(((1, b(102)), (9, b(102))))),
        ("masked-input", msgs.MaskedInput(3, 20, 5, pack(np.array([0, 1, 2**20 - 1, 12345, 99],
                                                                  dtype=np.uint32), 20))),
        ("unmask-request", msgs.UnmaskRequest((1, 3), (9,))),
        ("unmask-response", msgs.UnmaskResponse(3, ((1, msgs.ShareKind.SELF_MASK_SEED, b(33)),
                                                    (9, msgs.ShareKind.MASK_KEY, b(33))))),
        ("consistency-request", msgs.ConsistencyRequest((1, 3), (9,), ((1, b(64)),))),
        ("consistency-signature", msgs.ConsistencySignature(3, b(64))),
        ("abort", msgs.Abort("only 2 masked inputs arrived, fewer than t = 3")),
    ]
    return [_vector(name, f"{type(m).__name__} (type {int(m.TYPE)}), spec sections 7.4, 15.4",
                    "message", {"type": type(m).__name__, "fields": message_fields(m)})
            for name, m in samples]


def _session_config() -> SessionConfig:
    return SessionConfig.create(range(1, 6), 5, 2**20, min_cohort=5)


def _session_seed(u: int) -> bytes:
    return f"secagg/v1 test vectors/session/client {u}".encode()


def _file_session() -> list[Json]:
    cfg = _session_config()
    inputs = _session_inputs(cfg)
    return [_vector(
        "complete-n5-t3-drop-after-share-keys",
        "SecAgg, n = 5, t = 3, complete graph, min_cohort = 5, semi-honest, m = 5, R = 2^20; "
        "client 2 sends ShareKeys and then drops (it is in U2, not in U3), so the survivors "
        "mask with it and the server reconstructs its mask key. Every message in delivery "
        "order (see secagg.vectors.run_session; 'delivered' is false for the bundle the "
        "dropped client never reads) and the final sum", "session",
        {"config": _config_fields(cfg),
         "inputs": {str(u): [str(x) for x in xs] for u, xs in inputs.items()},
         "client_entropy_seeds": {str(u): _hex(_session_seed(u)) for u in cfg.cohort},
         "drop_after_share_keys": [2]})]


FILES: dict[str, tuple[str, str, Callable[[], list[Json]]]] = {
    "entropy": ("DeterministicEntropy outputs", "4.9", _file_entropy),
    "kdf": ("encode_context, HKDF per label, share key/AD, pairwise seed, self-mask "
            "commitment", "4.1, 4.2, 4.8, 5", _file_kdf),
    "x25519": ("X25519 agreement and public-key validation", "4.3", _file_x25519),
    "aead": ("ChaCha20-Poly1305 seal_once/open_sealed and a share ciphertext", "4.4, 7.5",
             _file_aead),
    "signatures": ("Ed25519 and the signed statements of active mode", "4.5, 15.3",
                   _file_signatures),
    "prg": ("mask PRG expansion per modulus type and cipher", "4.6", _file_prg),
    "shamir": ("Shamir split with deterministic coefficients, reconstruction", "4.7",
               _file_shamir),
    "quantize": ("quantization encode with a seeded rng", "10.3", _file_quantize),
    "packing": ("bit-packing of Z_R vectors", "10.5", _file_packing),
    "config": ("SessionConfig encodings, session ids and decode refusals", "2.6, 3.1",
               _file_config),
    "graph": ("session permutation and Harary neighbourhoods", "6.2, 6.3", _file_graph),
    "messages": ("one encoding of every message type", "7, 15.4", _file_messages),
    "session": ("one complete small session, every message in order and the sum",
                "8, 9", _file_session),
}


def _document(name: str) -> Json:
    description, sections, build = FILES[name]
    return {"format": FORMAT, "version": FORMAT_VERSION, "protocol_version": PROTOCOL_VERSION,
            "file": name, "description": description, "spec": sections,
            "generator": GENERATOR, "vectors": build()}


def _dump(doc: Json) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=True) + "\n"


def generate(directory: Path | str) -> list[Path]:
    """Write every vector file into ``directory`` (created if needed); return the paths.

    The output is a pure function of this package's code: running it twice gives
    identical bytes, which is what lets the test suite compare against the
    committed files.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in FILES:
        path = root / f"{name}.json"
        path.write_text(_dump(_document(name)), encoding="ascii")
        paths.append(path)
    return paths

"""Test vectors: generate ``specs/vectors/*.json`` and check an implementation against them.

Why: the spec (``specs/protocol.md``) fixes every construction byte for byte, and
the only way another implementation (or a refactoring of this one) can prove it
agrees is to reproduce published outputs from published inputs. Every vector is
computed from fixed seeds through :class:`~secagg.crypto.entropy.DeterministicEntropy`,
the one injectable deterministic randomness source (spec section 4.9), so the files are
reproducible byte for byte and their secrets are public by construction.

File format (``FORMAT_VERSION`` 1), one JSON object per file::

    {"format": "secagg-test-vectors", "version": 1, "protocol_version": 1,
     "file": "<name>", "description": "...", "spec": "<sections>",
     "generator": "python -m secagg.vectors generate specs/vectors",
     "vectors": [{"name": ..., "description": ..., "kind": ...,
                  "input": {...}, "output": {...}}, ...]}

Bytes are lowercase hex strings; elements of Z_R vectors are decimal strings (R
may be 2^64, beyond a JSON double); floats are ``float.hex()`` strings (exact).
:func:`check_vectors` recomputes every ``output`` from its ``input`` with this
package and compares; it never raises, it reports.

Command line: ``python -m secagg.vectors generate DIR`` and
``python -m secagg.vectors check DIR`` (exit status 1 if any vector fails).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from secagg import graph as graphs
from secagg import masking, quantize
from secagg.client import ClientProtocol
from secagg.config import PROTOCOL_VERSION, Mode, SessionConfig
from secagg.crypto import aead, shamir, signatures
from secagg.crypto.agreement import X25519PrivateKey, agree, validate_public_key
from secagg.crypto.entropy import DeterministicEntropy
from secagg.crypto.kdf import encode_context, hkdf
from secagg.crypto.labels import Label
from secagg.crypto.prg import StreamCipher, expand_mask, mask_dtype
from secagg.errors import SecAggError
from secagg.identity import advertise_statement, view_statement
from secagg.messages import (
    Abort,
    AdvertiseKeys,
    CiphertextBundle,
    ConsistencyRequest,
    ConsistencySignature,
    KeyBroadcast,
    KeyEntry,
    MaskedInput,
    Message,
    ShareKeys,
    ShareKind,
    UnmaskRequest,
    UnmaskResponse,
    decode,
)
from secagg.packing import pack, unpack
from secagg.server import ServerProtocol, ServerState
from secagg.wire import Writer

__all__ = ["FILES", "FORMAT", "FORMAT_VERSION", "check_vectors", "generate", "main"]

FORMAT = "secagg-test-vectors"
FORMAT_VERSION = 1
GENERATOR = "python -m secagg.vectors generate specs/vectors"

Json = dict[str, Any]


# --- JSON value helpers -----------------------------------------------------------------------
def _hex(data: bytes) -> str:
    return bytes(data).hex()


def _unhex(text: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected a hex string")
    return bytes.fromhex(text)


def _ints_out(values: np.ndarray | Sequence[int]) -> list[str]:
    """Z_R elements as decimal strings: R may be 2^64, beyond what JSON numbers carry."""
    return [str(int(v)) for v in (values.tolist() if isinstance(values, np.ndarray) else values)]


def _ints_in(values: Sequence[str], modulus: int) -> np.ndarray:
    return np.array([int(v) for v in values], dtype=mask_dtype(modulus))


def _le64_digest(values: np.ndarray) -> str:
    """SHA-256 of the values as consecutive 8-byte little-endian words (spec-independent
    summary of a long vector, so the file stays small)."""
    return hashlib.sha256(values.astype("<u8").tobytes()).hexdigest()


def _vector(name: str, description: str, kind: str, inp: Json) -> Json:
    """One vector; the output is computed by the same function :func:`check_vectors` uses."""
    return {"name": name, "description": description, "kind": kind, "input": inp,
            "output": _KINDS[kind](inp)}


def _seeded(tag: str) -> DeterministicEntropy:
    """The entropy source of one file's generated inputs; the seed is its public tag."""
    return DeterministicEntropy(b"secagg/v1 test vectors/" + tag.encode())


# --- kinds: input -> output -------------------------------------------------------------------
def _k_entropy(inp: Json) -> Json:
    ent = DeterministicEntropy(_unhex(inp["seed"]))
    return {"outputs": [_hex(ent.random_bytes(int(n))) for n in inp["sizes"]]}


def _context_fields(fields: Sequence[Json]) -> list[bytes | int | str]:
    out: list[bytes | int | str] = []
    for f in fields:
        kind, value = f["type"], f["value"]
        if kind == "bytes":
            out.append(_unhex(value))
        elif kind == "int":
            out.append(int(value))
        elif kind == "str":
            out.append(str(value))
        else:
            raise ValueError(f"unknown context field type {kind!r}")
    return out


def _k_encode_context(inp: Json) -> Json:
    return {"encoding": _hex(encode_context(*_context_fields(inp["fields"])))}


def _k_hkdf(inp: Json) -> Json:
    label = Label[inp["label"]]
    context = _unhex(inp["context"])
    okm = hkdf(_unhex(inp["ikm"]), label, context, length=int(inp["length"]))
    return {"info": _hex(label.value + b"|" + context), "okm": _hex(okm)}


def _k_share_key(inp: Json) -> Json:
    agreed, sid = _unhex(inp["agreed"]), _unhex(inp["session_id"])
    s, r = int(inp["sender"]), int(inp["receiver"])
    spk, rpk = _unhex(inp["sender_enc_pk"]), _unhex(inp["receiver_enc_pk"])
    return {
        "context": _hex(encode_context(sid, s, r, spk, rpk)),
        "key": _hex(masking.share_key(agreed, sid, s, r, spk, rpk)),
        "associated_data": _hex(masking.share_associated_data(sid, s, r, spk, rpk)),
    }


def _k_pairwise_seed(inp: Json) -> Json:
    agreed, sid = _unhex(inp["agreed"]), _unhex(inp["session_id"])
    u, v = int(inp["u"]), int(inp["v"])
    pku, pkv = _unhex(inp["mask_pk_u"]), _unhex(inp["mask_pk_v"])
    return {
        "seed": _hex(masking.pairwise_seed(agreed, sid, u, v, pku, pkv)),
        "prg_context": _hex(masking.pairwise_mask_context(sid, u, v)),
        "sign_u": masking.pairwise_sign(u, v),
    }


def _k_self_mask(inp: Json) -> Json:
    sid, u, b = _unhex(inp["session_id"]), int(inp["client_id"]), _unhex(inp["b_seed"])
    return {"commitment": _hex(masking.self_mask_commitment(sid, u, b)),
            "prg_context": _hex(masking.self_mask_context(sid, u))}


def _k_x25519(inp: Json) -> Json:
    a = X25519PrivateKey(_unhex(inp["secret_a"]))
    b = X25519PrivateKey(_unhex(inp["secret_b"]))
    ab, ba = agree(a, b.public_key), agree(b, a.public_key)
    if ab != ba:
        raise ValueError("X25519 agreement is not symmetric")
    return {"public_a": _hex(a.public_key), "public_b": _hex(b.public_key), "shared": _hex(ab)}


def _accepted(check: Callable[[], object]) -> bool:
    try:
        check()
    except SecAggError:
        return False
    return True


def _k_x25519_validate(inp: Json) -> Json:
    key = _unhex(inp["public"])
    return {"accepted": _accepted(lambda: validate_public_key(key))}


def _k_aead_seal(inp: Json) -> Json:
    key, pt, ad = _unhex(inp["key"]), _unhex(inp["plaintext"]), _unhex(inp["associated_data"])
    sealed = aead.seal_once(key, pt, ad)
    if aead.open_sealed(key, sealed, ad) != pt:
        raise ValueError("sealed blob does not open to the plaintext")
    return {"sealed": _hex(sealed)}


def _k_aead_open(inp: Json) -> Json:
    key, blob, ad = _unhex(inp["key"]), _unhex(inp["sealed"]), _unhex(inp["associated_data"])
    return {"accepted": _accepted(lambda: aead.open_sealed(key, blob, ad))}


def _k_share_ciphertext(inp: Json) -> Json:
    """The whole chain of spec section 5 and section 7.5 for one share ciphertext u -> v."""
    sid = _unhex(inp["session_id"])
    u, v = int(inp["sender"]), int(inp["receiver"])
    cu, cv = X25519PrivateKey(_unhex(inp["enc_secret_sender"])), X25519PrivateKey(
        _unhex(inp["enc_secret_receiver"]))
    agreed = agree(cu, cv.public_key)
    key = masking.share_key(agreed, sid, u, v, cu.public_key, cv.public_key)
    ad = masking.share_associated_data(sid, u, v, cu.public_key, cv.public_key)
    payload = (Writer().u32(u).u32(v).fixed(_unhex(inp["s_share"]), shamir.SHARE_LEN)
               .fixed(_unhex(inp["b_share"]), shamir.SHARE_LEN).getvalue())
    ct = aead.seal_once(key, payload, ad)
    if aead.open_sealed(masking.share_key(agree(cv, cu.public_key), sid, u, v, cu.public_key,
                                          cv.public_key), ct, ad) != payload:
        raise ValueError("the receiver cannot open the share ciphertext")
    return {"sender_enc_pk": _hex(cu.public_key), "receiver_enc_pk": _hex(cv.public_key),
            "agreed": _hex(agreed), "key": _hex(key), "associated_data": _hex(ad),
            "payload": _hex(payload), "ciphertext": _hex(ct)}


def _k_ed25519(inp: Json) -> Json:
    key = signatures.SigningKey(_unhex(inp["seed"]))
    msg = _unhex(inp["message"])
    sig = key.sign(msg)
    signatures.verify(key.verify_key, msg, sig)
    return {"verify_key": _hex(key.verify_key), "signature": _hex(sig)}


def _k_ed25519_verify(inp: Json) -> Json:
    vk, msg, sig = _unhex(inp["verify_key"]), _unhex(inp["message"]), _unhex(inp["signature"])
    return {"accepted": _accepted(lambda: signatures.verify(vk, msg, sig))}


def _k_signed_advertise(inp: Json) -> Json:
    key = signatures.SigningKey(_unhex(inp["identity_seed"]))
    statement = advertise_statement(_unhex(inp["session_id"]), int(inp["client_id"]),
                                    _unhex(inp["enc_pk"]), _unhex(inp["mask_pk"]))
    return {"verify_key": _hex(key.verify_key), "statement": _hex(statement),
            "signature": _hex(key.sign(statement))}


def _k_signed_view(inp: Json) -> Json:
    key = signatures.SigningKey(_unhex(inp["identity_seed"]))
    statement = view_statement(_unhex(inp["session_id"]), int(inp["signer"]),
                               [int(x) for x in inp["alive"]], [int(x) for x in inp["dropped"]])
    return {"verify_key": _hex(key.verify_key), "statement": _hex(statement),
            "signature": _hex(key.sign(statement))}


def _k_prg(inp: Json) -> Json:
    cipher = StreamCipher(inp["cipher"])
    modulus, length = int(inp["modulus"]), int(inp["length"])
    seed, ctx = _unhex(inp["seed"]), _unhex(inp["context"])
    key_len = 16 if cipher is StreamCipher.AES128_CTR else 32
    out = expand_mask(seed, ctx, length, modulus, cipher=cipher)
    result: Json = {"key": _hex(hkdf(seed, Label.MASK_PRG_KEY, ctx, length=key_len)),
                    "dtype": str(out.dtype)}
    if length <= 64:
        result["values"] = _ints_out(out)
    else:
        result["first"] = _ints_out(out[:8])
        result["last"] = _ints_out(out[-8:])
        result["sha256_le64"] = _le64_digest(out)
    return result


def _k_shamir(inp: Json) -> Json:
    secret, t = _unhex(inp["secret"]), int(inp["threshold"])
    xs = [int(x) for x in inp["xs"]]
    ent = DeterministicEntropy(_unhex(inp["entropy_seed"]))
    shares = shamir.split(secret, t, xs, entropy=ent)
    coeffs_ent = DeterministicEntropy(_unhex(inp["entropy_seed"]))
    coeffs = shamir.random_field_elements(t - 1, shamir.PRIME, coeffs_ent)
    for subset in (xs[:t], xs[-t:]):
        if shamir.reconstruct({x: shares[x] for x in subset}, t) != secret:
            raise ValueError("shares do not reconstruct the secret")
    return {"coefficients": [f"{c:066x}" for c in coeffs],
            "shares": [{"x": x, "share": _hex(shares[x])} for x in xs]}


def _k_shamir_reconstruct(inp: Json) -> Json:
    shares = {int(s["x"]): _unhex(s["share"]) for s in inp["shares"]}
    t = int(inp["threshold"])
    try:
        secret = shamir.reconstruct(shares, t)
    except SecAggError:
        return {"accepted": False}
    return {"accepted": True, "secret": _hex(secret)}


def _k_quantize(inp: Json) -> Json:
    cfg = quantize.QuantizationConfig(
        clip=float.fromhex(inp["clip"]), bits=int(inp["bits"]),
        max_clients=int(inp["max_clients"]), max_weight=int(inp["max_weight"]),
        modulus_bits=None if inp["modulus_bits"] is None else int(inp["modulus_bits"]))
    update = np.array([float.fromhex(x) for x in inp["update"]], dtype=np.float64)
    seed = int(inp["rng_seed"])
    uniforms = np.random.default_rng(seed).random(update.shape[0])
    values = quantize.encode(update, cfg, weight=int(inp["weight"]),
                             rng=np.random.default_rng(seed))
    return {"modulus": str(cfg.modulus), "levels": cfg.levels,
            "uniforms": [float(u).hex() for u in uniforms], "values": _ints_out(values)}


def _k_pack(inp: Json) -> Json:
    bits = int(inp["bits"])
    dtype = np.uint64 if bits > 32 else np.uint32
    values = np.array([int(v) for v in inp["values"]], dtype=dtype)
    packed = pack(values, bits)
    back = unpack(packed, bits, values.size, dtype)
    if not np.array_equal(back, values):
        raise ValueError("unpack does not invert pack")
    return {"packed": _hex(packed)}


def _k_unpack(inp: Json) -> Json:
    bits, count = int(inp["bits"]), int(inp["count"])
    dtype = np.uint64 if bits > 32 else np.uint32
    try:
        values = unpack(_unhex(inp["packed"]), bits, count, dtype)
    except SecAggError:
        return {"accepted": False}
    return {"accepted": True, "values": _ints_out(values)}


def _config_from(fields: Json) -> SessionConfig:
    return SessionConfig(
        cohort=tuple(int(u) for u in fields["cohort"]), dim=int(fields["dim"]),
        modulus=int(fields["modulus"]), threshold=int(fields["threshold"]),
        graph=graphs.GraphKind(fields["graph"]), degree=int(fields["degree"]),
        round_index=int(fields["round_index"]), task_hash=_unhex(fields["task_hash"]),
        min_cohort=int(fields["min_cohort"]), dropout_ppm=int(fields["dropout_ppm"]),
        corruption_ppm=int(fields["corruption_ppm"]), mode=Mode(fields["mode"]),
        prg=StreamCipher(fields["prg"]))


def _config_fields(cfg: SessionConfig) -> Json:
    return {"cohort": list(cfg.cohort), "dim": cfg.dim, "modulus": str(cfg.modulus),
            "threshold": cfg.threshold, "graph": cfg.graph.value, "degree": cfg.degree,
            "round_index": str(cfg.round_index), "task_hash": _hex(cfg.task_hash),
            "min_cohort": cfg.min_cohort, "dropout_ppm": cfg.dropout_ppm,
            "corruption_ppm": cfg.corruption_ppm, "mode": cfg.mode.value, "prg": cfg.prg.value}


def _k_config(inp: Json) -> Json:
    cfg = _config_from(inp)
    data = cfg.encode()
    if SessionConfig.decode(data) != cfg:
        raise ValueError("decode(encode(config)) differs from the config")
    digest = hashlib.sha256(data).digest()
    return {"encoding": _hex(data), "sha256": _hex(digest), "session_id": _hex(cfg.session_id)}


def _k_config_reject(inp: Json) -> Json:
    try:
        SessionConfig.decode(_unhex(inp["encoding"]))
    except SecAggError as exc:
        return {"accepted": False, "error": type(exc).__name__}
    return {"accepted": True}


def _k_permutation(inp: Json) -> Json:
    ids, seed = [int(u) for u in inp["ids"]], _unhex(inp["seed"])
    key = hkdf(seed, Label.GRAPH_PERMUTATION, encode_context(len(ids)), length=32)
    return {"key": _hex(key), "ring": graphs.permutation(ids, seed)}


def _k_harary(inp: Json) -> Json:
    ids, seed, k = [int(u) for u in inp["ids"]], _unhex(inp["seed"]), int(inp["k"])
    table = graphs.harary_neighbours(ids, k, seed)
    return {"ring": graphs.permutation(ids, seed),
            "neighbours": {str(u): list(table[u]) for u in sorted(table)}}


def _k_harary_config(inp: Json) -> Json:
    cfg = _config_from(inp)
    return {"session_id": _hex(cfg.session_id),
            "neighbours": {str(u): list(cfg.neighbours(u)) for u in cfg.cohort}}


# --- messages as JSON fields ------------------------------------------------------------------
def message_fields(msg: Message) -> Json:
    """The fields of a message as JSON (bytes in hex), inverse of :func:`message_from_fields`."""
    if isinstance(msg, AdvertiseKeys):
        return {"sender": msg.sender, "enc_pk": _hex(msg.enc_pk), "mask_pk": _hex(msg.mask_pk),
                "signature": _hex(msg.signature)}
    if isinstance(msg, KeyBroadcast):
        return {"entries": [{"client_id": e.client_id, "enc_pk": _hex(e.enc_pk),
                             "mask_pk": _hex(e.mask_pk), "signature": _hex(e.signature)}
                            for e in msg.entries]}
    if isinstance(msg, ShareKeys):
        return {"sender": msg.sender, "self_mask_commitment": _hex(msg.self_mask_commitment),
                "ciphertexts": [{"receiver": r, "ciphertext": _hex(c)}
                                for r, c in msg.ciphertexts]}
    if isinstance(msg, CiphertextBundle):
        return {"ciphertexts": [{"sender": s, "ciphertext": _hex(c)}
                                for s, c in msg.ciphertexts]}
    if isinstance(msg, MaskedInput):
        return {"sender": msg.sender, "bits": msg.bits, "count": msg.count,
                "packed": _hex(msg.packed)}
    if isinstance(msg, UnmaskRequest):
        return {"alive": list(msg.alive), "dropped": list(msg.dropped)}
    if isinstance(msg, UnmaskResponse):
        return {"sender": msg.sender, "shares": [{"owner": o, "kind": int(k), "share": _hex(s)}
                                                 for o, k, s in msg.shares]}
    if isinstance(msg, ConsistencyRequest):
        return {"alive": list(msg.alive), "dropped": list(msg.dropped),
                "signatures": [{"signer": s, "signature": _hex(g)} for s, g in msg.signatures]}
    if isinstance(msg, ConsistencySignature):
        return {"sender": msg.sender, "signature": _hex(msg.signature)}
    if isinstance(msg, Abort):
        return {"reason": msg.reason}
    raise TypeError(f"not a message: {type(msg).__name__}")


def message_from_fields(type_name: str, f: Json) -> Message:
    """Build the message named ``type_name`` from JSON fields (see :func:`message_fields`)."""
    if type_name == "AdvertiseKeys":
        return AdvertiseKeys(int(f["sender"]), _unhex(f["enc_pk"]), _unhex(f["mask_pk"]),
                             _unhex(f["signature"]))
    if type_name == "KeyBroadcast":
        return KeyBroadcast(tuple(KeyEntry(int(e["client_id"]), _unhex(e["enc_pk"]),
                                           _unhex(e["mask_pk"]), _unhex(e["signature"]))
                                  for e in f["entries"]))
    if type_name == "ShareKeys":
        return ShareKeys(int(f["sender"]), tuple((int(c["receiver"]), _unhex(c["ciphertext"]))
                                                 for c in f["ciphertexts"]),
                         _unhex(f["self_mask_commitment"]))
    if type_name == "CiphertextBundle":
        return CiphertextBundle(tuple((int(c["sender"]), _unhex(c["ciphertext"]))
                                      for c in f["ciphertexts"]))
    if type_name == "MaskedInput":
        return MaskedInput(int(f["sender"]), int(f["bits"]), int(f["count"]),
                           _unhex(f["packed"]))
    if type_name == "UnmaskRequest":
        return UnmaskRequest(tuple(int(x) for x in f["alive"]),
                             tuple(int(x) for x in f["dropped"]))
    if type_name == "UnmaskResponse":
        return UnmaskResponse(int(f["sender"]), tuple(
            (int(s["owner"]), ShareKind(int(s["kind"])), _unhex(s["share"])) for s in f["shares"]))
    if type_name == "ConsistencyRequest":
        return ConsistencyRequest(tuple(int(x) for x in f["alive"]),
                                  tuple(int(x) for x in f["dropped"]),
                                  tuple((int(s["signer"]), _unhex(s["signature"]))
                                        for s in f["signatures"]))
    if type_name == "ConsistencySignature":
        return ConsistencySignature(int(f["sender"]), _unhex(f["signature"]))
    if type_name == "Abort":
        return Abort(str(f["reason"]))
    raise ValueError(f"unknown message type {type_name!r}")


def _k_message(inp: Json) -> Json:
    msg = message_from_fields(inp["type"], inp["fields"])
    data = msg.encode()
    back = decode(data)
    if back != msg or type(back).__name__ != inp["type"]:
        raise ValueError("decode(encode(message)) differs from the message")
    return {"type_code": int(msg.TYPE), "encoding": _hex(data)}


# --- one complete session ---------------------------------------------------------------------
def _session_inputs(cfg: SessionConfig) -> dict[int, list[int]]:
    """Inputs that anyone can recompute: x_u[i] = (1000 u + 7 i) mod R."""
    return {u: [(1000 * u + 7 * i) % cfg.modulus for i in range(cfg.dim)] for u in cfg.cohort}


def run_session(cfg: SessionConfig, inputs: dict[int, list[int]], seeds: dict[int, bytes],
                drop_after_share_keys: Sequence[int]) -> Json:
    """Drive one semi-honest session deterministically and record every message in order.

    Order (normative for the vector): per round, the server's messages to clients in
    ascending id order, each client's reply right after it is computed, then the
    replies delivered to the server in ascending id order and the round closed. A
    client in ``drop_after_share_keys`` sends its ShareKeys and then nothing: it does
    not read its CiphertextBundle. The server runs one thread; its outputs do not
    depend on threads anyway (spec section 8.5 step 3).
    """
    dropped = set(drop_after_share_keys)
    server = ServerProtocol(cfg, threads=1)
    clients = {u: ClientProtocol(cfg, u, np.array(inputs[u], dtype=mask_dtype(cfg.modulus)),
                                 entropy=DeterministicEntropy(seeds[u])) for u in cfg.cohort}
    log: list[Json] = []

    def record(round_name: str, sender: str, receiver: str, msg: Message,
               delivered: bool = True) -> bytes:
        data = msg.encode()
        log.append({"index": len(log), "round": round_name, "from": sender, "to": receiver,
                    "type": type(msg).__name__, "delivered": delivered, "hex": _hex(data)})
        return data

    replies: dict[int, bytes] = {}
    for u in cfg.cohort:
        replies[u] = record("advertise-keys", f"client {u}", "server", clients[u].start())
    rounds = ("share-keys", "masked-input", "unmasking")
    for i, round_name in enumerate((*rounds, "end")):
        for u in sorted(replies):
            server.receive(decode(replies[u]))  # type: ignore[arg-type]
        outgoing = server.close_round()
        if server.state in (ServerState.DONE, ServerState.ABORTED) or i == len(rounds):
            for u, msg in sorted(outgoing.items()):
                record(round_name, "server", f"client {u}", msg)
            break
        replies = {}
        for u, msg in sorted(outgoing.items()):
            gone = u in dropped and round_name != "share-keys"
            data = record(round_name, "server", f"client {u}", msg, delivered=not gone)
            if gone:
                continue
            reply = clients[u].handle(decode(data))  # type: ignore[arg-type]
            if reply is not None:
                replies[u] = record(round_name, f"client {u}", "server", reply)
    result = server.result
    return {
        "messages": log,
        "state": server.state.value,
        "abort_reason": server.abort_reason,
        "sum": None if result is None else _ints_out(result.sum),
        "included": None if result is None else list(result.included),
        "dropped": None if result is None else list(result.dropped),
    }


def _k_session(inp: Json) -> Json:
    cfg = _config_from(inp["config"])
    inputs = {int(u): [int(x) for x in xs] for u, xs in inp["inputs"].items()}
    seeds = {int(u): _unhex(s) for u, s in inp["client_entropy_seeds"].items()}
    out = run_session(cfg, inputs, seeds, [int(u) for u in inp["drop_after_share_keys"]])
    out = {"config_encoding": _hex(cfg.encode()), "session_id": _hex(cfg.session_id), **out}
    if out["sum"] is not None:
        expect = [sum(inputs[u][i] for u in out["included"]) % cfg.modulus
                  for i in range(cfg.dim)]
        if [int(x) for x in out["sum"]] != expect:
            raise ValueError("the session's sum differs from the plaintext sum")
    return out


_KINDS: dict[str, Callable[[Json], Json]] = {
    "entropy": _k_entropy,
    "encode_context": _k_encode_context,
    "hkdf": _k_hkdf,
    "share_key": _k_share_key,
    "pairwise_seed": _k_pairwise_seed,
    "self_mask": _k_self_mask,
    "x25519": _k_x25519,
    "x25519_validate": _k_x25519_validate,
    "aead_seal": _k_aead_seal,
    "aead_open": _k_aead_open,
    "share_ciphertext": _k_share_ciphertext,
    "ed25519": _k_ed25519,
    "ed25519_verify": _k_ed25519_verify,
    "signed_advertise_keys": _k_signed_advertise,
    "signed_consistency_view": _k_signed_view,
    "prg": _k_prg,
    "shamir_split": _k_shamir,
    "shamir_reconstruct": _k_shamir_reconstruct,
    "quantize_encode": _k_quantize,
    "pack": _k_pack,
    "unpack": _k_unpack,
    "config": _k_config,
    "config_decode": _k_config_reject,
    "permutation": _k_permutation,
    "harary": _k_harary,
    "harary_config": _k_harary_config,
    "message": _k_message,
    "session": _k_session,
}


# --- the files --------------------------------------------------------------------------------
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

    msgs: list[tuple[str, Message]] = [
        ("advertise-keys", AdvertiseKeys(3, b(32), b(32))),
        ("advertise-keys-signed", AdvertiseKeys(3, b(32), b(32), b(64))),
        ("key-broadcast", KeyBroadcast((KeyEntry(1, b(32), b(32)), KeyEntry(3, b(32), b(32)),
                                        KeyEntry(9, b(32), b(32))))),
        ("share-keys", ShareKeys(3, ((1, b(102)), (9, b(102))), b(32))),
        ("ciphertext-bundle", CiphertextBundle(((1, b(102)), (9, b(102))))),
        ("masked-input", MaskedInput(3, 20, 5, pack(np.array([0, 1, 2**20 - 1, 12345, 99],
                                                             dtype=np.uint32), 20))),
        ("unmask-request", UnmaskRequest((1, 3), (9,))),
        ("unmask-response", UnmaskResponse(3, ((1, ShareKind.SELF_MASK_SEED, b(33)),
                                               (9, ShareKind.MASK_KEY, b(33))))),
        ("consistency-request", ConsistencyRequest((1, 3), (9,), ((1, b(64)),))),
        ("consistency-signature", ConsistencySignature(3, b(64))),
        ("abort", Abort("only 2 masked inputs arrived, fewer than t = 3")),
    ]
    return [_vector(name, f"{type(m).__name__} (type {int(m.TYPE)}), spec sections 7.4, 15.4",
                    "message", {"type": type(m).__name__, "fields": message_fields(m)})
            for name, m in msgs]


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


#: file name (without .json) -> (description, sections of specs/protocol.md, builder)
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


def _check_one(vec: Json) -> tuple[bool, str]:
    kind = vec.get("kind")
    compute = _KINDS.get(kind) if isinstance(kind, str) else None
    if compute is None:
        return False, f"unknown kind {kind!r}"
    try:
        got = compute(vec["input"])
    except Exception as exc:  # report, never raise: the caller is an audit command
        return False, f"error while recomputing: {type(exc).__name__}: {exc}"
    want = vec.get("output")
    if got == want:
        return True, "reproduced"
    if not isinstance(want, dict):
        return False, "output is not an object"
    fields = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    return False, "differs in " + ", ".join(fields)


def check_vectors(directory: Path) -> list[tuple[str, bool, str]]:
    """Recompute every vector in ``directory`` and compare: ``(name, ok, detail)`` per vector.

    Names are ``<file>/<vector>``. A missing, unreadable or wrong-format file is one
    failed entry named after the file; a vector whose recomputation raises fails
    with the exception's type and message. Never raises for bad files.
    """
    root = Path(directory)
    results: list[tuple[str, bool, str]] = []
    for name in FILES:
        path = root / f"{name}.json"
        try:
            doc = json.loads(path.read_text(encoding="ascii"))
        except (OSError, ValueError) as exc:
            results.append((name, False, f"cannot read {path.name}: {type(exc).__name__}"))
            continue
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            results.append((name, False, f"{path.name} is not a {FORMAT} file"))
            continue
        if doc.get("version") != FORMAT_VERSION:
            results.append((name, False, f"unsupported format version {doc.get('version')!r}"))
            continue
        vectors = doc.get("vectors")
        if not isinstance(vectors, list) or not vectors:
            results.append((name, False, "no vectors"))
            continue
        for i, vec in enumerate(vectors):
            if not isinstance(vec, dict):
                results.append((f"{name}/#{i}", False, "vector is not an object"))
                continue
            ok, detail = _check_one(vec)
            results.append((f"{name}/{vec.get('name', f'#{i}')}", ok, detail))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``generate DIR`` writes the files; ``check DIR`` prints one line per vector."""
    parser = argparse.ArgumentParser(prog="python -m secagg.vectors", description=__doc__
                                     and __doc__.splitlines()[0])
    parser.add_argument("command", choices=["generate", "check"])
    parser.add_argument("directory", type=Path, nargs="?", default=Path("specs/vectors"))
    args = parser.parse_args(argv)
    if args.command == "generate":
        for path in generate(args.directory):
            print(path)
        return 0
    results = check_vectors(args.directory)
    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    failed = sum(not ok for _, ok, _ in results)
    print(f"{len(results) - failed}/{len(results)} vectors reproduced")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

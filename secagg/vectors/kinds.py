"""Vector kinds: each recomputes a vector's output from its input with this package.

Why: one function per kind serves both sides: the generator calls it to write the
output, the checker calls it again and compares, so they can never disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np

from secagg import graph as graphs
from secagg import masking, quantize
from secagg import messages as msgs
from secagg.config import SessionConfig
from secagg.crypto import aead, shamir, signatures
from secagg.crypto.agreement import X25519PrivateKey, agree, validate_public_key
from secagg.crypto.entropy import DeterministicEntropy
from secagg.crypto.kdf import encode_context, hkdf
from secagg.crypto.labels import Label
from secagg.crypto.prg import PRG_CHUNK, StreamCipher, expand_mask
from secagg.errors import SecAggError
from secagg.identity import advertise_statement, view_statement
from secagg.packing import pack, unpack
from secagg.vectors.codec import (
    Json,
    _config_from,
    _hex,
    _ints_out,
    _le64_digest,
    _unhex,
)
from secagg.vectors.session import _k_session
from secagg.wire import Writer


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
    version = int(inp.get("version", 1))  # absent: version 1 (§4.6)
    key_len = 16 if cipher is StreamCipher.AES128_CTR else 32
    chunked = version == 2 and modulus & (modulus - 1) != 0
    label = Label.MASK_PRG_CHUNKED_KEY if chunked else Label.MASK_PRG_KEY
    out = expand_mask(seed, ctx, length, modulus, cipher=cipher, version=version)
    result: Json = {"key": _hex(hkdf(seed, label, ctx, length=key_len)),
                    "dtype": str(out.dtype)}
    if version != 1 and length > PRG_CHUNK:  # the values either side of each chunk boundary
        result["boundaries"] = {str(b): _ints_out(out[b - 4 : b + 4])
                                for b in range(PRG_CHUNK, length, PRG_CHUNK)}
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
    uniforms = np.random.default_rng(seed).random((update.shape[0],))
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


def message_fields(msg: msgs.Message) -> Json:
    """The fields of a message as JSON (bytes in hex), inverse of :func:`message_from_fields`."""
    if isinstance(msg, msgs.AdvertiseKeys):
        return {"sender": msg.sender, "enc_pk": _hex(msg.enc_pk), "mask_pk": _hex(msg.mask_pk),
                "signature": _hex(msg.signature)}
    if isinstance(msg, msgs.KeyBroadcast):
        return {"entries": [{"client_id": e.client_id, "enc_pk": _hex(e.enc_pk),
                             "mask_pk": _hex(e.mask_pk), "signature": _hex(e.signature)}
                            for e in msg.entries]}
    if isinstance(msg, msgs.ShareKeys):
        return {"sender": msg.sender, "self_mask_commitment": _hex(msg.self_mask_commitment),
                "ciphertexts": [{"receiver": r, "ciphertext": _hex(c)}
                                for r, c in msg.ciphertexts]}
    if isinstance(msg, msgs.CiphertextBundle):
        return {"ciphertexts": [{"sender": s, "ciphertext": _hex(c)}
                                for s, c in msg.ciphertexts]}
    if isinstance(msg, msgs.MaskedInput):
        return {"sender": msg.sender, "bits": msg.bits, "count": msg.count,
                "packed": _hex(bytes(msg.packed))}
    if isinstance(msg, msgs.UnmaskRequest):
        return {"alive": list(msg.alive), "dropped": list(msg.dropped)}
    if isinstance(msg, msgs.UnmaskResponse):
        return {"sender": msg.sender, "shares": [{"owner": o, "kind": int(k), "share": _hex(s)}
                                                 for o, k, s in msg.shares]}
    if isinstance(msg, msgs.ConsistencyRequest):
        return {"alive": list(msg.alive), "dropped": list(msg.dropped),
                "signatures": [{"signer": s, "signature": _hex(g)} for s, g in msg.signatures]}
    if isinstance(msg, msgs.ConsistencySignature):
        return {"sender": msg.sender, "signature": _hex(msg.signature)}
    if isinstance(msg, msgs.Abort):
        return {"reason": msg.reason}
    raise TypeError(f"not a message: {type(msg).__name__}")


def message_from_fields(type_name: str, f: Json) -> msgs.Message:
    """Build the message named ``type_name`` from JSON fields (see :func:`message_fields`)."""
    if type_name == "AdvertiseKeys":
        return msgs.AdvertiseKeys(int(f["sender"]), _unhex(f["enc_pk"]), _unhex(f["mask_pk"]),
                                  _unhex(f["signature"]))
    if type_name == "KeyBroadcast":
        return msgs.KeyBroadcast(tuple(msgs.KeyEntry(int(e["client_id"]), _unhex(e["enc_pk"]),
                                                     _unhex(e["mask_pk"]), _unhex(e["signature"]))
                                       for e in f["entries"]))
    if type_name == "ShareKeys":
        return msgs.ShareKeys(int(f["sender"]), tuple((int(c["receiver"]), _unhex(c["ciphertext"]))
                                                      for c in f["ciphertexts"]),
                              _unhex(f["self_mask_commitment"]))
    if type_name == "CiphertextBundle":
        return msgs.CiphertextBundle(tuple((int(c["sender"]), _unhex(c["ciphertext"]))
                                           for c in f["ciphertexts"]))
    if type_name == "MaskedInput":
        return msgs.MaskedInput(int(f["sender"]), int(f["bits"]), int(f["count"]),
                                _unhex(f["packed"]))
    if type_name == "UnmaskRequest":
        return msgs.UnmaskRequest(tuple(int(x) for x in f["alive"]),
                                  tuple(int(x) for x in f["dropped"]))
    if type_name == "UnmaskResponse":
        return msgs.UnmaskResponse(int(f["sender"]), tuple(
            (int(s["owner"]), msgs.ShareKind(int(s["kind"])), _unhex(s["share"]))
            for s in f["shares"]))
    if type_name == "ConsistencyRequest":
        return msgs.ConsistencyRequest(tuple(int(x) for x in f["alive"]),
                                       tuple(int(x) for x in f["dropped"]),
                                       tuple((int(s["signer"]), _unhex(s["signature"]))
                                             for s in f["signatures"]))
    if type_name == "ConsistencySignature":
        return msgs.ConsistencySignature(int(f["sender"]), _unhex(f["signature"]))
    if type_name == "Abort":
        return msgs.Abort(str(f["reason"]))
    raise ValueError(f"unknown message type {type_name!r}")


def _k_message(inp: Json) -> Json:
    msg = message_from_fields(inp["type"], inp["fields"])
    data = msg.encode()
    back = msgs.decode(data)
    if back != msg or type(back).__name__ != inp["type"]:
        raise ValueError("decode(encode(message)) differs from the message")
    return {"type_code": int(msg.TYPE), "encoding": _hex(data)}


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

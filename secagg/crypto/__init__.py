"""Thin, typed wrappers over ``cryptography`` (OpenSSL) and ``pynacl`` (libsodium).

Nothing here implements a cipher, curve or KDF: each module adds the checks and
domain separation the protocol needs around a well-kept library.

Backend choice: curve operations (X25519, Ed25519) use libsodium through PyNaCl,
whose ``crypto_scalarmult`` rejects all-zero outputs; symmetric primitives
(HKDF, AES-CTR, ChaCha20, AEAD) use OpenSSL through ``cryptography``, which
offers ``update_into`` for allocation-free keystream generation (see
``../shared`` notes section 3: ~6 GB/s AES-CTR on AES-NI).
"""

"""Argument parsing shared by several ``secagg`` commands."""

from __future__ import annotations

from secagg.errors import ConfigError

__all__ = ["hex32"]


def hex32(text: str, option: str) -> bytes:
    """A 32-byte value given in hex on the command line (``--task-hash``, ``--server-key``)."""
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{option} must be 64 hex digits") from None
    if len(value) != 32:
        raise ConfigError(f"{option} must be 64 hex digits (32 bytes)")
    return value

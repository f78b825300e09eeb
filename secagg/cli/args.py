"""Argument parsing shared by several ``secagg`` commands."""

from __future__ import annotations

import os
from pathlib import Path

from secagg.errors import ConfigError

__all__ = ["hex32", "npz_path", "writable_file"]


def hex32(text: str, option: str) -> bytes:
    """A 32-byte value given in hex on the command line (``--task-hash``, ``--server-key``)."""
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{option} must be 64 hex digits") from None
    if len(value) != 32:
        raise ConfigError(f"{option} must be 64 hex digits (32 bytes)")
    return value


def npz_path(path: str | Path) -> Path:
    """Where ``numpy.savez(path)`` writes: ``.npz`` is appended unless already there."""
    p = Path(path)
    return p if p.suffix == ".npz" else p.with_name(p.name + ".npz")


def writable_file(path: str | Path, option: str) -> Path:
    """``path`` as a file this process may create or replace, or a one-line ConfigError.

    Checked before any work (a server that ran its sessions, or a simulation, must not
    fail at the end on where it writes): the folder must exist and be writable, and the
    path must not be a folder or a read-only file.
    """
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise ConfigError(f"{option} {p}: is a folder, not a file")
    if not folder.is_dir():
        why = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"{option} {p}: {folder} {why}")
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(f"{option} {p}: the file is not writable")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {p}: the folder {folder} is not writable")
    return p

"""The gRPC server's transcripts: one file per session, streamed (spec §18.x).

Why a module of its own: the round driver only says when a message passes; what
is written, where, and in which form (full vectors or their hashes) is this
module's job, so the driver stays about rounds and deadlines. Files are named
``session-<sequence>-<session id prefix>.jsonl`` in the settings' transcript
directory and are written as the records pass (the server never holds a
session's messages), then closed when the session ends.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from secagg.config import SessionConfig
from secagg.errors import ConfigError
from secagg.transcript import TranscriptWriter, Vectors


def transcript_path(directory: str | os.PathLike[str], sequence: int, sid: bytes) -> str:
    """Where session ``sequence`` (id ``sid``) is written."""
    return os.path.join(directory, f"session-{sequence:06d}-{sid.hex()[:16]}.jsonl")


def open_session_transcript(directory: str | os.PathLike[str] | None, vectors: str,
                            sequence: int, config: SessionConfig,
                            protocol_kwargs: Mapping[str, Any]) -> TranscriptWriter | None:
    """A writer for one session, its header written (None when transcripts are off).

    In active mode the header records the identity keys of the server's trust
    store (``protocol_kwargs["trust_store"]``), so the audit can check signatures.
    """
    if directory is None:
        return None
    try:
        os.makedirs(directory, exist_ok=True)
        writer = TranscriptWriter.open(transcript_path(directory, sequence, config.session_id),
                                       Vectors(vectors))
    except OSError as exc:
        raise ConfigError(f"cannot write the transcript: {exc.strerror}") from None
    writer.begin(config, protocol_kwargs.get("trust_store"))
    return writer

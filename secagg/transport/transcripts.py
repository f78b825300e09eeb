"""The gRPC server's transcripts: one file per session, streamed (spec §18.5).

Why a module of its own: the round driver only says when a message passes; where
and in which form (full vectors or their hashes) a session is written is decided
here from the :class:`~secagg.transport.settings.ServerSettings`, so the driver
stays about rounds and deadlines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from secagg.config import SessionConfig
from secagg.session_log import SessionLog, load_or_create_key
from secagg.transcript import TranscriptWriter, open_session_transcript
from secagg.transport.settings import ServerSettings


def session_log(settings: ServerSettings) -> SessionLog | None:
    """The server's signed session log (spec §18.7), None when not configured."""
    if settings.session_log is None or settings.session_log_key is None:
        return None
    return SessionLog(settings.session_log, load_or_create_key(settings.session_log_key))


def session_transcript(settings: ServerSettings, sequence: int, config: SessionConfig,
                       protocol_kwargs: Mapping[str, Any]) -> TranscriptWriter | None:
    """A writer for one session (None when transcripts are off); in active mode the
    header records the keys of the server's trust store (``protocol_kwargs``)."""
    if settings.transcript_dir is None:
        return None
    return open_session_transcript(settings.transcript_dir, sequence, config,
                                   settings.transcript_vectors,
                                   protocol_kwargs.get("trust_store"))

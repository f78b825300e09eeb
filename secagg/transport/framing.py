"""Chunk framing and explicit size limits for the gRPC transport (spec "Transport (gRPC)").

gRPC refuses messages over 4 MiB by default, and a masked vector of m = 10^6
elements at 32 bits is already 4 MB (8 MB at 64 bits). Every protocol message
therefore travels as a sequence of chunks of at most :data:`CHUNK_BYTES`, and
both ends set gRPC's own per-message limits explicitly to just above one chunk,
so a peer that sends one huge gRPC message is cut off by gRPC itself
(RESOURCE_EXHAUSTED) before any of it is buffered.

The whole protocol message is bounded too: the first chunk declares its total
length, which must not exceed what the current round can legitimately need
(:func:`client_message_limit`, :func:`server_message_limit`); only then is a
buffer of exactly that size allocated. A stream that carries more or fewer
bytes than declared is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from secagg.config import SessionConfig
from secagg.errors import ProtocolError
from secagg.messages import CIPHERTEXT_LEN, COMMITMENT_LEN, KEY_LEN, SHARE_LEN, SIGNATURE_LEN
from secagg.packing import bit_width
from secagg.rounds import Round

#: Payload bytes per chunk.
CHUNK_BYTES: Final = 1 << 20
#: gRPC's per-message limit on both sides: one chunk plus its protobuf fields.
GRPC_MESSAGE_LIMIT: Final = CHUNK_BYTES + (64 << 10)
#: The channel options client and server must agree on: the message limits above and
#: keepalive pings every 20 s (the server's ping policy admits them); each side adds its own.
GRPC_SHARED_OPTIONS: Final[tuple[tuple[str, int], ...]] = (
    ("grpc.max_receive_message_length", GRPC_MESSAGE_LIMIT),
    ("grpc.max_send_message_length", GRPC_MESSAGE_LIMIT),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
)
TRANSPORT_VERSION: Final = 1
_HEADER: Final = 4  # "SA", version, type
_SLACK: Final = 1024  # room for fields added by later message versions (active mode)


class FrameError(ProtocolError):
    """A chunk stream is malformed: wrong offsets, too long, or truncated."""


class FrameTooLargeError(FrameError):
    """A declared message length exceeds the limit for the current round."""


def split(data: bytes, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, bytes]]:
    """(offset, piece) pairs covering ``data``; an empty message is one empty chunk."""
    if not data:
        yield 0, b""
        return
    view = memoryview(data)
    for offset in range(0, len(data), chunk_bytes):
        yield offset, bytes(view[offset:offset + chunk_bytes])


class Reassembler:
    """Collects the chunks of one message into a buffer of its declared length.

    The declared length is checked against ``limit`` before anything is
    allocated, so a peer cannot make us reserve memory it never sends.
    """

    def __init__(self, total_length: int, limit: int) -> None:
        if total_length <= 0:
            raise FrameError("a message must declare a positive length")
        if total_length > limit:
            raise FrameTooLargeError(
                f"message of {total_length} bytes exceeds the limit of {limit}")
        self.total = total_length
        self._buf = bytearray(total_length)
        self._pos = 0

    @property
    def complete(self) -> bool:
        return self._pos == self.total

    def add(self, data: bytes, offset: int | None = None) -> None:
        """Append one piece; ``offset`` (when the framing carries one) must be the next byte."""
        if offset is not None and offset != self._pos:
            raise FrameError(f"chunk at offset {offset}, expected {self._pos}")
        end = self._pos + len(data)
        if end > self.total:
            raise FrameError("chunks carry more bytes than the declared length")
        self._buf[self._pos:end] = data
        self._pos = end

    def finish(self) -> bytes:
        if not self.complete:
            raise FrameError(f"stream ended after {self._pos} of {self.total} bytes (truncated)")
        data = bytes(self._buf)
        self._buf = bytearray()  # one copy alive, not two: vectors can be large
        return data


# -- limits -------------------------------------------------------------------------------
def masked_input_length(config: SessionConfig) -> int:
    """Exact encoded length of a MaskedInput for ``config``."""
    packed = (config.dim * bit_width(config.modulus) + 7) // 8
    return _HEADER + 4 + 1 + 4 + 8 + packed


def client_message_limit(config: SessionConfig, round_: Round) -> int:
    """Largest client message the server accepts in ``round_`` (spec §17.2).

    Every round has its own bound, so a 72-byte ConsistencySignature cannot be
    declared (and allocated) at the size of a masked vector.
    """
    k = config.degree
    bounds = {
        Round.ADVERTISE_KEYS: _HEADER + 4 + 2 * KEY_LEN + 4 + SIGNATURE_LEN,
        Round.SHARE_KEYS: _HEADER + 4 + COMMITMENT_LEN + 4 + (k + 1) * (4 + CIPHERTEXT_LEN),
        Round.MASKED_INPUT: masked_input_length(config),
        Round.CONSISTENCY_CHECK: _HEADER + 4 + SIGNATURE_LEN,
        Round.UNMASKING: _HEADER + 8 + (k + 1) * (4 + 1 + SHARE_LEN),
    }
    return bounds[Round(round_)] + _SLACK


def server_message_limit(config: SessionConfig) -> int:
    """Largest server message a client accepts: O(k) entries of at most 256 bytes each.

    (KeyBroadcast entries are 140 bytes, ciphertexts 126, unmask ids 4; the
    margin leaves room for signature lists of an active-mode round.)
    """
    return _HEADER + _SLACK + (config.degree + 1) * 256

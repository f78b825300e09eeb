"""One vocabulary for the protocol's rounds (spec §8, §15).

Every layer names rounds the same way: the state machines, the session
driver, the transcript and the audit, the gRPC transport, the Flower adapter,
the CLI's ``--drop-at`` values and the benchmarks. A :class:`Round` carries
its spec number (the transcript's round field), its public name (the value of
``--drop-at`` and the keys of the per-round byte counts in ``--json``), the
state name the client and server machines use while they wait for it, the
message a client sends in it and the messages the server may answer with when
it closes. Nothing else in the library spells a round as a string literal.

:func:`decode_client` and :func:`decode_server` decode one message and check
that it travels in the right direction, so callers get a precisely typed
message instead of the base class.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from secagg.errors import ConfigError, MessageDecodeError
from secagg.messages import (
    Abort,
    AdvertiseKeys,
    CiphertextBundle,
    ClientMessage,
    ConsistencyRequest,
    ConsistencySignature,
    KeyBroadcast,
    MaskedInput,
    Message,
    ServerMessage,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
    decode,
)

if TYPE_CHECKING:
    from secagg.config import Mode


class Round(enum.IntEnum):
    """A protocol round; its value is the spec's round number (transcripts, spec §18.1)."""

    ADVERTISE_KEYS = 0
    SHARE_KEYS = 1
    MASKED_INPUT = 2
    CONSISTENCY_CHECK = 3  # active mode only (spec §15.3)
    UNMASKING = 4

    @property
    def label(self) -> str:
        """Public name: ``--drop-at`` values and the per-round keys of ``--json`` output."""
        return _LABELS[self]

    @property
    def state_name(self) -> str:
        """Name of the client and server states that wait for this round's messages."""
        return _STATE_NAMES[self]

    @property
    def active_only(self) -> bool:
        """True for the round only active mode runs (ConsistencyCheck)."""
        return self is Round.CONSISTENCY_CHECK

    @property
    def client_message(self) -> type[ClientMessage]:
        """The message each client sends in this round."""
        return _CLIENT_MESSAGE[self]

    @property
    def server_messages(self) -> tuple[type[ServerMessage], ...]:
        """What the server may send when this round closes (Abort always among them)."""
        return _SERVER_MESSAGES[self]

    @classmethod
    def from_label(cls, label: str) -> Round:
        """The round with public name ``label``; a typo names every valid one."""
        for r in cls:
            if r.label == label:
                return r
        valid = ", ".join(r.label for r in cls)
        raise ConfigError(f"unknown round {label!r}; valid rounds: {valid}")

    @classmethod
    def of_client_message(cls, message: Message) -> Round:
        """The round a client message belongs to."""
        for r in cls:
            if type(message) is r.client_message:
                return r
        raise MessageDecodeError(f"{type(message).__name__} is not a client message")


_LABELS = {
    Round.ADVERTISE_KEYS: "advertise",
    Round.SHARE_KEYS: "share-keys",
    Round.MASKED_INPUT: "masked-input",
    Round.CONSISTENCY_CHECK: "consistency",
    Round.UNMASKING: "unmask",
}
_STATE_NAMES = {
    Round.ADVERTISE_KEYS: "advertise-keys",
    Round.SHARE_KEYS: "share-keys",
    Round.MASKED_INPUT: "masked-input",
    Round.CONSISTENCY_CHECK: "consistency-check",
    Round.UNMASKING: "unmasking",
}
_CLIENT_MESSAGE: dict[Round, type[ClientMessage]] = {
    Round.ADVERTISE_KEYS: AdvertiseKeys,
    Round.SHARE_KEYS: ShareKeys,
    Round.MASKED_INPUT: MaskedInput,
    Round.CONSISTENCY_CHECK: ConsistencySignature,
    Round.UNMASKING: UnmaskResponse,
}
# Closing MaskedInput asks for shares (semi-honest) or for signatures over the
# survivor set (active); closing ConsistencyCheck sends the signed set (spec §15.3).
_SERVER_MESSAGES: dict[Round, tuple[type[ServerMessage], ...]] = {
    Round.ADVERTISE_KEYS: (KeyBroadcast, Abort),
    Round.SHARE_KEYS: (CiphertextBundle, Abort),
    Round.MASKED_INPUT: (UnmaskRequest, ConsistencyRequest, Abort),
    Round.CONSISTENCY_CHECK: (ConsistencyRequest, Abort),
    Round.UNMASKING: (Abort,),
}

#: Rounds of a semi-honest session, in order.
SEMI_HONEST_ROUNDS: tuple[Round, ...] = (
    Round.ADVERTISE_KEYS, Round.SHARE_KEYS, Round.MASKED_INPUT, Round.UNMASKING)
#: Rounds of an active-mode session, in order.
ACTIVE_ROUNDS: tuple[Round, ...] = tuple(Round)


def rounds_of(mode: Mode) -> tuple[Round, ...]:
    """The rounds a session of ``mode`` runs, in order."""
    from secagg.config import Mode

    return ACTIVE_ROUNDS if Mode(mode) is Mode.ACTIVE else SEMI_HONEST_ROUNDS


def effective_round(round_: Round, mode: Mode) -> Round:
    """The round a drop scheduled at ``round_`` takes effect in under ``mode``.

    Semi-honest mode has no ConsistencyCheck: a client scheduled to stop there
    stops at the next round that exists, unmasking.
    """
    return Round.UNMASKING if round_ not in rounds_of(mode) else round_


_CLIENT_TYPES = tuple(_CLIENT_MESSAGE.values())
_SERVER_TYPES = (KeyBroadcast, CiphertextBundle, ConsistencyRequest, UnmaskRequest, Abort)


def decode_client(data: bytes, expected: Round | None = None) -> ClientMessage:
    """Decode a client -> server message; refuse a server message or, if given, another round."""
    message = decode(data)
    if not isinstance(message, _CLIENT_TYPES):
        raise MessageDecodeError(f"{type(message).__name__} is not a client message")
    if expected is not None and not isinstance(message, expected.client_message):
        raise MessageDecodeError(f"expected {expected.client_message.__name__} in round "
                                 f"{expected.label}, got {type(message).__name__}")
    return message


def decode_server(data: bytes) -> ServerMessage:
    """Decode a server -> client message; refuse a client message."""
    message = decode(data)
    if not isinstance(message, _SERVER_TYPES):
        raise MessageDecodeError(f"{type(message).__name__} is not a server message")
    return message

"""Receipts kept by the Flower mod, across messages and processes (spec §18.6).

Why in ``Context.state``: Flower may run each message in a fresh process, so the
receipt of a session lives next to the mod's persisted state on the client's
node, as digests only (34 bytes per message), and is written to the mod's
receipt directory when the session ends (unmask answered, or abort received).
Flower runs semi-honest mode only, so receipts are unsigned.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

from flwr.app import ConfigRecord, ConfigRecordValues, Context

from secagg.errors import ProtocolError
from secagg.flower.common import STATE_KEY
from secagg.rounds import Round

if TYPE_CHECKING:
    from secagg.config import SessionConfig
    from secagg.messages import ClientMessage
    from secagg.receipt import ReceiptKeeper

#: the ``Context.state`` record holding the receipt of the session in progress
RECEIPT_STATE_KEY = STATE_KEY + ".receipt"
_UP, _DOWN = 0, 1  # the direction byte of a stored entry (Direction.UP, Direction.DOWN)


def _entry(direction: int, round: int, data: bytes) -> bytes:
    """One stored entry: direction, round, SHA-256 of the message (transcript.digest)."""
    return bytes([direction, round]) + hashlib.sha256(data).digest()


def start(ctxt: Context, config: SessionConfig, client_id: int, advertise: bytes) -> None:
    """A new session: the receipt holds the AdvertiseKeys just sent."""
    round = int(Round.ADVERTISE_KEYS)
    _save(ctxt, config.session_id, client_id, round, [_entry(_UP, round, advertise)])


def step(ctxt: Context, incoming: bytes, reply: ClientMessage | None) -> None:
    """The client accepted ``incoming`` (a server message) and answered ``reply``."""
    loaded = _load(ctxt)
    if loaded is None:
        return
    sid, cid, last, entries = loaded
    entries.append(_entry(_DOWN, last, incoming))
    if reply is not None:
        last = int(Round.of_client_message(reply))
        entries.append(_entry(_UP, last, reply.encode()))
    _save(ctxt, sid, cid, last, entries)


def finish(ctxt: Context, directory: str | os.PathLike[str] | None,
           incoming: bytes | None = None) -> None:
    """The session ended (``incoming``: the server's last message, e.g. an Abort): write
    the receipt to ``directory`` and drop it from the state."""
    loaded = _load(ctxt)
    if loaded is None:
        return
    sid, cid, last, entries = loaded
    if incoming is not None:
        entries.append(_entry(_DOWN, last, incoming))
    del ctxt.state.config_records[RECEIPT_STATE_KEY]
    if directory is not None:
        _keeper(sid, cid, last, entries).receipt().write(directory)


def _keeper(sid: bytes, cid: int, last: int, entries: list[bytes]) -> ReceiptKeeper:
    """The stored receipt as a :class:`~secagg.receipt.ReceiptKeeper`, only when one is
    written: importing :mod:`secagg.receipt` (and the session driver it serves) at every
    message would cost a ClientApp process more than keeping the digests does."""
    from secagg.receipt import Entry, ReceiptKeeper
    from secagg.transcript import Direction

    return ReceiptKeeper(sid, cid, [Entry(Direction.UP if b[0] == _UP else Direction.DOWN,
                                          b[1], b[2:]) for b in entries], last)


def _save(ctxt: Context, sid: bytes, cid: int, last: int, entries: list[bytes]) -> None:
    fields: dict[str, ConfigRecordValues] = {
        "session-id": sid, "client-id": cid, "last-round": last, "entries": entries}
    ctxt.state.config_records[RECEIPT_STATE_KEY] = ConfigRecord(fields)


def _load(ctxt: Context) -> tuple[bytes, int, int, list[bytes]] | None:
    record = ctxt.state.config_records.get(RECEIPT_STATE_KEY)
    if record is None:
        return None
    sid, cid, last = record.get("session-id"), record.get("client-id"), record.get("last-round")
    raw = record.get("entries", [])
    if (not isinstance(sid, bytes) or not isinstance(cid, int) or not isinstance(last, int)
            or not isinstance(raw, list)
            or not all(isinstance(b, bytes) and len(b) == 34 and b[0] in (_UP, _DOWN)
                       for b in raw)):
        raise ProtocolError("the persisted receipt is malformed")
    return sid, cid, last, [b for b in raw if isinstance(b, bytes)]


__all__ = ["RECEIPT_STATE_KEY", "finish", "start", "step"]

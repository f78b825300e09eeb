"""Receipts kept by the Flower mod, across messages and processes (spec §18.6).

Why in ``Context.state``: Flower may run each message in a fresh process, so the
receipt of a session lives next to the mod's persisted state on the client's
node, as digests only (34 bytes per message), and is written to the mod's
receipt directory when the session ends (unmask answered, or abort received).
Flower runs semi-honest mode only, so receipts are unsigned.
"""

from __future__ import annotations

import os

from flwr.app import ConfigRecord, Context

from secagg.config import SessionConfig
from secagg.errors import ProtocolError
from secagg.flower.common import STATE_KEY
from secagg.messages import ClientMessage
from secagg.receipt import Entry, ReceiptKeeper
from secagg.rounds import Round
from secagg.transcript import Direction

#: the ``Context.state`` record holding the receipt of the session in progress
RECEIPT_STATE_KEY = STATE_KEY + ".receipt"


def start(ctxt: Context, config: SessionConfig, client_id: int, advertise: bytes) -> None:
    """A new session: the receipt holds the AdvertiseKeys just sent."""
    keeper = ReceiptKeeper(config.session_id, client_id)
    keeper.sent(int(Round.ADVERTISE_KEYS), advertise)
    _save(ctxt, keeper)


def step(ctxt: Context, incoming: bytes, reply: ClientMessage | None) -> None:
    """The client accepted ``incoming`` (a server message) and answered ``reply``."""
    keeper = _load(ctxt)
    if keeper is None:
        return
    keeper.received(keeper.last_round, incoming)
    if reply is not None:
        keeper.sent(int(Round.of_client_message(reply)), reply.encode())
    _save(ctxt, keeper)


def finish(ctxt: Context, directory: str | os.PathLike[str] | None,
           incoming: bytes | None = None) -> None:
    """The session ended (``incoming``: the server's last message, e.g. an Abort): write
    the receipt to ``directory`` and drop it from the state."""
    keeper = _load(ctxt)
    if keeper is None:
        return
    if incoming is not None:
        keeper.received(keeper.last_round, incoming)
    del ctxt.state.config_records[RECEIPT_STATE_KEY]
    if directory is not None:
        keeper.receipt().write(directory)


def _save(ctxt: Context, keeper: ReceiptKeeper) -> None:
    ctxt.state.config_records[RECEIPT_STATE_KEY] = ConfigRecord({
        "session-id": keeper.session_id, "client-id": keeper.client,
        "last-round": keeper.last_round,
        "entries": [bytes([0 if e.direction is Direction.UP else 1, e.round]) + e.digest
                    for e in keeper.entries],
    })


def _load(ctxt: Context) -> ReceiptKeeper | None:
    record = ctxt.state.config_records.get(RECEIPT_STATE_KEY)
    if record is None:
        return None
    sid, cid, last = record.get("session-id"), record.get("client-id"), record.get("last-round")
    raw = record.get("entries", [])
    if (not isinstance(sid, bytes) or not isinstance(cid, int) or not isinstance(last, int)
            or not isinstance(raw, list)
            or not all(isinstance(b, bytes) and len(b) == 34 for b in raw)):
        raise ProtocolError("the persisted receipt is malformed")
    entries = [Entry(Direction.UP if b[0] == 0 else Direction.DOWN, b[1], b[2:])
               for b in raw if isinstance(b, bytes)]
    return ReceiptKeeper(sid, cid, entries, last)


__all__ = ["RECEIPT_STATE_KEY", "finish", "start", "step"]

"""Dropout injection for the transport tests and ``simulate --transport grpc``.

A client process that SIGKILLs itself just before sending a chosen round's
message in a chosen session: the hardest dropout a server can see (no
goodbye, no closed stream, mid-session). This lives in the harness, not in
the production client: :class:`DyingClient` overrides the client's
:meth:`~secagg.transport.client.TransportClient.before_send` hook, and
``python -m secagg.transport.dropout`` runs one such client with the
``secagg client`` event output (JSON lines on stdout) that
:class:`~secagg.transport.local.LocalCluster` reads.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from secagg.config import SessionConfig
from secagg.rounds import Round, effective_round
from secagg.transport import certs
from secagg.transport.client import ClientSettings, InputProvider, TransportClient, demo_input


class DyingClient(TransportClient):
    """A client that SIGKILLs itself before sending ``die_at``'s message in ``die_session``.

    A round the session's mode lacks (ConsistencyCheck in semi-honest mode)
    takes effect at the next round that exists (:func:`secagg.rounds.effective_round`).
    """

    def __init__(self, settings: ClientSettings, inputs: InputProvider, *,
                 credentials: grpc.ChannelCredentials | None, die_at: Round,
                 die_session: int = 0, **kwargs: Any) -> None:
        super().__init__(settings, inputs, credentials=credentials, **kwargs)
        self.die_at = die_at
        self.die_session = die_session

    def before_send(self, sequence: int, config: SessionConfig, round_: Round) -> None:
        if sequence == self.die_session and round_ is effective_round(self.die_at, config.mode):
            os.kill(os.getpid(), signal.SIGKILL)  # vanish mid-session


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m secagg.transport.dropout",
                                description="a secagg client that dies at a chosen round")
    p.add_argument("--server", required=True)
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--certs", type=Path, default=None)
    p.add_argument("--insecure", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sessions", type=int, default=0)
    p.add_argument("--connect-timeout", type=float, default=30.0)
    p.add_argument("--json", action="store_true", help="accepted; events are always JSON")
    p.add_argument("--die-at", type=Round.from_label, required=True,
                   help="round label (advertise, share-keys, masked-input, consistency, unmask)")
    p.add_argument("--die-session", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    credentials = None if args.insecure else certs.channel_credentials(args.certs, args.id)
    settings = ClientSettings(server=args.server, client_id=args.id,
                              connect_timeout=args.connect_timeout, sessions=args.sessions)

    def inputs(config: SessionConfig) -> np.ndarray:
        return demo_input(args.seed, args.id, config.round_index, config.dim, config.modulus)

    def emit(event: Any) -> None:
        print(json.dumps(dict(event), sort_keys=True), flush=True)

    client = DyingClient(settings, inputs, credentials=credentials, on_event=emit,
                         die_at=args.die_at, die_session=args.die_session)
    return client.run()


if __name__ == "__main__":
    sys.exit(main())

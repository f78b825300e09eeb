"""Run a started in-process gRPC server against clients 1..n, each a thread with its
demo input (plaintext, no certificates): shared by the transport tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from secagg.transport.client import ClientSettings, TransportClient, demo_input
from secagg.transport.server import SessionOutcome, TransportServer


def run_thread_clients(
    server: TransportServer, port: int, n: int, seed: int,
    settings: Callable[[int], dict[str, Any]] = lambda u: {},
) -> tuple[list[SessionOutcome], dict[int, int]]:
    """Every session ``server`` runs, with client u's ``ClientSettings`` extended by
    ``settings(u)``; the outcomes and each client's exit code. Shuts the server down."""
    codes: dict[int, int] = {}

    def client(u: int) -> None:
        c = TransportClient(
            ClientSettings(server=f"127.0.0.1:{port}", client_id=u, connect_timeout=20,
                           **settings(u)),
            lambda cfg: demo_input(seed, u, cfg.round_index, cfg.dim, cfg.modulus),
            credentials=None)
        codes[u] = c.run()

    threads = [threading.Thread(target=client, args=(u,), daemon=True) for u in range(1, n + 1)]
    for t in threads:
        t.start()
    try:
        outcomes = server.run()
    finally:
        server.shutdown()
    for t in threads:
        t.join(timeout=20)
    return outcomes, codes

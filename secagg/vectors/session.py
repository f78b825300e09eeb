"""The session vector: one complete small session driven by :mod:`secagg.session`,
every message recorded in delivery order (spec §8, §9).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from secagg.client import ClientProtocol
from secagg.config import SessionConfig
from secagg.crypto.entropy import DeterministicEntropy
from secagg.crypto.prg import mask_dtype
from secagg.rounds import Round, decode_server
from secagg.server import ServerProtocol
from secagg.session import SessionDriver, SessionObserver
from secagg.vectors.codec import Json, _config_from, _hex, _ints_out, _unhex


def _session_inputs(cfg: SessionConfig) -> dict[int, list[int]]:
    """Inputs that anyone can recompute: x_u[i] = (1000 u + 7 i) mod R."""
    return {u: [(1000 * u + 7 * i) % cfg.modulus for i in range(cfg.dim)] for u in cfg.cohort}


def run_session(cfg: SessionConfig, inputs: dict[int, list[int]], seeds: dict[int, bytes],
                drop_after_share_keys: Sequence[int]) -> Json:
    """Drive one semi-honest session deterministically and record every message in order.

    Order (normative for the vector): per round, the server's messages to clients in
    ascending id order, each client's reply right after it is computed, then the
    replies delivered to the server in ascending id order and the round closed. A
    client in ``drop_after_share_keys`` sends its ShareKeys and then nothing: it does
    not read its CiphertextBundle. The server runs one thread; its outputs do not
    depend on threads anyway (spec section 8.5 step 3). The order is the session
    driver's (:mod:`secagg.session`); :class:`_MessageLog` writes it down.
    """
    server = ServerProtocol(cfg, threads=1)
    clients = {u: ClientProtocol(cfg, u, np.array(inputs[u], dtype=mask_dtype(cfg.modulus)),
                                 entropy=DeterministicEntropy(seeds[u])) for u in cfg.cohort}
    driver = SessionDriver(server, clients,
                           dropouts={Round.MASKED_INPUT: drop_after_share_keys})
    log = _MessageLog(driver)
    driver.observers.append(log)
    driver.run()
    result = server.result
    return {
        "messages": log.entries,
        "state": server.state.value,
        "abort_reason": server.abort_reason,
        "sum": None if result is None else _ints_out(result.sum),
        "included": None if result is None else list(result.included),
        "dropped": None if result is None else list(result.dropped),
    }


class _MessageLog(SessionObserver):
    """Every message as the vector lists it: a client's reply under its own round's state
    name, a server message under the name of the round it opens ("end" after the last),
    ``delivered`` false when the addressee has dropped and will not read it."""

    def __init__(self, driver: SessionDriver) -> None:
        self.driver = driver
        self.entries: list[Json] = []

    def _add(self, round_name: str, sender: str, receiver: str, type_name: str,
             delivered: bool, data: bytes) -> None:
        self.entries.append({"index": len(self.entries), "round": round_name, "from": sender,
                             "to": receiver, "type": type_name, "delivered": delivered,
                             "hex": _hex(data)})

    def on_reply(self, round: Round, client_id: int, data: bytes) -> None:
        self._add(round.state_name, f"client {client_id}", "server",
                  round.client_message.__name__, True, data)

    def on_down(self, round: Round, client_id: int, data: bytes) -> None:
        following = self.driver.next_round(round)
        final = following is None or self.driver.ended
        delivered = final or self.driver.listens(client_id, following)
        self._add("end" if following is None else following.state_name, "server",
                  f"client {client_id}", type(decode_server(data)).__name__, delivered, data)


def _k_session(inp: Json) -> Json:
    cfg = _config_from(inp["config"])
    inputs = {int(u): [int(x) for x in xs] for u, xs in inp["inputs"].items()}
    seeds = {int(u): _unhex(s) for u, s in inp["client_entropy_seeds"].items()}
    out = run_session(cfg, inputs, seeds, [int(u) for u in inp["drop_after_share_keys"]])
    out = {"config_encoding": _hex(cfg.encode()), "session_id": _hex(cfg.session_id), **out}
    if out["sum"] is not None:
        expect = [sum(inputs[u][i] for u in out["included"]) % cfg.modulus
                  for i in range(cfg.dim)]
        if [int(x) for x in out["sum"]] != expect:
            raise ValueError("the session's sum differs from the plaintext sum")
    return out

"""The session driver (secagg.session): observers see every message, a relay changes what
the server sees, refusals are recorded and reported, dropout schedules stop clients."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pytest

from secagg.client import ClientProtocol
from secagg.config import SessionConfig
from secagg.errors import ConfigError, ProtocolError
from secagg.messages import ClientMessage, MaskedInput, ServerMessage
from secagg.rounds import Round, decode_client, decode_server
from secagg.server import ServerProtocol, ServerState
from secagg.session import ClientChannel, Relay, SessionDriver, SessionObserver, drop_rounds
from tests.conftest import plaintext_sum, random_inputs, sums_equal

N = 10


def config(mode: str = "semi-honest") -> SessionConfig:
    return SessionConfig.create(range(1, N + 1), 8, 1 << 32, min_cohort=10, mode=mode)


class Log(SessionObserver):
    def __init__(self) -> None:
        self.events: list[tuple[str, Round, int, bytes]] = []
        self.closed: list[tuple[Round, int]] = []
        self.refusals: list[tuple[Round, int, str]] = []
        self.server_refusals: list[tuple[Round, int, str]] = []
        self.delivered: list[tuple[Round, int]] = []

    def on_reply(self, round: Round, client_id: int, data: bytes) -> None:
        self.events.append(("reply", round, client_id, data))

    def on_up(self, round: Round, client_id: int, data: bytes) -> None:
        self.events.append(("up", round, client_id, data))

    def on_down(self, round: Round, client_id: int, data: bytes) -> None:
        self.events.append(("down", round, client_id, data))

    def on_round_closed(self, round: Round, outgoing: Mapping[int, ServerMessage]) -> None:
        self.closed.append((round, len(outgoing)))

    def on_delivered(self, round: Round, client_id: int, message: ServerMessage,
                     reply: ClientMessage | None) -> None:
        self.delivered.append((round, client_id))

    def on_refusal(self, round: Round, client_id: int, error: ProtocolError) -> None:
        self.refusals.append((round, client_id, str(error)))

    def on_server_refusal(self, round: Round, client_id: int, error: ProtocolError) -> None:
        self.server_refusals.append((round, client_id, str(error)))

    def of(self, kind: str) -> list[tuple[str, Round, int, bytes]]:
        return [e for e in self.events if e[0] == kind]


def run(cfg: SessionConfig, *, relay: Relay | None = None,
        dropouts: Mapping[Round | str, Iterable[int]] | None = None,
        ) -> tuple[SessionDriver, Log, dict[int, np.ndarray]]:
    inputs = random_inputs(cfg, 1)
    server = ServerProtocol(cfg, threads=1)
    clients = {u: ClientProtocol(cfg, u, inputs[u]) for u in cfg.cohort}
    log = Log()
    driver = SessionDriver(server, clients, relay=relay, dropouts=dropouts, observers=[log])
    driver.run()
    return driver, log, inputs


def test_honest_session_observers_see_every_message() -> None:
    cfg = config()
    driver, log, inputs = run(cfg)
    assert driver.server.state is ServerState.DONE
    result = driver.server.result
    assert result is not None and list(result.included) == list(cfg.cohort)
    assert sums_equal(result.sum, plaintext_sum(inputs, result.included, cfg.modulus, cfg.dim))
    # every client speaks in every semi-honest round; the server hears exactly that
    assert [(r, u) for _, r, u, _ in log.of("reply")] == [(r, u) for _, r, u, _ in log.of("up")]
    assert sorted({(r, u) for _, r, u, _ in log.of("up")}) == sorted(
        (r, u) for r in (Round.ADVERTISE_KEYS, Round.SHARE_KEYS, Round.MASKED_INPUT,
                         Round.UNMASKING) for u in cfg.cohort)
    for _, r, _, data in log.of("up"):
        assert isinstance(decode_client(data, r), r.client_message)
    for _, r, _, data in log.of("down"):
        assert isinstance(decode_server(data), r.server_messages)
    # three rounds answer every client; unmasking closes with no message
    assert log.closed == [(Round.ADVERTISE_KEYS, N), (Round.SHARE_KEYS, N),
                          (Round.MASKED_INPUT, N), (Round.UNMASKING, 0)]
    assert len(log.delivered) == len(log.of("down")) == 3 * N
    assert not log.refusals and not log.server_refusals and not driver.refusals
    assert driver.server_seconds > 0 and set(driver.client_seconds) == set(cfg.cohort)


def test_active_mode_runs_the_consistency_round() -> None:
    from secagg.identity import generate_identities

    cfg = config("active")
    keys, trust = generate_identities(cfg.cohort)
    inputs = random_inputs(cfg, 2)
    clients = {u: ClientProtocol(cfg, u, inputs[u], identity=keys[u], trust_store=trust,
                                 expected_task_hash=cfg.task_hash) for u in cfg.cohort}
    log = Log()
    driver = SessionDriver(ServerProtocol(cfg, threads=1, trust_store=trust), clients,
                           dropouts={"consistency": {3}}, observers=[log])
    driver.run()
    assert driver.server.state is ServerState.DONE
    signers = {u for _, r, u, _ in log.of("up") if r is Round.CONSISTENCY_CHECK}
    assert signers == set(cfg.cohort) - {3}


class DropMasked(Relay):
    """Loses client 4's masked input on the way to the server."""

    def admit(self, round: Round, queued: Sequence[tuple[int, bytes]]
              ) -> list[tuple[int, bytes]]:
        return [(u, d) for u, d in queued if not (round is Round.MASKED_INPUT and u == 4)]


def test_a_relay_that_drops_a_message_changes_what_the_server_sees() -> None:
    driver, log, _ = run(config(), relay=DropMasked())
    result = driver.server.result
    assert result is not None and 4 not in result.included and len(result.included) == N - 1
    # client 4 produced it; the server never heard it
    assert ("reply", Round.MASKED_INPUT, 4) in [e[:3] for e in log.events]
    assert ("up", Round.MASKED_INPUT, 4) not in [e[:3] for e in log.events]


class Replay(Relay):
    """Sends client 2's masked input twice (a replay)."""

    def upload(self, round: Round, client_id: int, message: ClientMessage,
               data: bytes) -> Sequence[bytes]:
        return (data, data) if round is Round.MASKED_INPUT and client_id == 2 else (data,)


def test_a_replayed_message_is_refused_by_the_server_and_recorded() -> None:
    driver, log, inputs = run(config(), relay=Replay())
    assert [(r, u) for r, u, _ in log.server_refusals] == [(Round.MASKED_INPUT, 2)]
    assert driver.server_refusals == [(Round.MASKED_INPUT, 2, log.server_refusals[0][2])]
    result = driver.server.result
    assert result is not None and 2 in result.included  # the first copy counts, once
    assert sums_equal(result.sum, plaintext_sum(inputs, result.included, (1 << 32), 8))


class Tamper(Relay):
    """Hands client 5, after share-keys closes, the bundle meant for client 6."""

    def download(self, round: Round, honest: Mapping[int, ServerMessage]
                 ) -> list[tuple[int, bytes]]:
        out = list(super().download(round, honest))
        if round is Round.SHARE_KEYS:
            by = dict(out)
            out = [(u, by[6] if u == 5 else d) for u, d in out]
        return out


def test_client_refusal_is_recorded_and_reported_not_raised() -> None:
    driver, log, _ = run(config(), relay=Tamper())
    assert [(r, u) for r, u, _ in log.refusals] == [(Round.SHARE_KEYS, 5)]
    assert set(driver.refusals) == {5}
    # client 5 sent no masked input: the session goes on without it
    result = driver.server.result
    assert result is not None and 5 not in result.included


def test_strict_driver_raises_the_refusal() -> None:
    cfg = config()
    inputs = random_inputs(cfg, 1)
    clients = {u: ClientProtocol(cfg, u, inputs[u]) for u in cfg.cohort}
    driver = SessionDriver(ServerProtocol(cfg, threads=1), clients, relay=Tamper(), strict=True)
    with pytest.raises(ProtocolError):
        driver.run()


@pytest.mark.parametrize("at", [Round.ADVERTISE_KEYS, Round.SHARE_KEYS, Round.MASKED_INPUT,
                                Round.UNMASKING, "masked-input"])
def test_dropout_schedule_stops_a_client_from_that_round_on(at: Round | str) -> None:
    driver, log, _ = run(config(), dropouts={at: {3}})
    point = at if isinstance(at, Round) else Round.from_label(at)
    rounds = {r for kind, r, u, _ in log.events if kind == "up" and u == 3}
    assert rounds == {r for r in (Round.ADVERTISE_KEYS, Round.SHARE_KEYS, Round.MASKED_INPUT,
                                  Round.UNMASKING) if r < point}
    result = driver.server.result
    assert result is not None
    assert (3 in result.included) is (point is Round.UNMASKING)


def test_drop_rounds_maps_labels_and_the_missing_consistency_round() -> None:
    cohort = range(1, 6)
    mixed: dict[Round | str, set[int]] = {"consistency": {1}, Round.SHARE_KEYS: {2}}
    assert drop_rounds(mixed, config().mode, cohort) == {
        1: Round.UNMASKING, 2: Round.SHARE_KEYS}
    assert drop_rounds({"unmask": {1}, "advertise": {1}}, config().mode, cohort) == {
        1: Round.ADVERTISE_KEYS}
    with pytest.raises(ConfigError, match="outside the cohort"):
        drop_rounds({"unmask": {9}}, config().mode, cohort)
    with pytest.raises(ConfigError, match="unknown round"):
        drop_rounds({"lunch": {1}}, config().mode, cohort)


def test_masked_input_messages_reach_the_server_once_per_client() -> None:
    _, log, _ = run(config())
    masked = [decode_client(d) for _, r, _, d in log.of("up") if r is Round.MASKED_INPUT]
    assert all(isinstance(m, MaskedInput) for m in masked)
    assert sorted(m.sender for m in masked) == list(range(1, N + 1))


class Batched(ClientChannel):
    """A remote-style channel: each round's messages go out as one batch, the replies come
    back as bytes (as over Flower's grid); ``swap`` posts client 7's masked input as 8's."""

    authenticated = True

    def __init__(self, clients: Mapping[int, ClientProtocol], swap: bool = False) -> None:
        self.remote = clients
        self.swap = swap
        self.batches: list[tuple[Round | None, list[int]]] = []

    def open(self, driver: SessionDriver, round: Round, client_ids: Sequence[int]) -> None:
        self.batches.append((round, list(client_ids)))
        for u in client_ids:
            driver.post_bytes(round, u, self.remote[u].start().encode())

    def deliver(self, driver: SessionDriver, round: Round, following: Round | None,
                items: Iterable[tuple[int, bytes]]) -> None:
        batch = list(items)  # drawn in full before anything is handed out
        self.batches.append((following, [u for u, _ in batch]))
        for u, data in batch:
            reply = self.remote[u].handle(decode_server(data))
            if reply is not None and following is not None:
                sender = 8 if self.swap and u == 7 and following is Round.MASKED_INPUT else u
                driver.post_bytes(following, sender, reply.encode())


def batched_run(swap: bool) -> tuple[SessionDriver, Batched, Log, dict[int, np.ndarray]]:
    cfg = config()
    inputs = random_inputs(cfg, 3)
    channel = Batched({u: ClientProtocol(cfg, u, inputs[u]) for u in cfg.cohort}, swap)
    log = Log()
    driver = SessionDriver(ServerProtocol(cfg, threads=1), {}, observers=[log],
                           channel=channel).run()
    return driver, channel, log, inputs


def test_a_batching_channel_runs_the_same_session_with_no_local_clients() -> None:
    driver, channel, log, inputs = batched_run(swap=False)
    result = driver.server.result
    assert result is not None and list(result.included) == list(range(1, N + 1))
    assert sums_equal(result.sum, plaintext_sum(inputs, result.included, (1 << 32), 8))
    # one batch per round: open, then after each closed round (empty after unmasking)
    assert channel.batches == [(r, list(range(1, N + 1))) for r in (
        Round.ADVERTISE_KEYS, Round.SHARE_KEYS, Round.MASKED_INPUT, Round.UNMASKING)] + [
        (None, [])]
    assert len(log.of("reply")) == len(log.of("up")) == 4 * N
    assert not log.server_refusals


def test_an_authenticated_channel_refuses_a_message_naming_another_sender() -> None:
    driver, _, log, _ = batched_run(swap=True)
    # client 7's masked input arrives as 8's: refused; 8's own copy is a duplicate
    assert [(r, u) for r, u, _ in log.server_refusals] == [(Round.MASKED_INPUT, 8)]
    assert "another client as its sender" in log.server_refusals[0][2]
    result = driver.server.result
    assert result is not None and 7 not in result.included and 8 in result.included

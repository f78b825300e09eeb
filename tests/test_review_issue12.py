"""Regression tests for the outside review's findings 1 and 2 (spec §8, §12.1, §15.8, §16.3).

Finding 1: SecAgg+ sessions went on with more dropouts than the declared rate
allows, so the survivors' graph could split and the server learned the sum of a
small component. Finding 2: clients accepted any corruption and dropout rate the
server declared (down to Harary (k, t) = (2, 2)), and the server could grind the
Harary permutation over configurations.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from secagg import graph as graphs
from secagg.client import ClientProtocol
from secagg.config import SessionConfig
from secagg.crypto.prg import mask_dtype
from secagg.errors import ConfigError, ProtocolError
from secagg.identity import generate_identities
from secagg.messages import UnmaskRequest
from secagg.server import ServerProtocol, ServerState
from tests.conftest import Session, cohort


def _two_run_drop(config: SessionConfig, gap: int) -> tuple[set[int], list[int]]:
    """Two runs of k/2 consecutive ring positions with ``gap`` survivors between them."""
    ring = graphs.permutation(config.cohort, config.session_id)
    h = config.degree // 2
    run1, small, run2 = ring[:h], ring[h:h + gap], ring[h + gap:2 * h + gap]
    return set(run1) | set(run2), small


# -- finding 1: survivor floor and connectivity ------------------------------------------------
def _cut_seven_off(config: SessionConfig) -> Session:
    """Drop two runs of clients at masked-input so that 7 survivors are cut off from the
    rest (checked on the graph), run the session and check that the server aborted."""
    dropped, small = _two_run_drop(config, 7)
    survivors = set(config.cohort) - dropped
    assert not graphs.is_connected(survivors, config.neighbours)
    assert graphs.is_connected(set(small), config.neighbours)
    assert not any(set(config.neighbours(u)) & (survivors - set(small)) for u in small)
    s = Session(config)
    s.to_unmasking({"masked-input": dropped})
    assert s.server.state is ServerState.ABORTED
    return s


def test_partial_sum_attack_from_the_review_aborts() -> None:
    """n = 100, δ = 0.1: (k, t) = (16, 6). Dropping 16 clients in two runs of 8 at
    masked-input split the survivors into 77 + 7 and the session completed; now the
    server refuses to go on below n - floor(δn) = 90 survivors."""
    config = SessionConfig.create(cohort(100), 4, 1 << 32, graph="harary", dropout_rate=0.1)
    assert (config.degree, config.threshold) == (16, 6)
    s = _cut_seven_off(config)
    assert "90" in (s.server.abort_reason or "") and "84" in (s.server.abort_reason or "")
    assert all(not c.released for c in s.clients.values())


def test_floor_applies_at_every_round() -> None:
    config = SessionConfig.create(cohort(100), 4, 1 << 32, graph="harary", dropout_rate=0.1)
    s = Session(config)
    s.to_share_keys(drop=range(1, 12))  # 11 > floor(0.1 * 100) at advertise-keys
    assert s.server.state is ServerState.ABORTED
    assert "advertise-keys" in (s.server.abort_reason or "")
    s = Session(config)
    s.to_masked_input({"share-keys": range(1, 12)})
    assert s.server.state is ServerState.ABORTED
    # exactly floor(δn) dropouts are fine
    s = Session(config)
    s.run({"masked-input": range(1, 11)})
    s.assert_exact()


def test_disconnected_survivors_abort_even_above_the_floor() -> None:
    """n = 100, δ = 0.3: (k, t) = (26, 6); 26 dropouts (two runs of 13) stay under the
    floor of 70 survivors but cut 7 clients off: the server must not unmask."""
    config = SessionConfig.create(cohort(100), 4, 1 << 32, graph="harary", dropout_rate=0.3)
    assert (config.degree, config.threshold) == (26, 6)
    s = _cut_seven_off(config)
    assert "disconnected" in (s.server.abort_reason or "")
    assert all(not c.released for c in s.clients.values())


def test_complete_graph_has_no_floor() -> None:
    """The complete graph stays connected for any survivor set (spec §8.3): t + 1 survive."""
    config = SessionConfig.create(cohort(10), 4, 1 << 32)
    s = Session(config)
    s.run({"masked-input": [1, 2, 3]})  # 3 > floor(0.1 * 10) dropouts
    s.assert_exact()


def test_client_refuses_more_dropped_neighbours_than_the_rate_allows() -> None:
    """n = 100, δ = 0.05: D = 5, (k, t) = (12, 6). A request that shows 6 of the 12
    neighbours as dropped still leaves t alive, but proves more than D dropouts."""
    config = SessionConfig.create(cohort(100), 4, 1 << 32, graph="harary", dropout_rate=0.05)
    assert (config.degree, config.threshold) == (12, 6)
    s = Session(config)
    requests = s.to_unmasking()
    u = config.cohort[0]
    req = requests[u]
    assert isinstance(req, UnmaskRequest)
    others = [v for v in req.alive if v != u]
    forged = UnmaskRequest(tuple(sorted(set(req.alive) - set(others[:6]))),
                           tuple(sorted(others[:6])))
    with pytest.raises(ProtocolError, match="6 of its neighbours"):
        s.clients[u].handle(forged)
    assert not s.clients[u].released
    s.clients[u].handle(UnmaskRequest(tuple(sorted(set(req.alive) - set(others[:5]))),
                                      tuple(sorted(others[:5]))))  # 5 = D: accepted


def test_is_connected() -> None:
    nb = {1: (2,), 2: (1, 3), 3: (2,), 4: (5,), 5: (4,)}
    assert graphs.is_connected({1, 2, 3}, nb.__getitem__)
    assert not graphs.is_connected({1, 2, 3, 4, 5}, nb.__getitem__)
    assert not graphs.is_connected({1, 3}, nb.__getitem__)
    assert graphs.is_connected(set(), nb.__getitem__)


# -- finding 2: client-side rate policy and grinding -------------------------------------------
def _active_client(config: SessionConfig, **kwargs: object) -> ClientProtocol:
    keys, store = generate_identities(config.cohort)
    u = config.cohort[0]
    vec = np.zeros(config.dim, dtype=mask_dtype(config.modulus))
    return ClientProtocol(config, u, vec, identity=keys[u], trust_store=store,
                          expected_task_hash=config.task_hash, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [20, 100, 1000])
def test_active_client_refuses_zero_rates_harary(n: int) -> None:
    config = SessionConfig.create(cohort(n), 4, 1 << 32, graph="harary", mode="active",
                                  dropout_rate=0.0, corruption_rate=0.0)
    assert (config.degree, config.threshold) == (2, 2)
    with pytest.raises(ConfigError, match=r"corruption rate 0 .*0\.05"):
        _active_client(config)


def test_active_client_refuses_zero_corruption_complete() -> None:
    config = SessionConfig.create(cohort(100), 4, 1 << 32, mode="active", threshold=51,
                                  corruption_rate=0.0)
    with pytest.raises(ConfigError, match="corruption rate"):
        _active_client(config)


def test_grinding_round_index_from_the_review_is_refused() -> None:
    """n = 20, γ = δ = 0, (2, 2): some round_index makes two chosen corrupt clients a
    victim's only neighbours. Such a config is now refused by every active client."""
    ids = cohort(20)
    victim, corrupt = 1, {2, 3}
    found = None
    for r in range(2000):
        cfg = SessionConfig.create(ids, 4, 1 << 32, graph="harary", mode="active",
                                   dropout_rate=0.0, corruption_rate=0.0, round_index=r)
        if set(cfg.neighbours(victim)) == corrupt:
            found = cfg
            break
    assert found is not None
    with pytest.raises(ConfigError, match="corruption rate"):
        _active_client(found)


def test_client_policy_dropout_minimum() -> None:
    from secagg.policy import ClientPolicy
    config = SessionConfig.create(cohort(100), 4, 1 << 32, graph="harary", mode="active",
                                  dropout_rate=0.0, corruption_rate=0.05)
    _active_client(config)  # the default policy asks nothing of δ
    with pytest.raises(ConfigError, match=r"dropout rate 0 .*0\.1"):
        _active_client(config, policy=ClientPolicy(min_dropout_rate=0.1))


def test_semi_honest_client_enforces_an_explicit_policy_only() -> None:
    from secagg.policy import ClientPolicy
    config = SessionConfig.create(cohort(20), 4, 1 << 32, graph="harary",
                                  dropout_rate=0.0, corruption_rate=0.0)
    vec = np.zeros(4, dtype=np.uint32)
    ClientProtocol(config, 1, vec)
    with pytest.raises(ConfigError, match="corruption rate"):
        ClientProtocol(config, 1, vec, policy=ClientPolicy())


def test_active_harary_parameters_carry_a_grinding_margin() -> None:
    """A semi-malicious server may evaluate many configurations; the active finder
    therefore runs at 40 + 24 bits, and (78, 52) at n = 1000, safe for one random
    permutation at 2^-40, is refused (spec §16.3)."""
    p = graphs.find_harary_params(1000, 0.1, 0.05, threat=graphs.ThreatModel.SEMI_MALICIOUS)
    assert (p.k, p.t) == (86, 59)
    with pytest.raises(ConfigError):
        SessionConfig.create(cohort(1000), 4, 1 << 32, graph="harary", mode="active",
                             degree=78, threshold=52)
    # the semi-honest finder is unchanged (no grinding in that model)
    assert graphs.find_harary_params(1000, 0.1, 0.05) == graphs.GraphParams(36, 19, 1000)


def test_client_can_demand_a_larger_grinding_margin() -> None:
    from secagg.policy import ClientPolicy
    config = SessionConfig.create(cohort(1000), 4, 1 << 32, graph="harary", mode="active")
    _active_client(config)
    with pytest.raises(ConfigError, match="grinding"):
        _active_client(config, policy=ClientPolicy(grind_margin_bits=60))


def test_semi_honest_policy_has_no_grinding_margin() -> None:
    """A semi-honest server follows the protocol: one config, no grinding (spec §15.8)."""
    from secagg.policy import ClientPolicy
    config = SessionConfig.create(cohort(1000), 4, 1 << 32, graph="harary")
    assert (config.degree, config.threshold) == (36, 19)
    ClientProtocol(config, 1, np.zeros(4, dtype=np.uint32), policy=ClientPolicy())


def test_policy_validation() -> None:
    from secagg.policy import ClientPolicy
    for bad in ({"min_corruption_rate": 1.0}, {"min_dropout_rate": -0.1},
                {"grind_margin_bits": -1}, {"min_corruption_rate": "x"}):
        with pytest.raises(ConfigError):
            ClientPolicy(**bad)  # type: ignore[arg-type]
    assert dataclasses.replace(ClientPolicy(), min_dropout_rate=0.2).min_dropout_rate == 0.2


# -- what clients check against a server that skips the floor ----------------------------------
class _FloorlessServer(ServerProtocol):
    """A malicious server: it runs every rule except the survivor floor."""

    def _require_floor(self, count: int, round_name: str) -> None:
        return None


def test_active_client_sees_the_broken_floor_in_its_two_hop_view() -> None:
    """n = 100, active, δ = 0.1: D = 10, (k, t) = (26, 16). Eleven clients drop in two
    runs (6 and 5 ring positions, 28 apart), so no one-hop view holds more than 10 of
    them, but the two-hop view of the client between the runs holds all 11: it signs
    its view and then refuses the signed unmask request."""
    config = SessionConfig.create(cohort(100), 4, 1 << 32, graph="harary", mode="active",
                                  dropout_rate=0.1)
    assert (config.degree, config.threshold) == (26, 16)
    ring = graphs.permutation(config.cohort, config.session_id)
    dropped = set(ring[0:6]) | set(ring[28:33])
    watcher = ring[16]
    keys, store = generate_identities(config.cohort)
    server = _FloorlessServer(config, threads=1, trust_store=store)
    vec = np.zeros(config.dim, dtype=np.uint32)
    clients = {u: ClientProtocol(config, u, vec, identity=keys[u], trust_store=store,
                                 expected_task_hash=config.task_hash) for u in config.cohort}
    refusals: dict[int, str] = {}

    def exchange(outgoing: dict, drop: set[int] = set()) -> dict:  # noqa: B006
        for u, msg in sorted(outgoing.items()):
            if u in drop:
                continue
            try:
                reply = clients[u].handle(msg) if msg is not None else clients[u].start()
            except ProtocolError as exc:
                refusals[u] = str(exc)
                continue
            if reply is not None:
                server.receive(reply)
        return server.close_round()

    out = exchange(dict.fromkeys(config.cohort))        # advertise
    out = exchange(out)                                 # share keys
    out = exchange(out, drop=dropped)                   # masked input: the runs drop
    assert set(out) == set(config.cohort) - dropped     # the floorless server goes on
    out = exchange(out)                                 # consistency: views are signed
    assert watcher not in refusals
    assert clients[watcher].state.value == "unmasking"
    exchange(out)                                       # signed unmask requests
    assert "11 of its neighbours as not surviving" in refusals[watcher]
    assert not clients[watcher].released
    # an honest server would have stopped at masked-input
    s = ServerProtocol(config, threads=1, trust_store=store)
    assert s._floor == 90


def test_closed_component() -> None:
    from secagg.client import _closed_component
    nb = {1: (2, 5), 2: (1, 3), 3: (2, 4), 4: (3, 5), 5: (4, 1)}
    # ring 1-2-3-4-5; 3 and 5 dropped: 1's component {1, 2} is closed inside {1..5}
    assert _closed_component(1, {1, 2, 4}, frozenset(nb), nb.__getitem__) == 2
    # 3's status unknown: the component may continue there
    assert _closed_component(1, {1, 2}, frozenset({1, 2, 5}), nb.__getitem__) is None

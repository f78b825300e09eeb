"""Unmasking on workers (issue 15): mask ranges equal slices of whole masks, the worker
path gives the threaded path's sum byte for byte, and the server's counted work
matches the protocol (d * (n - d) agreements on the complete graph, ...)."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import os
from collections.abc import Iterator

import numpy as np
import pytest

from secagg import cli
from secagg import server as server_module
from secagg.config import SessionConfig
from secagg.crypto.prg import StreamCipher, expand_mask, expand_mask_range
from secagg.crypto.shamir import PRIME
from secagg.engine import InlineEngine, ProcessEngine, make_engine
from secagg.errors import ConfigError
from secagg.measure import simulate
from secagg.messages import ShareKind, UnmaskResponse
from secagg.rounds import Round
from secagg.server import ServerProtocol, ServerState, deal_masks
from secagg.unmask import RANGE_ALIGN, PairJob, UnmaskWork, split_ranges
from tests.conftest import (
    Session,
    cohort,
    harary_config,
    plaintext_sum,
    random_inputs,
    sums_equal,
)


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessEngine]:
    with ProcessEngine(2) as engine:
        yield engine


@pytest.mark.parametrize("cipher", list(StreamCipher))
@pytest.mark.parametrize("bits", [3, 16, 32, 33, 64])
def test_mask_range_is_a_slice_of_the_mask(cipher: StreamCipher, bits: int) -> None:
    seed = os.urandom(32)
    whole = expand_mask(seed, b"ctx", 700, 1 << bits, cipher=cipher)
    for a, b in [(0, 700), (1, 9), (5, 699), (16, 48), (17, 300), (350, 350), (699, 700)]:
        part = expand_mask_range(seed, b"ctx", a, b, 1 << bits, cipher=cipher)
        assert np.array_equal(part, whole[a:b]), (a, b)


def test_mask_range_refuses_other_moduli() -> None:
    with pytest.raises(ConfigError, match="power-of-two"):
        expand_mask_range(bytes(32), b"ctx", 0, 10, (1 << 32) - 5)
    with pytest.raises(ConfigError):
        expand_mask_range(bytes(32), b"ctx", 5, 4, 1 << 32)


@pytest.mark.parametrize("dim,parts", [(1, 2), (15, 2), (16, 3), (100, 2), (1000, 7), (33, 8)])
def test_split_ranges_cover_and_align(dim: int, parts: int) -> None:
    ranges = split_ranges(dim, parts)
    assert ranges[0][0] == 0 and ranges[-1][1] == dim and len(ranges) <= parts
    for (_, b), (c, _) in itertools.pairwise(ranges):
        assert b == c and b % RANGE_ALIGN == 0


def test_engine_needs_power_of_two_modulus() -> None:
    c = SessionConfig.create(cohort(8), 16, (1 << 32) - 5, min_cohort=5)
    with pytest.raises(ConfigError, match="power-of-two"):
        ServerProtocol(c, engine=InlineEngine(2))
    with pytest.raises(ConfigError):
        make_engine(0)
    assert make_engine(1) is None


def _unmask_both(config: SessionConfig, drops: dict[str, set[int]], engine: object,
                 seed: int) -> tuple[Session, ServerProtocol]:
    """Run a session to its last close; close it on the threaded server and on a deep
    copy of the server that unmasks on ``engine``; return both."""
    s = Session(config, seed=seed, threads=2)
    requests = s.to_unmasking(drops)
    responses = s.respond(requests, drops.get("unmask", ()))
    for _u, msg in sorted(responses.items()):
        s.server.receive(msg)  # type: ignore[arg-type]
    twin = copy.deepcopy(s.server)
    twin.engine = engine  # type: ignore[assignment]
    s.server.close_round()
    twin.close_round()
    return s, twin


def _same_work(ours: UnmaskWork, theirs: UnmaskWork, workers: int) -> bool:
    """The same primitives, except that each worker's reconstructions prepare their own
    Lagrange superset (so up to one per worker) and coefficient sets."""
    cache = {"supersets": 0, "coefficient_sets": 0, "derived_coefficient_sets": 0}
    sets = theirs.coefficient_sets + theirs.derived_coefficient_sets
    return (dataclasses.replace(ours, **cache) == dataclasses.replace(theirs, **cache)
            and ours.supersets <= theirs.supersets <= workers * max(1, ours.supersets)
            and ours.coefficient_sets + ours.derived_coefficient_sets <= sets)


CASES = [
    ("complete", {"masked-input": {2, 5, 9}}),
    ("complete", {"share-keys": {3}, "masked-input": {4, 7}, "unmask": {11}}),
    ("harary", {"masked-input": {6}}),
]


@pytest.mark.parametrize("graph,drops", CASES)
def test_workers_give_the_same_sum_byte_for_byte(pool: ProcessEngine, graph: str,
                                                 drops: dict[str, set[int]]) -> None:
    n, dim = 16, 1000
    if graph == "complete":
        config = SessionConfig.create(cohort(n), dim, 1 << 32, min_cohort=10)
    else:
        config = harary_config(cohort(24), dim, 1 << 32, dropout_rate=0.1, min_cohort=10)
    s, twin = _unmask_both(config, drops, pool, seed=3)
    s.assert_exact()
    assert twin.state is ServerState.DONE
    ours, theirs = s.server.result, twin.result
    assert ours is not None and theirs is not None
    assert ours.sum.tobytes() == theirs.sum.tobytes()
    assert _same_work(ours.work, theirs.work, pool.workers) and ours.included == theirs.included
    assert sums_equal(theirs.sum, plaintext_sum(s.inputs, theirs.included, config.modulus, dim))


def test_inline_engine_and_chacha_with_small_modulus() -> None:
    config = SessionConfig.create(cohort(12), 333, 1 << 20, min_cohort=10,
                                   prg=StreamCipher.CHACHA20)
    s, twin = _unmask_both(config, {"masked-input": {1, 12}}, InlineEngine(3), seed=4)
    s.assert_exact()
    assert s.server.result is not None and twin.result is not None
    assert s.server.result.sum.tobytes() == twin.result.sum.tobytes()


@pytest.mark.parametrize("d", [0, 1, 4])
def test_work_counts_complete_graph(d: int) -> None:
    """Complete graph, d clients drop after sharing keys: d * (n - d) agreements (one per
    dropped-survivor pair), n - d self masks, n reconstructions each checked once, d
    key checks against the advertised public keys."""
    n = 14
    config = SessionConfig.create(cohort(n), 32, 1 << 32, min_cohort=10)
    s = Session(config, seed=5)
    s.run({"masked-input": set(range(1, d + 1)), "advertise": {n} if d == 4 else set()})
    s.assert_exact()
    work = s.server.result.work  # type: ignore[union-attr]
    n_live = n - (1 if d == 4 else 0)  # a client silent from round 0 never has masks
    assert work.agreements == work.pairwise_masks == d * (n_live - d)
    assert work.self_masks == n_live - d
    assert work.interpolations == n_live and work.key_checks == d
    assert work.key_derivations == 2 * d * (n_live - d) + (n_live - d)
    assert work.threshold == config.threshold


def test_work_counts_harary_graph() -> None:
    config = harary_config(cohort(30), 32, 1 << 32, dropout_rate=0.1, min_cohort=10)
    dropped = {4, 17}
    s = Session(config, seed=6)
    s.run({"masked-input": dropped})
    s.assert_exact()
    work = s.server.result.work  # type: ignore[union-attr]
    survivors = set(config.cohort) - dropped
    assert work.agreements == sum(len(set(config.neighbours(v)) & survivors) for v in dropped)
    assert work.self_masks == len(survivors) and work.interpolations == len(config.cohort)
    # each owner's shares come from its own neighbours: share sets differ, no superset
    assert work.coefficient_sets + work.derived_coefficient_sets >= 2


# --- the simulator and the CLI: --workers, full floor ----------------------------------------
def _drop_schedule(n: int, dropped: set[int]) -> dict[Round, set[int]]:
    assert len(dropped) < n
    return {Round.MASKED_INPUT: dropped}


def test_simulate_on_workers_reports_work_and_full_floor(pool: ProcessEngine) -> None:
    n, d = 16, 5
    config = SessionConfig.create(cohort(n), 500, 1 << 32, min_cohort=10)
    inputs = random_inputs(config, 7)
    report = simulate(config, inputs, _drop_schedule(n, set(range(1, d + 1))), engine=pool)
    assert report.exact and report.workers == 2
    assert report.server_work["agreements"] == d * (n - d)
    assert report.server_work["interpolations"] == n
    assert report.full_floor_seconds > 0 and report.server_to_full_floor is not None
    assert report.full_floor_seconds == pytest.approx(sum(report.full_floor_parts.values()))


def test_full_floor_is_above_the_keystream_floor() -> None:
    """On one core, the full floor prices the keystream floor's work and more: with
    d * (n - d) agreements it must lie above it."""
    n, d = 20, 6
    config = SessionConfig.create(cohort(n), 1000, 1 << 32, min_cohort=10)
    inputs = random_inputs(config, 8)
    report = simulate(config, inputs, _drop_schedule(n, set(range(1, d + 1))), threads=1,
                      measure_memory=False)
    assert report.exact and report.workers == 1 and report.threads == 1
    assert report.full_floor_seconds >= report.floor_seconds > 0
    assert report.full_floor_parts["agreements"] > 0


@pytest.mark.parametrize("graph", ["complete", "harary"])
def test_full_floor_prices_coefficient_sets_on_points_shaped_like_the_session(
        graph: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A complete graph's first t responders are neighbouring ids; a Harary graph's
    holders lie over a random permutation, spread over the cohort, where a coefficient
    set costs more (wider differences): the floor must price the sets the server had."""
    from secagg import floor

    seen: list[list[int]] = []
    real = floor.lagrange_at_zero

    def recording(xs: list[int], prime: int) -> list[int]:
        seen.append(list(xs))
        return real(xs, prime)

    monkeypatch.setattr(floor, "lagrange_at_zero", recording)
    n = 60
    config = (SessionConfig.create(cohort(n), 100, 1 << 32, min_cohort=10) if graph == "complete"
              else harary_config(cohort(n), 100, 1 << 32, dropout_rate=0.1))
    assert (config.degree < n - 1) == (graph == "harary")
    report = simulate(config, random_inputs(config, 3), _drop_schedule(n, {4, 9}), threads=1,
                      measure_memory=False)
    assert report.exact and seen
    t = config.threshold
    for xs in seen:
        assert len(set(xs)) == len(xs) >= t and all(1 <= x <= n for x in xs)
        span = max(xs) - min(xs)
        assert span > n // 2 if graph == "harary" else span == len(xs) - 1


def test_cli_workers(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", "--clients", "12", "--dim", "100", "--dropout", "0.25", "--json",
            "--seed", "3"]
    assert cli.main([*args, "--workers", "2"]) == 0
    two = json.loads(capsys.readouterr().out)
    assert cli.main(args) == 0
    one = json.loads(capsys.readouterr().out)
    assert two["exact"] and one["exact"] and two["workers"] == 2 and one["workers"] == 1
    for key in ("full_floor_seconds", "server_to_full_floor", "floor_seconds",
                "server_to_floor", "server_seconds", "peak_server_mb", "server_work"):
        assert key in one and key in two
    assert _same_work(UnmaskWork(**one["server_work"]), UnmaskWork(**two["server_work"]), 2)
    assert one["server_work"]["agreements"] == 3 * 9
    assert cli.main([*args, "--workers", "2", "--transport", "grpc"]) == 2
    assert "--workers and --engine need --transport inproc" in capsys.readouterr().err
    assert cli.main([*args, "--workers", "0"]) == 2


def test_ray_engine_exact_sum() -> None:
    """--engine ray on a local Ray started by the engine: the same sum, byte for byte."""
    pytest.importorskip("ray")
    from secagg.engine import RayEngine

    config = SessionConfig.create(cohort(14), 300, 1 << 32, min_cohort=10)
    with RayEngine(2) as engine:
        s, twin = _unmask_both(config, {"masked-input": {2, 9}}, engine, seed=10)
    s.assert_exact()
    assert s.server.result is not None and twin.result is not None
    assert s.server.result.sum.tobytes() == twin.result.sum.tobytes()


def test_engine_choices_refused() -> None:
    with pytest.raises(ConfigError, match="unknown engine"):
        make_engine(2, "dask")
    with pytest.raises(ConfigError, match="Ray address"):
        make_engine(2, "process", address="auto")
    with pytest.raises(ConfigError, match="start method"):
        ProcessEngine(2, start_method="teleport")


@pytest.mark.parametrize("split_max", [0, 1 << 20])
def test_range_and_mask_splits_give_the_same_sum(pool: ProcessEngine, split_max: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A short vector is split by mask, a long one by range (forced here with a tiny
    MASK_SPLIT_MAX_DIM): both give the threaded server's sum and work counts."""
    monkeypatch.setattr(server_module, "MASK_SPLIT_MAX_DIM", split_max)
    config = SessionConfig.create(cohort(14), 2000, 1 << 32, min_cohort=10)
    s, twin = _unmask_both(config, {"share-keys": {2}, "masked-input": {3, 8, 13}}, pool, seed=5)
    s.assert_exact()
    ours, theirs = s.server.result, twin.result
    assert ours is not None and theirs is not None
    assert ours.sum.tobytes() == theirs.sum.tobytes()
    assert _same_work(ours.work, theirs.work, pool.workers)


def test_deal_masks_balances_and_covers_every_mask() -> None:
    jobs = [PairJob(v, bytes(32), bytes(32), tuple((w, bytes(32)) for w in range(peers)))
            for v, peers in [(1, 9), (2, 5), (3, 5), (4, 1)]]
    selfs = tuple((u, bytes(32)) for u in range(10, 22))
    dealt = deal_masks(jobs, selfs, 3)
    assert sorted(j.v for g, _ in dealt for j in g) == [1, 2, 3, 4]
    assert sorted(u for _, s in dealt for u, _ in s) == list(range(10, 22))
    loads = [2 * sum(len(j.peers) for j in g) + len(s) for g, s in dealt]
    assert len(dealt) == 3 and max(loads) - min(loads) <= 2, loads
    only_selfs = deal_masks([], selfs[:2], 4)  # no dropped client: no empty job
    assert len(only_selfs) == 2 and all(s and not g for g, s in only_selfs)


@pytest.mark.parametrize("kind", [ShareKind.SELF_MASK_SEED, ShareKind.MASK_KEY])
def test_failed_reconstruction_on_workers_aborts_as_in_process(pool: ProcessEngine,
                                                               kind: ShareKind) -> None:
    """Reconstructions run on the workers, the decision in the server: a secret that no
    subset verifies aborts with the reason, and in the order, of the threaded server."""
    config = SessionConfig.create(cohort(12), 100, 1 << 32, min_cohort=10)
    s = Session(config, seed=6, threads=2)
    requests = s.to_unmasking({"masked-input": {4, 9}})
    for u, msg in sorted(s.respond(requests).items()):
        assert isinstance(msg, UnmaskResponse)
        s.server.receive(UnmaskResponse(u, tuple(  # every share of ``kind`` is a lie
            (o, k, (PRIME - 1 - o).to_bytes(33, "big") if k is kind else v)
            for o, k, v in msg.shares)))
    twin = copy.deepcopy(s.server)
    twin.engine = pool
    s.server.close_round()
    twin.close_round()
    assert s.server.state is twin.state is ServerState.ABORTED
    assert twin.abort_reason == s.server.abort_reason
    first = "client 1's self-mask seed" if kind is ShareKind.SELF_MASK_SEED else \
        "dropped client 4's mask key"
    assert first in (twin.abort_reason or "")

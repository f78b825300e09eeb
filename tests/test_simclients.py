"""The simulator's clients on workers (issue 15): shards give exact sums in every mode and
drop point, replies reach the server as they come (never n masked vectors at once),
seeded inputs regenerate by range, and the resident-memory fields are filled."""

from __future__ import annotations

import json
import pickle
import tracemalloc
from collections.abc import Iterator, Mapping

import numpy as np
import pytest

from secagg import cli, simclients
from secagg.config import SessionConfig
from secagg.crypto.prg import mask_dtype
from secagg.engine import InlineEngine, ProcessEngine
from secagg.errors import ConfigError
from secagg.measure import simulate as measured_simulate
from secagg.messages import ServerMessage
from secagg.rounds import Round
from secagg.session import SessionObserver
from secagg.sim import plaintext_matches, simulate
from secagg.simclients import SeededInputs
from tests.conftest import cohort, harary_config, plaintext_sum, random_inputs, sums_equal


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessEngine]:
    with ProcessEngine(2) as engine:
        yield engine


def _oracle_exact(report: object, inputs: Mapping[int, np.ndarray], config: SessionConfig
                  ) -> bool:
    total = report.sum  # type: ignore[attr-defined]
    ids = report.included_ids  # type: ignore[attr-defined]
    return total is not None and sums_equal(
        total, plaintext_sum(inputs, ids, config.modulus, config.dim))


# --- seeded inputs ---------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [3, 32, 64])
def test_seeded_inputs_ranges_are_slices(bits: int) -> None:
    src = SeededInputs(5, 1000, 1 << bits, chunk=64)
    whole = src(7)
    assert whole.dtype == mask_dtype(1 << bits) and whole.shape == (1000,)
    assert int(whole.max()) < (1 << bits)
    for a, b in [(0, 1000), (0, 1), (63, 65), (64, 128), (100, 999), (500, 500)]:
        assert np.array_equal(src.range(7, a, b), whole[a:b]), (a, b)
    assert np.array_equal(src(7), whole) and not np.array_equal(src(8), whole)
    assert "seed=<hidden>" in repr(src) and "987654" not in repr(SeededInputs(987654, 9, 8))
    assert pickle.loads(pickle.dumps(src)) == src


def test_plaintext_check_streams_by_range_and_can_fail() -> None:
    src = SeededInputs(1, 3000, 1 << 32, chunk=128)
    dtype = mask_dtype(1 << 32)
    total = np.zeros(3000, dtype=dtype)
    for u in (1, 2, 5):
        total = (total.astype(np.uint64) + src(u)).astype(dtype)  # wraps mod 2^32
    assert plaintext_matches(total, [1, 2, 5], src, 1 << 32)
    assert plaintext_matches(total, [1, 2, 5], {u: src(u) for u in (1, 2, 5)}, 1 << 32)
    total[2999] ^= 1
    assert not plaintext_matches(total, [1, 2, 5], src, 1 << 32)
    assert not plaintext_matches(total, [1, 2, 5], {u: src(u) for u in (1, 2, 5)}, 1 << 32)


# --- shards in process (InlineEngine) and on worker processes ------------------------------
@pytest.mark.parametrize("drop_at", ["share-keys", "masked-input", "unmask"])
def test_shards_give_exact_sums_on_harary(drop_at: str) -> None:
    config = harary_config(cohort(30), 200, 1 << 32, dropout_rate=0.2, min_cohort=10)
    inputs = random_inputs(config, 3)
    report = simulate(config, inputs, {drop_at: {2, 11, 19}}, engine=InlineEngine(3))
    assert report.clients_on == "workers" and report.exact and not report.aborted
    assert _oracle_exact(report, inputs, config)
    # a client that drops at unmasking sent its masked input: it is included
    assert set(report.dropped_ids) == (set() if drop_at == "unmask" else {2, 11, 19})
    assert report.bytes_up_per_round["masked-input"] > 200 * 4 * 0.5


def test_shards_active_mode_exact() -> None:
    config = SessionConfig.create(cohort(12), 64, 1 << 20, mode="active", min_cohort=10)
    inputs = random_inputs(config, 4)
    report = simulate(config, inputs, {"consistency": {3}}, engine=InlineEngine(2),
                      client_min_cohort=10)
    assert report.clients_on == "workers" and report.exact
    assert _oracle_exact(report, inputs, config)


def test_one_worker_keeps_clients_in_process() -> None:
    config = SessionConfig.create(cohort(10), 50, 1 << 32, min_cohort=10)
    report = simulate(config, random_inputs(config, 5), {}, engine=None)
    assert report.clients_on == "process" and report.exact and report.workers_rss_mb == 0


class _Events(SessionObserver):
    """The order in which masked inputs are sent down (CiphertextBundle) and come up."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self.down_round: Round | None = None

    def on_round_closed(self, round: Round, outgoing: Mapping[int, ServerMessage]) -> None:
        self.down_round = round

    def on_down(self, round: Round, client_id: int, data: bytes) -> None:
        if round is Round.SHARE_KEYS:
            self.events.append(("down", client_id))

    def on_up(self, round: Round, client_id: int, data: bytes) -> None:
        if round is Round.MASKED_INPUT:
            self.events.append(("up", client_id))


def test_masked_inputs_reach_the_server_as_they_come(monkeypatch: pytest.MonkeyPatch) -> None:
    """A window of one reply: the server takes client u's masked vector before client
    u+1 is even sent its ciphertexts, so the coordinator never holds two of them."""
    monkeypatch.setattr(simclients, "REPLY_BUDGET", 1)
    config = SessionConfig.create(cohort(10), 40, 1 << 32, min_cohort=10)
    events = _Events()
    report = simulate(config, random_inputs(config, 6), {}, engine=InlineEngine(2),
                      observers=[events])
    assert report.exact
    expected: list[tuple[str, int]] = []
    for u in config.cohort:
        expected += [("down", u), ("up", u)]
    assert events.events == expected


class _MemoryAtEachCall:
    """A worker pool that records the traced memory each time a window is sent out,
    before its replies exist (the clients live in the workers, so what is traced here
    is the coordinator's: the server and the replies it was given)."""

    def __init__(self, engine: ProcessEngine) -> None:
        self.engine = engine
        self.held: list[int] = []

    @property
    def workers(self) -> int:
        return self.engine.workers

    def map(self, fn, items):  # type: ignore[no-untyped-def]
        return self.engine.map(fn, items)

    def run_on(self, calls):  # type: ignore[no-untyped-def]
        self.held.append(tracemalloc.get_traced_memory()[0])
        return self.engine.run_on(calls)


def test_a_reply_is_dropped_once_posted(pool: ProcessEngine,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """At m = 10^8 the window is one reply: between windows the coordinator holds the
    server's accumulator and nothing else, not also the previous reply (which put the
    server's peak at four vectors with the next reply's pickle buffer and its copy)."""
    monkeypatch.setattr(simclients, "REPLY_BUDGET", 1)
    dim = 1 << 18  # 1 MiB at 32 bits: far above every other allocation here
    config = SessionConfig.create(cohort(6), dim, 1 << 32, min_cohort=6)
    engine = _MemoryAtEachCall(pool)
    tracemalloc.start()
    try:
        report = simulate(config, SeededInputs(2, dim, 1 << 32), {}, engine=engine)
    finally:
        tracemalloc.stop()
    assert report.exact
    # counted from the first round's first window: the server is made (and the kernels
    # warmed up), and no vector exists yet
    _open_shards, first, *rest = engine.held
    held = [(b - first) / (dim * 4) for b in rest]
    assert len(held) >= 2 * len(config.cohort)
    assert max(held) < 1.5, held  # the accumulator only (was 2: and the last reply)
    assert max(held) > 0.9  # the accumulator is counted, so the count is of the right thing


def test_default_window_bounds_the_replies_held() -> None:
    config = SessionConfig.create(cohort(20), 10**8, 1 << 32, min_cohort=10)
    channel = simclients.ShardChannel(InlineEngine(2), config, "t")
    assert channel.window == 1  # a 400 MB masked vector is more than the budget
    small = SessionConfig.create(cohort(20), 1000, 1 << 32, min_cohort=10)
    assert simclients.ShardChannel(InlineEngine(2), small, "t").window == 20


def test_worker_processes_with_seeded_inputs(pool: ProcessEngine) -> None:
    config = harary_config(cohort(40), 300, 1 << 32, dropout_rate=0.1, min_cohort=10)
    src = SeededInputs(9, config.dim, config.modulus, chunk=100)
    report = measured_simulate(config, src, {"masked-input": {5, 30}}, engine=pool,
                               measure_floor_time=False)
    assert report.clients_on == "workers" and report.workers == 2 and report.exact
    assert _oracle_exact(report, {u: src(u) for u in config.cohort}, config)
    assert report.workers_rss_mb > 0 and report.session_rss_mb > 0
    assert report.peak_server_mb > 0  # the replay still runs at this size


def test_unpicklable_input_source_is_refused(pool: ProcessEngine) -> None:
    config = SessionConfig.create(cohort(10), 20, 1 << 32, min_cohort=10)
    dtype = mask_dtype(config.modulus)
    with pytest.raises(ConfigError, match="picklable"):
        simulate(config, lambda u: np.zeros(20, dtype=dtype), {}, engine=pool)


def test_reprs_hide_secrets() -> None:
    config = SessionConfig.create(cohort(10), 20, 1 << 32, min_cohort=10)
    spec = simclients.ShardSpec("t", config, (1, 2), SeededInputs(3, 20, 1 << 32), None,
                                None, None)
    assert "hidden" in repr(spec) and "SeededInputs" not in repr(spec)


def test_cli_reports_wall_and_peak_rss(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", "--clients", "14", "--dim", "300", "--dropout", "0.1", "--json",
            "--seed", "8", "--graph", "harary"]
    assert cli.main([*args, "--workers", "2"]) == 0
    two = json.loads(capsys.readouterr().out)
    assert cli.main(args) == 0
    one = json.loads(capsys.readouterr().out)
    assert two["exact"] and one["exact"]
    assert two["clients_on"] == "workers" and one["clients_on"] == "process"
    for r in (one, two):
        assert r["wall_seconds"] > 0 and r["peak_rss_mb"] >= r["session_rss_mb"] > 0
    assert two["workers_rss_mb"] > 0 and one["workers_rss_mb"] == 0


def test_ray_shards_exact_sum() -> None:
    pytest.importorskip("ray")
    from secagg.engine import RayEngine

    config = harary_config(cohort(20), 100, 1 << 32, dropout_rate=0.1, min_cohort=10)
    inputs = random_inputs(config, 11)
    with RayEngine(2) as engine:
        report = simulate(config, inputs, {"masked-input": {4}}, engine=engine)
    assert report.clients_on == "workers" and report.exact
    assert _oracle_exact(report, inputs, config)

"""The malicious-server explorer (spec §19.5): it finds the leaks the spec gives up, classifies
them per mode, reports them as data, and is reproducible from its seed."""

from __future__ import annotations

import json

import pytest

from secagg import cli
from secagg.attacks import explorer as ex
from secagg.attacks.strategy import CONFORMANT, GIVEN_UP, PRIMITIVES, Step, Strategy
from secagg.config import Mode
from secagg.graph import GraphKind
from secagg.rounds import Round

SEMI, ACTIVE = Mode.SEMI_HONEST, Mode.ACTIVE
HARARY, COMPLETE = GraphKind.HARARY, GraphKind.COMPLETE

@pytest.fixture(scope="module")
def semi_harary() -> ex.ExploreReport:
    return ex.explore(40, seed=3, modes=[SEMI], kinds=[HARARY])


def _strategy(mode: Mode, cfg_args: tuple[int, float, float], *steps: Step,
              corrupt: tuple[int, ...] = (), victim: int | None = None,
              round_index: int = 7) -> Strategy:
    n, gamma, delta = cfg_args
    return Strategy(mode.value, HARARY.value, n, gamma, delta, ex.POLICY_CORRUPTION,
                    round_index, corrupt=corrupt, victim=victim, steps=steps)


def test_finds_the_semi_honest_leaks_the_spec_lists(semi_harary: ex.ExploreReport) -> None:
    """Not vacuous: at a fixed seed it finds single inputs by split views and S12-type
    withheld ciphertexts, and classifies them as given up by semi-honest mode (§12.2 a)."""
    given_up = [r for r in semi_harary.leaks if not r.beyond_spec]
    assert any(len(c) == 1 for r in given_up for c in r.leaked)
    assert any("split-view" in r.effective and any("§12.2 a" in g for g in r.given_up)
               for r in given_up)
    assert any("withhold-ciphertexts" in r.effective for r in given_up)
    counts = semi_harary.primitive_counts()
    assert counts["drop"] > 0 and counts["split-view"] > 0 and counts["grind"] > 0


def test_json_schema(semi_harary: ex.ExploreReport) -> None:
    d = json.loads(json.dumps(semi_harary.to_dict()))
    assert d["sessions"] == 40
    assert sum(d["outcomes"].values()) == 40
    assert set(d["primitives"]) == set(PRIMITIVES)
    assert isinstance(d["leaks_beyond_spec"], int)
    assert d["leaks_beyond_spec"] == sum(1 for leak in d["leaks"] if leak["beyond_spec"])
    assert d["leaks"]
    for leak in d["leaks"]:
        assert leak["mode"] == "semi-honest" and leak["graph"] == "harary"
        assert isinstance(leak["beyond_spec"], bool)
        assert leak["leaked"] and all(isinstance(u, int) for c in leak["leaked"] for u in c)
        strategy = leak["strategy"]
        assert strategy["mode"] == leak["mode"] and isinstance(strategy["steps"], list)
        assert set(strategy["primitives"]) <= set(PRIMITIVES)


def test_deterministic_with_a_seed() -> None:
    def strip(report: ex.ExploreReport) -> dict[str, object]:
        d = report.to_dict()
        d.pop("seconds")
        return d

    a = ex.explore(8, seed=5, kinds=[HARARY])
    assert strip(a) == strip(ex.explore(8, seed=5, kinds=[HARARY]))
    assert [r.strategy for r in a.records] != [
        r.strategy for r in ex.explore(8, seed=6, kinds=[HARARY]).records]
    first = json.loads(a.records[0].strategy.to_json())
    assert first["primitives"] == list(a.records[0].strategy.primitives())


def test_split_view_leak_is_given_up_in_semi_honest_mode() -> None:
    """S2 on the finder's semi-honest Harary graph (n = 20, k = 4, t = 2), no corrupt
    client: the victim's input leaks, and §12.2 a gives it up."""
    cfg = ex.build_config(SEMI, HARARY, 20, 0.05, 0.1, 7)
    assert cfg is not None and cfg.degree >= 2 * cfg.threshold
    v = 20
    told = tuple(sorted(cfg.neighbours(v))[cfg.threshold:])
    st = _strategy(SEMI, (20, 0.05, 0.1), Step("split-view", Round.MASKED_INPUT.label, told,
                                                 (v,)), victim=v)
    rec = ex.run_session(0, st, cfg)
    assert (v,) in rec.leaked
    assert not rec.beyond_spec and any("§12.2 a" in g for g in rec.given_up)


def test_classification_is_data_with_spec_sections() -> None:
    assert GIVEN_UP["active"] == {}
    assert set(GIVEN_UP["semi-honest"]) <= set(PRIMITIVES)
    assert set(CONFORMANT) <= set(PRIMITIVES)
    assert not set(CONFORMANT) & set(GIVEN_UP["semi-honest"])
    assert all("§" in why for table in (CONFORMANT, *GIVEN_UP.values()) for why in table.values())


def _record(strategy: Strategy, effective: tuple[str, ...], leaked: tuple[tuple[int, ...], ...]
            ) -> ex.SessionRecord:
    return ex.SessionRecord(0, strategy, "completed", effective, leaked, "x", 0)


def test_a_leak_the_conformant_steps_reproduce_is_beyond_spec(monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """A deviation that took effect does not excuse a leak that drops alone produce."""
    drop = Step("drop", "masked-input", (1, 2), (), "ring-runs")
    split = Step("split-view", "masked-input", (3,), (4,))
    st = _strategy(SEMI, (20, 0.05, 0.1), drop, split)
    cfg = ex.build_config(SEMI, HARARY, 20, 0.05, 0.1, 7)
    assert cfg is not None
    played: list[Strategy] = []

    def fake(index: int, s: Strategy, c: object) -> ex.SessionRecord:
        played.append(s)
        return _record(s, ("drop", "split-view"), ((1, 2, 3), (5, 6, 7)))

    monkeypatch.setattr(ex, "_play", fake)
    rec = ex.run_session(0, st, cfg)
    assert rec.beyond_spec and rec.conformant_replay is not None
    assert [s.primitive for s in played[1].steps] == ["drop"] and played[1].corrupt == ()

    def fake_clean(index: int, s: Strategy, c: object) -> ex.SessionRecord:
        leaks = ((1, 2, 3), (5, 6, 7)) if len(s.steps) > 1 else ()
        return _record(s, ("drop", "split-view"), leaks)

    monkeypatch.setattr(ex, "_play", fake_clean)
    rec = ex.run_session(0, st, cfg)
    assert not rec.beyond_spec and rec.given_up and rec.conformant_replay is None
    active = _record(_strategy(ACTIVE, (20, 0.05, 0.1), split), ("split-view",), ((4,),))
    assert active.beyond_spec  # active mode gives up nothing


def test_cli_exit_codes_and_json(monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    st = _strategy(SEMI, (20, 0.05, 0.1), Step("split-view", "masked-input", (3,), (4,)))
    given_up = _record(st, ("split-view",), ((4,),))
    beyond = _record(st, ("drop",), ((1, 2), (3, 4)))
    seen: dict[str, object] = {}

    def fake(sessions: int, **kw: object) -> ex.ExploreReport:
        seen.update(kw, sessions=sessions)
        return ex.ExploreReport(0, (given_up,) * sessions, 0.0)

    monkeypatch.setattr(ex, "explore", fake)
    assert cli.main(["audit", "--explore", "2", "--seed", "9", "--mode", "active",
                     "--graph", "harary", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["sessions"] == 2 and d["leaks_beyond_spec"] == 0 and len(d["leaks"]) == 2
    assert seen == {"sessions": 2, "seed": 9, "modes": [ACTIVE], "kinds": [HARARY]}
    monkeypatch.setattr(ex, "explore", lambda n, **kw: ex.ExploreReport(0, (beyond,), 0.0))
    assert cli.main(["audit", "--explore", "1"]) == 1
    assert "BEYOND SPEC" in capsys.readouterr().out
    assert cli.main(["audit", "--explore", "0"]) == 2
    assert cli.main(["audit", "--explore", "1", "--attacks"]) == 2


def test_drop_pattern_partial_sums_are_refused() -> None:
    """Finding 1: two runs of k/2 ring positions dropped at masked-input split the
    survivors' graph; a conformant server must not learn the two partial sums."""
    cfg = ex.build_config(SEMI, HARARY, 20, 0.05, 0.1, 7)
    assert cfg is not None
    order, h = ex.ring(cfg), cfg.degree // 2
    drop = tuple(sorted(order[:h] + order[10:10 + h]))
    st = _strategy(SEMI, (20, 0.05, 0.1), Step("drop", "masked-input", drop, (), "ring-runs"))
    rec = ex.run_session(0, st, cfg)
    assert not rec.leaks, rec.describe


def test_active_rate_downgrade_and_grinding_leak_nothing() -> None:
    """Finding 2: declared γ = δ = 0 (Harary (2, 2) at n = 20) and a ground round_index that
    makes two corrupt clients (within the policy's γ = 0.1) the victim's only neighbours."""
    base = ex.build_config(ACTIVE, HARARY, 20, 0.0, 0.0, 7)
    assert base is not None and (base.degree, base.threshold) == (2, 2)
    cfg, gain = ex.grind(base, 20, frozenset({1, 2}), 4096)
    assert gain > 0 and set(cfg.neighbours(20)) == {1, 2}
    st = _strategy(ACTIVE, (20, 0.0, 0.0), corrupt=(1, 2), victim=20,
                   round_index=cfg.round_index)
    rec = ex.run_session(0, st, cfg)
    assert not rec.beyond_spec, rec.describe


def test_active_mode_yields_no_leak_beyond_spec() -> None:
    report = ex.explore(20, seed=1, modes=[ACTIVE], kinds=[HARARY])
    assert report.beyond_spec == 0, [r.strategy.describe() for r in report.leaks]


@pytest.mark.parametrize("mode", [SEMI, ACTIVE], ids=["semi-honest", "active"])
def test_complete_graph_has_no_leak_beyond_spec(mode: Mode) -> None:
    """On the complete graph the survivors never split and t > n/2 (active: > 2n/3) exceeds
    the corrupt clients the policy rate allows, so nothing found there is beyond the spec;
    the search still completes sessions and lands its deviations."""
    report = ex.explore(50, seed=4, modes=[mode], kinds=[COMPLETE])
    assert report.beyond_spec == 0, [r.strategy.describe() for r in report.leaks
                                     if r.beyond_spec]
    assert report.outcomes()["completed"] > 0
    assert report.effective_counts()["split-view"] > 0
    assert all(r.strategy.graph == "complete" and r.strategy.mode == mode.value
               for r in report.records)

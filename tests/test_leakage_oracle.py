"""The leakage oracle (secagg.attacks.leakage): what linear combinations of honest inputs
can the server compute from its view?

Correct sessions (complete and Harary, semi-honest and active, with dropouts at each
round) must give exactly the total sum over the included clients; aborted ones nothing;
hand-built views with both shares of a client, or a disconnected Harary ring, must flag
the single input or the partial sums; and on random small views the component structure
must agree with brute-force linear algebra over the rationals on the masking equations
(spec §8.3).
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secagg.attacks import Harness, Setting, evaluate
from secagg.attacks import harness as harness_module
from secagg.attacks.leakage import (
    AdversaryView,
    Leakage,
    RevealedShare,
    ViewRecorder,
    learnable,
    view_from_messages,
    view_from_transcript,
)
from secagg.attacks.scenarios import SplitViews, ThresholdPeers
from secagg.config import Mode, SessionConfig
from secagg.graph import GraphKind
from secagg.messages import ShareKind
from secagg.rounds import ACTIVE_ROUNDS, Round
from secagg.sim import SimulationReport, simulate
from secagg.transcript import Transcript, TranscriptRecorder

from .conftest import harary_config, random_inputs

B, S = ShareKind.SELF_MASK_SEED, ShareKind.MASK_KEY


def run(config: SessionConfig,
        schedule: dict[Round, set[int]]) -> tuple[Transcript, SimulationReport]:
    rec = TranscriptRecorder()
    report = simulate(config, random_inputs(config, 5), schedule, threads=1,
                      transcript=rec)
    return rec.build(), report


def configs() -> list:  # type: ignore[type-arg]
    return [
        pytest.param(SessionConfig.create(range(1, 11), 8, 1 << 32), id="semi-complete"),
        pytest.param(harary_config(range(1, 21), 8, 1 << 32, dropout_rate=0.1, min_cohort=10),
                     id="semi-harary"),
        pytest.param(SessionConfig.create(range(1, 13), 8, 1 << 32, mode="active"),
                     id="active-complete"),
    ]


# --- real sessions ----------------------------------------------------------------------------
@pytest.mark.parametrize("config", configs())
@pytest.mark.parametrize("point", [None, *ACTIVE_ROUNDS],
                         ids=lambda p: "no-drop" if p is None else p.value)
def test_correct_session_reveals_exactly_the_total_sum(config: SessionConfig,
                                                       point: Round | None) -> None:
    transcript, report = run(config, {point: {2, 5}} if point else {})
    assert not report.aborted
    leak = learnable(view_from_transcript(transcript))
    included = frozenset(report.included_ids)
    assert leak.components == (included,)
    assert leak.is_only_total_sum() and leak.within_total_sum()
    assert leak.leaked_subsets() == () and leak.singles() == frozenset()
    assert leak.can_learn(dict.fromkeys(included, 3))
    assert not leak.can_learn({min(included): 1})


def test_view_recorder_hooks_build_the_same_view() -> None:
    """The observer hooks a session driver calls give the same view as the transcript."""
    config = SessionConfig.create(range(1, 11), 8, 1 << 32)
    transcript, report = run(config, {Round.MASKED_INPUT: {3}})
    rec = ViewRecorder(config)
    for r in transcript.records:
        (rec.on_up if r.direction.value == "up" else rec.on_down)(r.round, r.client, r.data)
    view = rec.view()
    assert view == view_from_transcript(transcript)
    assert learnable(view).components == (frozenset(report.included_ids),)
    assert learnable(rec.view(corrupt=range(1, 7))).singles() == frozenset(
        report.included_ids) - set(range(1, 7))


@pytest.mark.parametrize("point", [Round.ADVERTISE_KEYS, Round.SHARE_KEYS,
                                   Round.MASKED_INPUT])
def test_aborted_session_reveals_nothing(point: Round) -> None:
    config = SessionConfig.create(range(1, 11), 8, 1 << 32)
    transcript, report = run(config, {point: {1, 2, 3, 4, 5}})
    assert report.aborted
    leak = learnable(view_from_transcript(transcript))
    assert leak.is_nothing() and leak.within_total_sum() and not leak.is_only_total_sum()
    assert leak.describe() == "nothing"


def test_corrupt_clients_below_t_still_only_total_sum() -> None:
    config = SessionConfig.create(range(1, 11), 8, 1 << 32)
    transcript, _ = run(config, {Round.MASKED_INPUT: {9}})
    leak = learnable(view_from_transcript(transcript, corrupt={1, 2, 3, 4, 5}))  # t - 1
    assert leak.components == (frozenset(range(6, 9)) | {10},)
    # t corrupt clients decrypt t b-shares and t s-shares of everyone: every input leaks
    leak = learnable(view_from_transcript(transcript, corrupt=set(range(1, 7))))
    assert leak.singles() == frozenset({7, 8, 10})


# --- hand-built views -------------------------------------------------------------------------
def complete_view(n: int, t: int, revealed: set[RevealedShare],
                  senders: set[int] | None = None) -> AdversaryView:
    ids = tuple(range(1, n + 1))
    alive = set(ids) if senders is None else senders
    nbrs = {u: frozenset(set(ids) - {u}) for u in ids}
    return AdversaryView(ids, t, {u: nbrs[u] for u in alive}, nbrs, frozenset(revealed))


def shares(kind: ShareKind, owner: int, holders: range | list[int]) -> set[RevealedShare]:
    return {RevealedShare(h, owner, kind) for h in holders if h != owner}


def test_both_shares_of_one_client_single_it_out() -> None:
    revealed = set().union(*(shares(B, u, range(1, 5)) for u in range(1, 6)))
    view = complete_view(5, 3, revealed)
    assert learnable(view).is_only_total_sum()
    leak = learnable(complete_view(5, 3, revealed | shares(S, 5, [1, 2, 3])))
    assert leak.singles() == {5}
    assert leak.components == (frozenset({1, 2, 3, 4}), frozenset({5}))
    assert set(leak.leaked_subsets()) == {frozenset({1, 2, 3, 4}), frozenset({5})}
    assert leak.can_learn({5: 1}) and leak.can_learn({1: 2, 2: 2, 3: 2, 4: 2, 5: -1})
    assert not leak.can_learn({1: 1, 2: 1})
    assert leak.basis([1, 2, 3, 4, 5]) == [[1, 1, 1, 1, 0], [0, 0, 0, 0, 1]]
    # t - 1 s-shares are not enough, nor are shares from a non-shareholder
    assert learnable(complete_view(5, 3, revealed | shares(S, 5, [1, 2]))).is_only_total_sum()


def test_disconnected_harary_survivors_give_partial_sums() -> None:
    """A ring of 10 with k = 4 (neighbours at distance 1 and 2): if 1, 2 and 6, 7 drop after
    sharing keys, the survivors {3, 4, 5} and {8, 9, 10} share no pairwise mask."""
    ids = tuple(range(1, 11))

    def ring(u: int) -> frozenset[int]:
        return frozenset(((u - 1 + d) % 10) + 1 for d in (-2, -1, 1, 2))

    nbrs = {u: ring(u) for u in ids}
    dropped, alive = {1, 2, 6, 7}, set(ids) - {1, 2, 6, 7}
    revealed: set[RevealedShare] = set()
    for u in alive:
        revealed |= shares(B, u, sorted(nbrs[u] & alive))
    for v in dropped:
        revealed |= shares(S, v, sorted(nbrs[v] & alive))
    view = AdversaryView(ids, 2, {u: nbrs[u] for u in alive}, nbrs, frozenset(revealed))
    leak = learnable(view)
    assert leak.components == (frozenset({3, 4, 5}), frozenset({8, 9, 10}))
    assert not leak.within_total_sum() and leak.singles() == frozenset()
    assert set(leak.leaked_subsets()) == set(leak.components)
    assert "the sum over {3, 4, 5}" in leak.describe()


def test_one_sided_and_substituted_masks() -> None:
    """A peer that masked with u without u masking with it leaves an unknown mask in its own
    y only; a substituted mask key is a mask the server knows."""
    ids = (1, 2, 3)
    everyone = {u: frozenset(set(ids) - {u}) for u in ids}
    revealed = frozenset(set().union(*(shares(B, u, ids) for u in ids)))
    masked = {1: frozenset({2, 3}), 2: frozenset({1, 3}), 3: frozenset({2})}
    leak = learnable(AdversaryView(ids, 2, masked, everyone, revealed))
    # P_13 is only in y_1, so y_1 is unusable, and with it y_2 (which shares P_12 with y_1
    # only) and y_3 (P_23 with y_2): nothing is learnable
    assert leak.is_nothing()
    fewer = learnable(AdversaryView(ids, 2, {1: frozenset({2, 3}), 2: frozenset({3}),
                                             3: frozenset({2})}, everyone, revealed))
    assert fewer.components == (frozenset({2, 3}),)  # y_1 alone is dead; y_2 + y_3 cancel
    sub = learnable(AdversaryView(ids, 2, masked, everyone, revealed,
                                  substituted=frozenset({(1, 3)})))
    assert sub.components == (frozenset({1, 2, 3}),)


# --- finding 8: t peers, no corrupt client --------------------------------------------------
@pytest.mark.parametrize("n", [14, 20])
def test_threshold_peers_recovers_an_input_without_corrupt_clients(n: int) -> None:
    class Attack(ThresholdPeers):
        def config(self, setting: Setting) -> SessionConfig:
            return harness_module.session_config(setting, n=n)

    h = Harness(Setting(Mode.SEMI_HONEST, GraphKind.COMPLETE), Attack()).run()
    target = max(h.config.cohort)
    assert not h.attack.corrupt
    verdict = evaluate(h)
    assert verdict.leakage is not None and verdict.leakage.singles() == {target}
    assert verdict.recovered == (target,)
    b, s = verdict.max_shares[target]
    assert b >= h.config.threshold > s  # the old both-shares question says nothing
    sent = [(r, u, d) for (u, r), items in h.sent.items() for d in items]
    view = view_from_messages(h.config, h.knowledge.received, sent)  # without `accepted`
    assert learnable(view).singles() == {target}


def test_split_views_on_harary_defaults_need_no_corrupt_client() -> None:
    """Semi-honest Harary parameters (n = 20: k = 4, t = 2) allow k >= 2t: S2 singles out the
    target with no corrupt client, and the leakage oracle sees it."""
    setting = Setting(Mode.SEMI_HONEST, GraphKind.HARARY)
    h = Harness(setting, SplitViews()).run()
    assert not h.attack.corrupt
    verdict = evaluate(h)
    target = h.attack.target  # type: ignore[attr-defined]
    assert verdict.leakage is not None and target in verdict.leakage.singles()
    assert verdict.recovered == (target,)


def test_threshold_peers_defeated_in_active_mode() -> None:
    h = Harness(Setting(Mode.ACTIVE, GraphKind.COMPLETE), ThresholdPeers()).run()
    verdict = evaluate(h)
    assert verdict.holds and verdict.leakage is not None
    assert verdict.leakage.within_total_sum()


# --- brute force ------------------------------------------------------------------------------
def _rank(rows: list[list[Fraction]]) -> int:
    m = [r[:] for r in rows]
    rank, cols = 0, len(m[0]) if m else 0
    for c in range(cols):
        pivot = next((i for i in range(rank, len(m)) if m[i][c] != 0), None)
        if pivot is None:
            continue
        m[rank], m[pivot] = m[pivot], m[rank]
        for i in range(len(m)):
            if i != rank and m[i][c] != 0:
                f = m[i][c] / m[rank][c]
                m[i] = [a - f * b for a, b in zip(m[i], m[rank], strict=True)]
        rank += 1
    return rank


def _left_null(rows: list[list[Fraction]]) -> list[list[Fraction]]:
    """A basis of {lam : lam^T rows = 0} (Gaussian elimination on the transpose)."""
    n = len(rows)
    cols = len(rows[0]) if rows else 0
    t = [[rows[i][j] for i in range(n)] for j in range(cols)]  # cols x n
    pivots: list[int] = []
    r = 0
    for c in range(n):
        p = next((i for i in range(r, len(t)) if t[i][c] != 0), None)
        if p is None:
            continue
        t[r], t[p] = t[p], t[r]
        t[r] = [a / t[r][c] for a in t[r]]
        for i in range(len(t)):
            if i != r and t[i][c] != 0:
                f = t[i][c]
                t[i] = [a - f * b for a, b in zip(t[i], t[r], strict=True)]
        pivots.append(c)
        r += 1
    basis = []
    for free in (c for c in range(n) if c not in pivots):
        vec = [Fraction(0)] * n
        vec[free] = Fraction(1)
        for i, pc in enumerate(pivots):
            vec[pc] = -t[i][free]
        basis.append(vec)
    return basis


def brute_force_rank_and_members(view: AdversaryView, leak: Leakage) -> tuple[int, bool]:
    """Rank of the learnable x-space from the equations, and whether every component's
    indicator lies in it."""
    def knows(u: int, kind: ShareKind) -> bool:
        rec = view.share_receivers.get(u, frozenset())
        held = {r.holder for r in view.revealed if r.owner == u and r.kind is kind
                and r.holder in rec} | (rec & view.corrupt)
        return u in view.corrupt or len(held - {u}) >= view.threshold

    senders = sorted(view.masked_with)
    honest = [u for u in senders if u not in view.corrupt]
    symbols: dict[object, int] = {}
    eqs: list[dict[object, int]] = []
    for u in senders:
        eq: dict[object, int] = {}
        if not knows(u, B):
            eq[("b", u)] = 1
        for v in view.masked_with[u]:
            if (u, v) in view.substituted or knows(u, S) or knows(v, S):
                continue
            key = ("p", min(u, v), max(u, v))
            eq[key] = eq.get(key, 0) + (1 if u > v else -1)
        eqs.append(eq)
        for k in eq:
            symbols.setdefault(k, len(symbols))
    if not senders:
        return 0, not leak.components
    mask_rows = [[Fraction(0)] * max(1, len(symbols)) for _ in senders]
    for i, eq in enumerate(eqs):
        for k, c in eq.items():
            mask_rows[i][symbols[k]] = Fraction(c)
    x_rows = [[Fraction(1 if u == w else 0) for w in honest] for u in senders]
    learn = [[sum((lam[i] * x_rows[i][j] for i in range(len(senders))), Fraction(0))
              for j in range(len(honest))] for lam in _left_null(mask_rows)]
    if not honest:
        return 0, not leak.components
    rank = _rank(learn) if learn else 0
    ok = all(_rank([*learn, [Fraction(1 if w in comp else 0) for w in honest]]) == rank
             for comp in leak.components)
    return rank, ok


@st.composite
def views(draw: st.DrawFn) -> AdversaryView:
    n = draw(st.integers(2, 6))
    ids = tuple(range(1, n + 1))
    t = draw(st.integers(1, 3))
    receivers = {u: frozenset(v for v in ids if v != u and draw(st.booleans()))
                 for u in ids if draw(st.integers(0, 5)) > 0}
    senders = [u for u in ids if draw(st.integers(0, 4)) > 0]
    masked = {u: frozenset(v for v in ids if v != u and draw(st.integers(0, 3)) > 0)
              for u in senders}
    revealed = frozenset(RevealedShare(h, o, k) for h in ids for o in ids for k in (B, S)
                         if h != o and draw(st.integers(0, 2)) == 0)
    corrupt = frozenset(u for u in ids if draw(st.integers(0, 5)) == 0)
    substituted = frozenset((u, v) for u in senders for v in masked[u]
                            if draw(st.integers(0, 7)) == 0)
    return AdversaryView(ids, t, masked, receivers, revealed, corrupt, substituted)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(view=views())
def test_components_match_brute_force_linear_algebra(view: AdversaryView) -> None:
    leak = learnable(view)
    rank, members = brute_force_rank_and_members(view, leak)
    assert members, leak.components
    assert rank == len(leak.components)
    covered = [u for c in leak.components for u in c]
    assert len(covered) == len(set(covered)) and set(covered) <= view.honest_senders

"""The malicious-server explorer: a seeded random search over server strategies (spec §19.5).

Why: scripted scenarios (S1-S12) test the attacks someone thought of; the
protocol's claims are about *every* strategy (issue 12). The explorer samples a
server strategy per session from small primitives (:mod:`secagg.attacks.strategy`):
which rates and ``round_index`` it declares (grinding included), which clients it
corrupts (at most floor(γn), γ the larger of the declared rate and the rate the
clients' own policy enforces), and, when each round closes, whom it drops, which
keys and ciphertexts each client sees, which survivor view each client is shown,
and which messages it replays or re-addresses. It plays that strategy on the attack
harness against honest :class:`~secagg.client.ClientProtocol` objects and asks the
leakage oracle (spec §19.2) what the server's whole view reveals. Each leak is
reported with the strategy that produced it and classified as given up by the
mode (a primitive of :data:`~secagg.attacks.strategy.GIVEN_UP` took effect) or
beyond the spec.

The randomness is the adversary's own (``random.Random(seed)``), not a secret:
a seed replays the same strategies.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from secagg import graph as graphs
from secagg.config import Mode, SessionConfig
from secagg.crypto.signatures import SigningKey
from secagg.errors import ConfigError
from secagg.identity import generate_identities
from secagg.messages import (
    CiphertextBundle,
    ConsistencyRequest,
    KeyBroadcast,
    Message,
    ShareKind,
    UnmaskRequest,
)
from secagg.rounds import Round, rounds_of

from .harness import TASK_A, Attack, Harness, Setting
from .leakage import AdversaryView, Leakage, learnable
from .oracle import adversary_view
from .scenarios import relay_request
from .strategy import (
    CONFORMANT,
    GIVEN_UP,
    PRIMITIVES,
    Step,
    Strategy,
    given_up_by,
    policy_options,
)

#: Vector length of an explored session: the oracle is structural, so tiny is enough.
DIM = 2
#: Declared corruption and dropout rates the adversary picks from (0: downgrade).
CORRUPTION_RATES = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3)
DROPOUT_RATES = (0.0, 0.05, 0.1, 0.2, 0.3)
#: The corruption rate the clients' own policy enforces in active mode (issue 12,
#: finding 2): the adversary may corrupt floor(max(this, declared) * n) clients.
POLICY_CORRUPTION = 0.1
#: Cohort sizes: small, so a session takes milliseconds.
SIZES = (10, 24)
#: round_index candidates a grinding server evaluates.
GRIND_TRIES = (16, 64, 256)

Out = dict[int, list[Message | bytes]]


# --- configurations -----------------------------------------------------------------------
def _harary_params(n: int, gamma: float, delta: float, mode: Mode) -> tuple[int, int] | None:
    """The finder's (k, t), else the smallest (k, t) the library's check accepts."""
    try:
        p = graphs.find_harary_params(n, delta, gamma, threat=mode.threat)
        return p.k, p.t
    except ConfigError:
        pass
    for k in range(2, n - 1, 2):
        for t in range(2, k + 1):
            try:
                graphs.check_harary_params(n, k, t, delta, gamma, threat=mode.threat)
            except ConfigError:
                continue
            return k, t
    return None


_PARAMS: dict[tuple[int, float, float, Mode], tuple[int, int] | None] = {}


def build_config(mode: Mode, graph: graphs.GraphKind, n: int, gamma: float, delta: float,
                 round_index: int) -> SessionConfig | None:
    """The config the adversary declares, or None when the library refuses these rates."""
    common: dict[str, object] = {"mode": mode, "round_index": round_index, "task_hash": TASK_A,
                                 "dropout_rate": delta, "corruption_rate": gamma}
    ids = range(1, n + 1)
    try:
        if graph is graphs.GraphKind.COMPLETE:
            return SessionConfig.create(ids, DIM, 1 << 32, **common)  # type: ignore[arg-type]
        key = (n, gamma, delta, mode)
        if key not in _PARAMS:
            _PARAMS[key] = _harary_params(n, gamma, delta, mode)
        params = _PARAMS[key]
        if params is None:
            return None
        return SessionConfig.create(ids, DIM, 1 << 32, graph=graphs.GraphKind.HARARY,
                                    degree=params[0], threshold=params[1],
                                    **common)  # type: ignore[arg-type]
    except ConfigError:
        return None


def ring(config: SessionConfig) -> list[int]:
    """The Harary ring of ``config`` (spec §6.2)."""
    return graphs.permutation(config.cohort, config.session_id)


def grind(config: SessionConfig, victim: int, corrupt: frozenset[int], tries: int
          ) -> tuple[SessionConfig, int]:
    """Spec §12.2 d: of ``tries`` round indices, the one that puts the most corrupt
    clients around ``victim`` (ties: the first), and how many more than the first."""
    first = score = len(corrupt & set(config.neighbours(victim)))
    best = config
    for i in range(1, tries):
        cand = replace(config, round_index=config.round_index + i)
        s = len(corrupt & set(cand.neighbours(victim)))
        if s > score:
            best, score = cand, s
    return best, score - first


# --- sampling strategies ------------------------------------------------------------------
def _drop_rounds(mode: Mode) -> list[Round]:
    return [r for r in rounds_of(mode) if r is not Round.ADVERTISE_KEYS]


def _sample_drop(rng: random.Random, cfg: SessionConfig, victim: int) -> Step:
    """Clients that stop answering at a round: at random, in ring runs, or around a victim."""
    rnd = rng.choice(_drop_rounds(cfg.mode))
    patterns = ["random", "victim-neighbours"]
    harary = cfg.degree < cfg.n - 1
    if harary:
        patterns += ["ring-runs", "ring-runs"]
    pattern = rng.choice(patterns)
    if pattern == "ring-runs":
        order, h = ring(cfg), cfg.degree // 2
        p = rng.randrange(cfg.n)
        gap = rng.randint(1, max(1, cfg.n - 3 * h))
        positions = {(p + i) % cfg.n for i in range(h)} | {
            (p + h + gap + i) % cfg.n for i in range(h)}
        ids = [order[i] for i in positions]
    elif pattern == "victim-neighbours":
        nbrs = list(cfg.neighbours(victim))
        keep = min(len(nbrs), cfg.threshold + rng.randint(0, 1))
        ids = rng.sample(nbrs, len(nbrs) - keep)
    else:
        ids = rng.sample(list(cfg.cohort), rng.randint(1, max(1, cfg.n // 3)))
    return Step("drop", rnd.label, tuple(sorted(ids)), (), pattern)


def _spread(cfg: SessionConfig, victim: int, peers: Sequence[int]) -> list[Step]:
    """S12's spread (spec §12.2 a): t clients told each peer of W dropped, each keeping t
    alive neighbours, least loaded first."""
    t = cfg.threshold
    room = {u: len(cfg.neighbours(u)) - t for u in cfg.cohort if u != victim}
    asked: dict[int, set[int]] = {u: set() for u in room}
    for w in sorted(peers):
        able = [u for u in room if u != w and w in cfg.neighbours(u) and room[u] > len(asked[u])]
        for u in sorted(able, key=lambda x: (len(asked[x]) - room[x], x))[:t]:
            asked[u].add(w)
    return [Step("split-view", Round.MASKED_INPUT.label, (u,), tuple(sorted(ws)), "spread")
            for u, ws in sorted(asked.items()) if ws]


def _sample_deviations(rng: random.Random, cfg: SessionConfig, victim: int) -> list[Step]:
    """Key lists, bundles and views that differ per client (spec §12.2 a, e)."""
    steps: list[Step] = []
    nbrs, t = sorted(cfg.neighbours(victim)), cfg.threshold
    if rng.random() < 0.15 and len(nbrs) > t:
        keep = rng.sample(nbrs, rng.randint(t, len(nbrs) - 1))
        steps.append(Step("partial-keys", Round.ADVERTISE_KEYS.label, (victim,),
                          tuple(sorted(keep))))
    if rng.random() < 0.3 and len(nbrs) > t:
        peers = sorted(rng.sample(nbrs, t if rng.random() < 0.7 else rng.randint(t, len(nbrs))))
        steps.append(Step("withhold-ciphertexts", Round.SHARE_KEYS.label, (victim,),
                          tuple(peers)))
        if rng.random() < 0.7:
            steps += _spread(cfg, victim, peers)
    if rng.random() < 0.35:
        told = rng.sample(nbrs, rng.randint(1, max(1, len(nbrs) - 1)))
        steps.append(Step("split-view", Round.MASKED_INPUT.label, tuple(sorted(told)),
                          (victim,), "victim dropped"))
    return steps


def _sample_noise(rng: random.Random, cfg: SessionConfig) -> list[Step]:
    """Replayed and re-addressed messages (refused by honest clients, or harmless)."""
    steps: list[Step] = []
    rounds = list(rounds_of(cfg.mode))
    for prim in ("replay", "readdress"):
        if rng.random() < 0.1:
            u, w = rng.sample(list(cfg.cohort), 2)
            rnd = rng.choice(rounds[1:] if prim == "replay" else rounds)
            steps.append(Step(prim, rnd.label, (u,), (w,) if prim == "readdress" else ()))
    return steps


def sample_strategy(rng: random.Random, modes: Sequence[Mode], kinds: Sequence[graphs.GraphKind],
                    policy: float = POLICY_CORRUPTION) -> tuple[Strategy, SessionConfig]:
    """One adversary: declared config (maybe ground), corrupt clients, per-round steps."""
    cfg: SessionConfig | None = None
    while cfg is None:
        mode, kind = rng.choice(list(modes)), rng.choice(list(kinds))
        n = rng.randint(*SIZES)
        gamma, delta = rng.choice(CORRUPTION_RATES), rng.choice(DROPOUT_RATES)
        cfg = build_config(mode, kind, n, gamma, delta, rng.randrange(1 << 20))
    budget = math.floor(max(policy, gamma) * n + 1e-9)
    count = rng.choice([0, budget, rng.randint(0, budget)])
    corrupt = frozenset(rng.sample(list(cfg.cohort), count))
    victim = rng.choice([u for u in cfg.cohort if u not in corrupt])
    tries = gain = 0
    if corrupt and cfg.degree < cfg.n - 1 and rng.random() < 0.5:
        tries = rng.choice(GRIND_TRIES)
        cfg, gain = grind(cfg, victim, corrupt, tries)
    steps: list[Step] = []
    if rng.random() < 0.5:
        steps.append(_sample_drop(rng, cfg, victim))
    steps += _sample_deviations(rng, cfg, victim)
    steps += _sample_noise(rng, cfg)
    strategy = Strategy(mode.value, kind.value, n, gamma, delta, policy, cfg.round_index,
                        tries, gain, tuple(sorted(corrupt)), victim, tuple(steps))
    return strategy, cfg


# --- playing a strategy -------------------------------------------------------------------
def _main(out: Out, u: int) -> Message | None:
    items = out.get(u)
    if not items or isinstance(items[-1], bytes):
        return None
    return items[-1]


class ExplorerAttack(Attack):
    """A :class:`Strategy` played through the harness's hooks (spec §19.1)."""

    def __init__(self, strategy: Strategy, config: SessionConfig) -> None:
        self.strategy = strategy
        self._config = config
        self.corrupt = frozenset(strategy.corrupt)
        self.produced: dict[bytes, str] = {}  # tampered bytes -> primitive
        self.withheld: set[int] = set()
        self._options = policy_options(config.mode, strategy.policy_corruption)
        order = list(rounds_of(config.mode))
        #: drop step -> the round at whose close its clients' messages are withheld
        self._drops = {s: order[order.index(s.round_number) - 1] for s in strategy.steps
                       if s.primitive == "drop" and s.round_number in order[1:]}

    def config(self, setting: Setting) -> SessionConfig:
        return self._config

    def client_config(self, h: Harness, u: int) -> tuple[SessionConfig, dict[str, object], bool]:
        cfg, options, _ = super().client_config(h, u)
        return cfg, {**options, **self._options}, False

    def server_messages(self, h: Harness, round_number: int, honest: Mapping[int, Message]
                        ) -> dict[int, list[Message | bytes]]:
        rnd = Round(int(round_number))
        out: Out = {u: [m] for u, m in honest.items()}
        for step in self.strategy.steps:
            if step.round_number is rnd and step.primitive in _APPLY:
                _APPLY[step.primitive](self, h, step, honest, out)
        if rnd is Round.CONSISTENCY_CHECK and any(
                s.primitive == "split-view" for s in self.strategy.steps):
            self._relay(h, out)
        for step, at in self._drops.items():
            if at is rnd:
                for u in step.clients:
                    if out.pop(u, None) is not None:
                        self.withheld.add(u)
        return out

    def _replace(self, out: Out, u: int, message: Message, primitive: str) -> None:
        out[u][-1] = message
        self.produced[message.encode()] = primitive

    def _prepend(self, out: Out, u: int, message: Message, primitive: str) -> None:
        out.setdefault(u, []).insert(0, message)
        self.produced[message.encode()] = primitive

    def _relay(self, h: Harness, out: Out) -> None:
        """Active mode: each client's signed request carries the signatures that agree."""
        for u in sorted(h.honest):
            if u in out and isinstance(h.accepted.get((u, Round.MASKED_INPUT)),
                                       ConsistencyRequest):
                self._replace(out, u, relay_request(h, u, self.corrupt), "split-view")


def _partial_keys(a: ExplorerAttack, h: Harness, step: Step, honest: Mapping[int, Message],
                  out: Out) -> None:
    for u in step.clients:
        m = _main(out, u)
        if isinstance(m, KeyBroadcast):
            keep = set(step.peers) | {u}
            a._replace(out, u, KeyBroadcast(tuple(e for e in m.entries if e.client_id in keep)),
                       step.primitive)


def _withhold(a: ExplorerAttack, h: Harness, step: Step, honest: Mapping[int, Message],
              out: Out) -> None:
    for u in step.clients:
        m = _main(out, u)
        if isinstance(m, CiphertextBundle):
            a._replace(out, u, CiphertextBundle(tuple(
                c for c in m.ciphertexts if c[0] in step.peers)), step.primitive)


def _split_view(a: ExplorerAttack, h: Harness, step: Step, honest: Mapping[int, Message],
                out: Out) -> None:
    for u in step.clients:
        m = _main(out, u)
        if isinstance(m, UnmaskRequest | ConsistencyRequest):
            moved = set(step.peers) & set(m.alive) - {u}
            if moved:
                a._replace(out, u, replace(m, alive=tuple(x for x in m.alive if x not in moved),
                                           dropped=tuple(sorted({*m.dropped, *moved}))),
                           step.primitive)


def _replay(a: ExplorerAttack, h: Harness, step: Step, honest: Mapping[int, Message],
            out: Out) -> None:
    order = list(rounds_of(h.config.mode))
    earlier = order[max(0, order.index(step.round_number) - 1)]
    for u in step.clients:
        old = h.accepted.get((u, earlier))
        if old is not None and u in out:
            a._prepend(out, u, old, step.primitive)


def _readdress(a: ExplorerAttack, h: Harness, step: Step, honest: Mapping[int, Message],
               out: Out) -> None:
    for u in step.clients:
        for w in step.peers:
            if w in honest and u in out:
                a._prepend(out, u, honest[w], step.primitive)


_APPLY: dict[str, Callable[[ExplorerAttack, Harness, Step, Mapping[int, Message], Out], None]] = {
    "partial-keys": _partial_keys,
    "withhold-ciphertexts": _withhold,
    "split-view": _split_view,
    "replay": _replay,
    "readdress": _readdress,
}


# --- one session and its verdict ----------------------------------------------------------
@dataclass(frozen=True)
class SessionRecord:
    """One explored session: the strategy, how it ended, what leaked and how it is classified."""

    index: int
    strategy: Strategy
    outcome: str  # "completed", "aborted" or "refused"
    effective: tuple[str, ...]  # primitives that took effect
    leaked: tuple[tuple[int, ...], ...]  # learnable sums over fewer than all honest senders
    describe: str
    tampered_refused: int
    #: the leak again with only conformant primitives (drops) and no corrupt client,
    #: when deviations took effect: then the deviations did not cause it
    conformant_replay: Strategy | None = None

    @property
    def leaks(self) -> bool:
        return bool(self.leaked)

    @property
    def given_up(self) -> list[str]:
        if self.conformant_replay is not None:
            return []
        return given_up_by(self.strategy.mode, self.effective)

    @property
    def beyond_spec(self) -> bool:
        return self.leaks and not self.given_up

    def leak_dict(self) -> dict[str, object]:
        return {"session": self.index, "mode": self.strategy.mode, "graph": self.strategy.graph,
                "strategy": self.strategy.to_dict(), "leaked": [list(c) for c in self.leaked],
                "what": self.describe, "effective": list(self.effective),
                "given_up_by": self.given_up, "beyond_spec": self.beyond_spec,
                "outcome": self.outcome, "conformant_replay": None if self.conformant_replay
                is None else self.conformant_replay.to_dict()}


_NO_SHARES: dict[ShareKind, dict[int, dict[int, bytes]]] = {
    ShareKind.SELF_MASK_SEED: {}, ShareKind.MASK_KEY: {}}

_IDENTITIES: dict[int, dict[int, SigningKey]] = {}


def _identities(n: int) -> dict[int, SigningKey]:
    """Identity keys per cohort size, made once (generating them is not what is explored)."""
    if n not in _IDENTITIES:
        keys, _ = generate_identities(range(1, n + 1))
        _IDENTITIES[n] = dict(keys)
    return _IDENTITIES[n]


def leaked_sets(leak: Leakage, view: AdversaryView) -> tuple[frozenset[int], ...]:
    """The learnable sums that are a leak.

    One sum over a set S of honest clients (S smaller than every honest sender),
    with nothing else learnable, is what a server learns that closed the round
    without the others (spec §8.0, §16.3 "choice of participants"): it is a leak only
    when S (with the corrupt senders) has fewer than t + 1 clients (spec §8.3, §9.3).
    Several sums (a partial sum beside another) or a single input always are.
    """
    subsets = leak.leaked_subsets()
    if len(leak.components) == 1 and len(leak.components[0]) > 1:
        corrupt_senders = len(set(view.masked_with) & view.corrupt)
        if len(leak.components[0]) + corrupt_senders >= view.threshold + 1:
            return ()
    return subsets


def _effective(h: Harness, attack: ExplorerAttack) -> tuple[str, ...]:
    """The primitives that took effect: an honest client acted on what they produced."""
    used = set()
    for d in h.deliveries:
        if d.tampered and d.accepted and d.client in h.honest and d.data in attack.produced:
            used.add(attack.produced[d.data])
    if attack.withheld:
        used.add("drop")
    if attack.corrupt:
        used.add("corrupt")
    st = attack.strategy
    if any(u not in h.config_refusals for u in h.honest):  # the config was accepted
        if len(st.corrupt) > math.floor(st.declared_corruption * st.n + 1e-9):
            used.add("rate-downgrade")  # more corrupt clients than the declared rate admits
        if st.grind_gain > 0:
            used.add("grind")  # grinding put more corrupt clients around the victim
    return tuple(p for p in PRIMITIVES if p in used)


def run_session(index: int, strategy: Strategy, config: SessionConfig) -> SessionRecord:
    """Play ``strategy`` and ask the leakage oracle about the server's whole view.

    A leak where a deviation the mode gives up took effect is played again with the
    conformant steps only (drops, no corrupt client, same config): if it still leaks,
    the deviations did not cause it and it is beyond the spec (spec §19.5).
    """
    record = _play(index, strategy, config)
    if not (record.leaks and given_up_by(strategy.mode, record.effective)):
        return record
    reduced = replace(strategy, corrupt=(), grind_tries=0, grind_gain=0, steps=tuple(
        s for s in strategy.steps if s.primitive in CONFORMANT))
    if not reduced.steps or not _play(index, reduced, config).leaks:
        return record
    return replace(record, conformant_replay=reduced)


def _play(index: int, strategy: Strategy, config: SessionConfig) -> SessionRecord:
    mode = Mode(strategy.mode)
    attack = ExplorerAttack(strategy, config)
    setting = Setting(mode, graphs.GraphKind(strategy.graph))
    ids = _identities(config.n) if mode is Mode.ACTIVE else None
    h = Harness(setting, attack, identities=ids, seed=index).run()
    view = adversary_view(h, _NO_SHARES)
    leak: Leakage = learnable(view)
    if h.honest and all(u in h.config_refusals for u in h.honest):
        outcome = "refused"
    else:
        outcome = "completed" if h.result is not None else "aborted"
    _, refused = h.tampered_counts()
    leaked = tuple(tuple(sorted(c)) for c in leaked_sets(leak, view))
    return SessionRecord(index, strategy, outcome, _effective(h, attack), leaked,
                         leak.describe(), refused)


# --- a whole exploration ------------------------------------------------------------------
@dataclass(frozen=True)
class ExploreReport:
    """What ``explore`` tried and found."""

    seed: int
    records: tuple[SessionRecord, ...]
    seconds: float

    @property
    def leaks(self) -> list[SessionRecord]:
        return [r for r in self.records if r.leaks]

    @property
    def beyond_spec(self) -> int:
        return sum(1 for r in self.leaks if r.beyond_spec)

    def primitive_counts(self) -> dict[str, int]:
        c = Counter(p for r in self.records for p in r.strategy.primitives())
        return {p: c.get(p, 0) for p in PRIMITIVES}

    def effective_counts(self) -> dict[str, int]:
        c = Counter(p for r in self.records for p in r.effective)
        return {p: c.get(p, 0) for p in PRIMITIVES}

    def outcomes(self) -> dict[str, int]:
        c = Counter(r.outcome for r in self.records)
        return {k: c.get(k, 0) for k in ("completed", "aborted", "refused")}

    def per_setting(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self.records:
            key = f"{r.strategy.mode}/{r.strategy.graph}"
            row = out.setdefault(key, {"sessions": 0, "completed": 0, "aborted": 0,
                                       "refused": 0, "leaks": 0, "beyond_spec": 0})
            row["sessions"] += 1
            row[r.outcome] += 1
            row["leaks"] += int(r.leaks)
            row["beyond_spec"] += int(r.beyond_spec)
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, object]:
        return {"sessions": len(self.records), "seed": self.seed,
                "seconds": round(self.seconds, 3), "outcomes": self.outcomes(),
                "primitives": self.primitive_counts(), "effective": self.effective_counts(),
                "per_setting": self.per_setting(),
                "leaks": [r.leak_dict() for r in self.leaks],
                "leaks_beyond_spec": self.beyond_spec,
                "classification": {"conformant": CONFORMANT, "given_up": GIVEN_UP}}

    def lines(self) -> list[str]:
        out = [f"explored {len(self.records)} sessions (seed {self.seed}) in "
               f"{self.seconds:.1f} s: " + ", ".join(f"{v} {k}" for k, v in
                                                  self.outcomes().items())]
        eff = self.effective_counts()
        out.append("primitives (sampled/took effect): " + ", ".join(
            f"{p} {n}/{eff[p]}" for p, n in self.primitive_counts().items()))
        for key, row in self.per_setting().items():
            out.append(f"  {key:<22} " + ", ".join(f"{k} {v}" for k, v in row.items()))
        for r in self.leaks:
            tag = "BEYOND SPEC" if r.beyond_spec else "given up (" + "; ".join(r.given_up) + ")"
            out.append(f"leak #{r.index} [{tag}] {r.describe} <- {r.strategy.describe()}")
        out.append(f"verdict: {len(self.leaks)} leak(s), {self.beyond_spec} beyond the spec"
                   + (" (FAIL)" if self.beyond_spec else ""))
        return out


def explore(sessions: int, *, seed: int = 0, modes: Sequence[Mode] = (Mode.SEMI_HONEST,
            Mode.ACTIVE), kinds: Sequence[graphs.GraphKind] = (graphs.GraphKind.COMPLETE,
            graphs.GraphKind.HARARY), policy: float = POLICY_CORRUPTION) -> ExploreReport:
    """Sample and play ``sessions`` strategies; session i uses ``Random(f"{seed}:{i}")``."""
    start = time.perf_counter()
    records = []
    for i in range(sessions):
        rng = random.Random(f"secagg-explore:{seed}:{i}")  # noqa: S311 (the adversary's)
        strategy, cfg = sample_strategy(rng, modes, kinds, policy)
        records.append(run_session(i, strategy, cfg))
    return ExploreReport(seed, tuple(records), time.perf_counter() - start)

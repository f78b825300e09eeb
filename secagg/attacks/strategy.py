"""The malicious-server explorer's strategy space and how its leaks are classified.

Why a module of its own: a strategy is data (it prints, serialises to JSON and is
reported with every leak it produced), and the classification of a leak as
"given up by the spec" or "beyond the spec" is data too, with the spec section
that decides it, so a reader can check one table instead of the search code.

A :class:`Strategy` is a session configuration the adversary declares (mode,
graph, n, declared rates, ``round_index`` possibly ground), the clients it
corrupts, and a list of :class:`Step` primitives applied when rounds close
(spec §19.5).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass, field

from secagg.client import ClientProtocol
from secagg.config import Mode
from secagg.rounds import Round

#: Primitives that are ordinary server behaviour (spec §8.0: the driver closes a
#: round whenever it likes; §12.1, §16.2: up to floor(γn) corrupt clients). A leak
#: produced by these alone is beyond the spec in every mode.
CONFORMANT: dict[str, str] = {
    "drop": "§8.0 (the driver decides when a round closes), §9.1, §12.1",
    "corrupt": "§12.1, §16.2 (at most floor(γn) corrupt clients, placed at random)",
}

#: Per mode, the deviating primitives whose leaks the spec gives up, with the
#: section that says so. A leak is beyond the spec unless a primitive listed here
#: for its mode took effect in the session (an honest client acted on it).
#: Active mode gives up nothing (§16.2; issue 12: the rate the clients' own policy
#: enforces bounds the corrupt clients, and the permutation cannot be ground).
GIVEN_UP: dict[str, dict[str, str]] = {
    "semi-honest": {
        "partial-keys": "§12.2 e (selective relaying), §16.1",
        "withhold-ciphertexts": "§12.2 a (withheld ciphertexts, S12), §16.1",
        "split-view": "§12.2 a (inconsistent dropout views, S2), §16.1",
        "replay": "§16.1 (any deviation is outside the model)",
        "readdress": "§16.1 (any deviation is outside the model)",
        "rate-downgrade": "§12.2 c (the server chooses the parameters), §16.1",
        "grind": "§12.2 d (session-id grinding), §16.1",
    },
    "active": {},
}

#: Every primitive the explorer samples, deviating or not.
PRIMITIVES: tuple[str, ...] = (
    "corrupt", "rate-downgrade", "grind", "drop", "partial-keys", "withhold-ciphertexts",
    "split-view", "replay", "readdress",
)


def given_up_by(mode: str, effective: list[str] | tuple[str, ...]) -> list[str]:
    """The effective primitives whose leaks ``mode`` gives up, each with its spec section."""
    table = GIVEN_UP.get(mode, {})
    return [f"{p}: {table[p]}" for p in effective if p in table]


def policy_options(mode: Mode, corruption: float) -> dict[str, object]:
    """Active clients' options carrying their own corruption floor, where this library has
    one (issue 12, finding 2: ``secagg.policy.ClientPolicy``); nothing otherwise."""
    if mode is not Mode.ACTIVE or "policy" not in inspect.signature(ClientProtocol).parameters:
        return {}
    try:
        from secagg.policy import ClientPolicy  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        return {}
    return {"policy": ClientPolicy(min_corruption_rate=corruption)}


@dataclass(frozen=True)
class Step:
    """One primitive, applied when round ``round`` closes (``round``: a spec round label).

    ``clients``: whom it is applied to; ``peers``: its object (the peers kept in a key
    list or bundle, the peers claimed dropped, the client whose message is re-addressed);
    ``detail``: the variant (a drop pattern's name, for instance).
    """

    primitive: str
    round: str
    clients: tuple[int, ...] = ()
    peers: tuple[int, ...] = ()
    detail: str = ""

    @property
    def round_number(self) -> Round:
        return Round.from_label(self.round)

    def describe(self) -> str:
        who = ",".join(map(str, self.clients))
        what = f" peers {','.join(map(str, self.peers))}" if self.peers else ""
        how = f" ({self.detail})" if self.detail else ""
        return f"{self.primitive}@{self.round}{how} to {who or '-'}{what}"


@dataclass(frozen=True)
class Strategy:
    """One sampled adversary: what it declares, whom it corrupts, what it does per round."""

    mode: str
    graph: str
    n: int
    declared_corruption: float
    declared_dropout: float
    policy_corruption: float
    round_index: int
    grind_tries: int = 0
    grind_gain: int = 0  # corrupt neighbours of the victim that grinding added
    corrupt: tuple[int, ...] = ()
    victim: int | None = None
    steps: tuple[Step, ...] = field(default=())

    def primitives(self) -> tuple[str, ...]:
        """Every primitive the strategy uses (config-level ones included), in catalogue order."""
        used = {s.primitive for s in self.steps}
        if self.corrupt:
            used.add("corrupt")
        if len(self.corrupt) > int(self.declared_corruption * self.n + 1e-9):
            used.add("rate-downgrade")  # more corrupt clients than the declared rate admits
        if self.grind_tries:
            used.add("grind")
        return tuple(p for p in PRIMITIVES if p in used)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["steps"] = [asdict(s) for s in self.steps]
        out["primitives"] = list(self.primitives())
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def describe(self) -> str:
        head = (f"{self.mode}/{self.graph} n={self.n} declared γ={self.declared_corruption} "
                f"δ={self.declared_dropout} round_index={self.round_index}")
        if self.grind_tries:
            head += f" (ground over {self.grind_tries}, +{self.grind_gain} corrupt neighbours)"
        if self.corrupt:
            head += f" corrupt={','.join(map(str, self.corrupt))}"
        if self.victim is not None:
            head += f" victim={self.victim}"
        return head + "".join(f"; {s.describe()}" for s in self.steps)

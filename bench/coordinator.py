"""Where the coordinator's serial server seconds go (issue 15).

Run ``python -m bench.coordinator [--top N] [--json] [--no-profile] -- <secagg simulate
options>`` (``--no-profile``: round times without cProfile, which inflates Python calls), e.g.
``python -m bench.coordinator -- --clients 500 --dim 100000 --dropout 0.3
--drop-at masked-input --graph complete --workers 2``.

Only the server's part of the session is measured: every call the driver bills to
``server_seconds`` (decoding a client message and ``ServerProtocol.receive``, and
``close_round``) runs under one cProfile and is timed by round, in wall seconds and
in this process's CPU seconds (``time.process_time``). With ``--workers K`` the
unmasking's workers are other processes: their time shows as wall, not CPU, here,
so CPU seconds are the coordinator's serial work, the part that does not shrink with
more workers. Every job the server sends to an engine (``Engine.map``) is timed in its
worker too (CPU seconds); ``critical_path_cpu_s`` = the coordinator's CPU plus, for each
map call, its slowest job: what the server would take on idle cores, whatever the load
(communication and scheduling not counted). The memory replay and the floors are not
measured (they run outside the driver).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import io
import json
import pstats
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from secagg import engine as engines
from secagg.rounds import Round
from secagg.session import SessionDriver

_PROFILE = cProfile.Profile()
_PROFILING = [True]  # off with --no-profile: per-round times without cProfile's inflation
_TIMES: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # key -> [wall, cpu]


@contextlib.contextmanager
def _billed(key: str) -> Iterator[None]:
    w0, c0 = time.perf_counter(), time.process_time()
    if _PROFILING[0]:
        _PROFILE.enable()
    _INSIDE[0] = True
    try:
        yield
    finally:
        _INSIDE[0] = False
        _PROFILE.disable()
        _TIMES[key][0] += time.perf_counter() - w0
        _TIMES[key][1] += time.process_time() - c0


def _patch() -> None:
    """Wrap the driver's two server entry points (the same calls ``server_seconds`` times)."""
    to_server: Callable[..., bool] = SessionDriver.to_server
    close: Callable[..., Any] = SessionDriver.close

    def timed_to_server(self: SessionDriver, round: Round, client_id: int, data: bytes) -> bool:
        with _billed(f"receive {round.label}"):
            return to_server(self, round, client_id, data)

    def timed_close(self: SessionDriver, round: Round) -> Any:
        with _billed(f"close {round.label}"):
            return close(self, round)

    SessionDriver.to_server = timed_to_server  # type: ignore[method-assign]
    SessionDriver.close = timed_close  # type: ignore[method-assign]


_JOBS: list[list[float]] = []  # per map call: each job's CPU seconds in its worker
_INSIDE = [False]  # in a server call billed to server_seconds (not the memory replay)


def _timed(fn: Callable[[Any], Any], item: Any) -> tuple[Any, float]:
    """Run one job in a worker and return its result with the CPU seconds it took."""
    c0 = time.process_time()
    out = fn(item)
    return out, time.process_time() - c0


def _patch_engines() -> None:
    """Time every job of ``map`` (the server's unmasking) in its worker."""
    for cls in (engines.ProcessEngine, engines.RayEngine, engines.InlineEngine):
        original = cls.map

        def timed_map(self: Any, fn: Callable[[Any], Any], items: Any,
                      original: Callable[..., list[Any]] = original) -> list[Any]:
            pairs = original(self, functools.partial(_timed, fn), items)
            if _INSIDE[0]:
                _JOBS.append([cpu for _, cpu in pairs])
            return [out for out, _ in pairs]

        cls.map = timed_map  # type: ignore[method-assign]


def _top(n: int) -> list[dict[str, Any]]:
    stats = pstats.Stats(_PROFILE, stream=io.StringIO())
    rows = []
    for (path, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{path.rsplit('/', 2)[-1]}:{line}({name})", "calls": calls,
                     "tottime": round(tottime, 4), "cumtime": round(cumtime, 4)})
    rows.sort(key=lambda r: -r["tottime"])
    return rows[:n]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    sim_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-profile", action="store_true",
                   help="time the rounds without cProfile (which inflates Python calls)")
    a = p.parse_args(own)
    _PROFILING[0] = not a.no_profile
    _patch()
    _patch_engines()
    from secagg.cli import main as cli_main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli_main(["simulate", *sim_args, "--json"])
    report = json.loads(out.getvalue())
    rounds = {k: {"wall_s": round(w, 4), "cpu_s": round(c, 4)} for k, (w, c) in _TIMES.items()}
    result = {
        "args": sim_args, "rc": rc, "exact": report.get("exact"),
        "server_seconds": report.get("server_seconds"),
        "server_cpu_s": round(sum(c for _, c in _TIMES.values()), 4),
        "job_cpu_s": [[round(c, 4) for c in call] for call in _JOBS],
        "critical_path_cpu_s": round(sum(c for _, c in _TIMES.values())
                                     + sum(max(call, default=0.0) for call in _JOBS), 4),
        "full_floor_seconds": report.get("full_floor_seconds"),
        "by_round": rounds, "top": _top(a.top) if _PROFILING[0] else [],
    }
    if a.json:
        print(json.dumps(result, indent=2))
        return
    print(f"server {result['server_seconds']:.3f} s, coordinator CPU {result['server_cpu_s']:.3f}"
          f" s, full floor {result['full_floor_seconds']}, exact {result['exact']}")
    print(f"  jobs' CPU by map call {result['job_cpu_s']}; critical path "
          f"{result['critical_path_cpu_s']:.3f} CPU s")
    for key, t in rounds.items():
        print(f"  {key:24s} wall {t['wall_s']:8.3f}  cpu {t['cpu_s']:8.3f}")
    for row in result["top"]:
        print(f"  {row['tottime']:8.3f} {row['cumtime']:8.3f} {row['calls']:>9} {row['function']}")


if __name__ == "__main__":
    main()

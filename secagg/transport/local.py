"""Run real server and client processes on 127.0.0.1 (simulations, tests, benchmarks).

``secagg simulate --transport grpc``, the transport tests and ``bench/`` use
this to start one ``secagg server`` process and n ``secagg client``
processes with a fresh development CA in a temporary directory, inject
dropouts by having chosen clients SIGKILL themselves at a round (the harness's
:class:`~secagg.transport.dropout.DyingClient`), and read the
JSON events every process prints. Nothing here listens anywhere but loopback,
and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from secagg.crypto.prg import mask_dtype
from secagg.errors import SecAggError
from secagg.kernels.arith import add_into
from secagg.rounds import Round
from secagg.transport import certs
from secagg.transport.client import demo_input

Event = dict[str, Any]


class TransportError(SecAggError):
    """A local transport run did not go as planned (a process failed to start, a timeout)."""


class Proc:
    """A child process whose stdout JSON lines are collected by a reader thread."""

    def __init__(self, argv: Sequence[str], name: str, log_dir: Path) -> None:
        self.name = name
        self.events: list[Event] = []
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self.stderr_path = log_dir / f"{name}.err"
        # CLI events go to stdout; warnings and crashes to a file we can show on failure
        with open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(  # noqa: S603 - argv built here from sys.executable
                list(argv), stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.events.append(event)
                self._queue.put(event)
        self._queue.put(None)

    def wait_event(self, match: Callable[[Event], bool], timeout: float) -> Event:
        """The next event (not yet consumed by this method) that satisfies ``match``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransportError(f"{self.name}: no matching event within {timeout:.0f} s"
                                     f"{self._stderr_tail()}")
            try:
                event = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if event is None:
                self._queue.put(None)
                raise TransportError(f"{self.name} exited (status {self.popen.wait()})"
                                     f"{self._stderr_tail()}")
            if match(event):
                return event

    def wait(self, timeout: float) -> int:
        """Exit status; kills the process if it has not exited within ``timeout``."""
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.popen.wait(timeout=10)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()

    def _stderr_tail(self) -> str:
        try:
            tail = self.stderr_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""
        return f"\n--- {self.name} stderr ---\n{tail}" if tail.strip() else ""


def cli(*args: object) -> list[str]:
    """argv for ``secagg ARGS`` run with this interpreter."""
    return [sys.executable, "-m", "secagg.cli", *(str(a) for a in args)]


class LocalCluster:
    """A temporary directory with a dev CA, one server process and client processes.

    Use as a context manager: every process still running at exit is killed.
    """

    def __init__(self, client_ids: Iterable[int], *, tmp: Path | None = None) -> None:
        self._tmp = None if tmp is not None else tempfile.TemporaryDirectory(prefix="secagg-")
        self.dir = tmp if tmp is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.certs = self.dir / "certs"
        self.client_ids = sorted(set(client_ids))
        certs.init_dev_ca(self.certs, self.client_ids, days=1, overwrite=True)
        self.server: Proc | None = None
        self.port = 0
        self.clients: dict[int, Proc] = {}

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        procs = [*self.clients.values(), *([self.server] if self.server else [])]
        for p in procs:
            if p.popen.poll() is None:
                p.kill()
        for p in procs:
            with contextlib.suppress(Exception):
                p.wait(5)
        if self._tmp is not None:
            self._tmp.cleanup()

    def start_server(self, *args: object, port: int = 0, timeout: float = 60.0) -> Proc:
        argv = cli("server", "--port", port, "--certs", self.certs, "--json", *args)
        self.server = Proc(argv, "server", self.dir)
        event = self.server.wait_event(lambda e: e.get("event") == "listening", timeout)
        self.port = int(event["port"])
        return self.server

    def start_client(self, cid: int, *args: object, die_at: Round | None = None,
                     die_session: int = 0) -> Proc:
        """A ``secagg client`` process; with ``die_at``, the harness's dying client
        (:mod:`secagg.transport.dropout`) that SIGKILLs itself at that round."""
        common = ("--server", f"127.0.0.1:{self.port}", "--id", cid, "--certs", self.certs,
                  "--json", *args)
        if die_at is None:
            argv = cli("client", *common)
        else:
            argv = [sys.executable, "-m", "secagg.transport.dropout", *(str(a) for a in common),
                    "--die-at", die_at.label, "--die-session", str(die_session)]
        proc = Proc(argv, f"client-{cid}", self.dir)
        self.clients[cid] = proc
        return proc


def expected_sum(seed: int, ids: Iterable[int], round_index: int, dim: int,
                 modulus: int) -> np.ndarray:
    """The plaintext sum of the demo inputs of ``ids`` (what the server must output)."""
    total = np.zeros(dim, dtype=mask_dtype(modulus))
    for u in ids:
        add_into(total, demo_input(seed, u, round_index, dim, modulus), modulus)
    return total


def run_simulation(
    *,
    clients: int,
    dim: int,
    modulus_bits: int = 32,
    server_args: Sequence[object] = (),
    drop: Mapping[int, Round] | None = None,
    seed: int = 0,
    round_timeout: float = 10.0,
    join_timeout: float = 120.0,
) -> Event:
    """One session with ``clients`` client processes; ``drop`` maps id -> the round it dies at.

    Returns the server's session-end event, extended with ``exact`` (the sum
    equals the plaintext sum of the included clients' demo inputs), the client
    events, ``wall_seconds`` of the whole run and ``bytes_on_wire_per_client``.
    """
    drop = dict(drop or {})
    ids = list(range(1, clients + 1))
    start = time.perf_counter()
    with LocalCluster(ids) as cluster:
        out = cluster.dir / "out.npz"
        server = cluster.start_server(
            "--clients", clients, "--dim", dim, "--modulus-bits", modulus_bits,
            "--round-timeout", round_timeout, "--join-timeout", join_timeout,
            "--sessions", 1, "--out", out, *server_args)
        for u in ids:
            cluster.start_client(u, "--seed", seed, "--sessions", 1, die_at=drop.get(u))
        limit = join_timeout + 6 * round_timeout + 60
        end = server.wait_event(lambda e: e.get("event") == "session-end", limit)
        server.wait(30)
        client_events: dict[int, list[Event]] = {}
        for u, proc in cluster.clients.items():
            proc.wait(round_timeout + 30)
            client_events[u] = proc.events
        wall = time.perf_counter() - start
        exact = False
        if not end["aborted"] and out.exists():
            with np.load(out) as data:
                got = data["sum"]
            want = expected_sum(seed, end["included_ids"], end["round_index"], dim,
                                1 << modulus_bits)
            exact = bool(np.array_equal(got, want))
    report: Event = dict(end)
    report["exact"] = exact
    report["wall_seconds_total"] = wall
    report["client_events"] = client_events
    finished = [e for evs in client_events.values() for e in evs
                if e.get("event") == "session-end" and e.get("wire")]
    report["bytes_on_wire_per_client"] = (
        sum(e["wire"]["sent"] + e["wire"]["received"] for e in finished) / len(finished)
        if finished else None)
    report["client_seconds_mean"] = (
        sum(e["compute_seconds"] for e in finished) / len(finished) if finished else 0.0)
    return report

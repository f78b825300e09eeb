"""A Flower 1.42 deployment on 127.0.0.1: one SuperLink, N SuperNodes, ``flwr run``.

Shared by ``tests/test_flower_deployment.py`` and ``secagg bench flower --engine
deployment`` (never imported by ``secagg``). What it starts is what a real
deployment runs, with the binaries Flower installs next to this interpreter:

* ``flower-superlink --insecure`` on free ports of 127.0.0.1, with
  ``--disable-runtime-dependency-installation``: the SuperLink would otherwise
  ``uv sync`` the app's dependencies (``secagg[flower]``) into a fresh
  environment before each ServerApp and fail (Flower exit code 608) where secagg
  is not on an index; the apps run in this environment instead, which has them;
* N ``flower-supernode --insecure`` with ``--node-config "partition-id=i
  num-partitions=N"`` (SuperNodes never install dependencies by default);
* ``flwr run APP deployment --stream`` with a SuperLink connection named
  ``deployment`` in ``$FLWR_HOME/config.toml`` (Flower 1.42 keeps connections
  there, no longer in the app's pyproject.toml).

Every process gets ``FLWR_HOME`` inside the work directory (so nothing is written
to the user's home or the repository), ``PYTHONPATH`` with the repository root (so
the ClientApp and ServerApp processes import this checkout's ``secagg`` and
``fl``), runs in its own process group, and logs to a file in the work
directory. :meth:`Deployment.close` (also on ``with`` exit) kills every group.
Since those groups do not receive the signals sent to this process, a ``with``
block also turns SIGTERM (``kill``, ``pkill``) and SIGHUP into :class:`Stopped`, an
exception that unwinds through ``close`` like Ctrl-C's KeyboardInterrupt does, so
a stopped bench leaves no SuperLink, SuperExec or SuperNode behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_APP = REPO_ROOT / "examples" / "flower"
BINARIES = ("flower-superlink", "flower-supernode", "flwr", "flower-superexec", "flwr-clientapp",
            "flwr-serverapp")
CONNECTION = "deployment"


class DeploymentError(RuntimeError):
    """A process of the deployment could not be started or the run failed."""


class Stopped(BaseException):
    """This process got SIGTERM or SIGHUP inside a ``with Deployment``: unwind and clean up.

    A BaseException, like KeyboardInterrupt, so no ``except Exception`` swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


#: signals whose default action would end this process without running ``close``
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def binary(name: str) -> str:
    """Path of Flower's command ``name``: next to this interpreter first, then on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise DeploymentError(
            f"Flower's {name!r} is not installed next to {sys.executable} nor on PATH: "
            "pip install 'secagg[flower]' (flwr 1.42)")
    return found


def missing_binaries() -> list[str]:
    """Flower commands a deployment needs that cannot be found (empty: all there)."""
    missing = []
    for name in BINARIES:
        try:
            binary(name)
        except DeploymentError:
            missing.append(name)
    return missing


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports on 127.0.0.1 that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until something listens on 127.0.0.1:port; DeploymentError if ``proc`` dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DeploymentError(f"{proc.args[0]} exited with {proc.returncode}; see {log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.2)
    raise DeploymentError(f"nothing listens on port {port} after {timeout:.0f} s; see {log}")


@dataclass
class Process:
    """One started process, its log and whether it was killed on purpose."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    handle: TextIO
    killed: bool = False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a SuperNode's ClientApp processes too)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class RunResult:
    """``flwr run``'s exit status, the run id and its final status from the SuperLink."""

    returncode: int
    run_id: int | None
    status: str | None
    seconds: float
    log: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.status is not None and "completed" in self.status


@dataclass
class Deployment:
    """A SuperLink and ``num_nodes`` SuperNodes on 127.0.0.1; use as a context manager."""

    workdir: Path
    num_nodes: int
    start_timeout: float = 60.0
    #: a SuperLink in simulation mode (Flower's simulation engine, Ray) and no SuperNodes:
    #: ``run(..., federation_config={"num-supernodes": n})`` simulates n nodes
    simulation: bool = False
    processes: list[Process] = field(default_factory=list)
    nodes: list[Process] = field(default_factory=list)
    _handlers: dict[int, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.home = self.workdir / "flwr-home"
        self.logs = self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = self._environment()
        self.port = 0

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # Every message starts a fresh ClientApp process. An installed package loads its
        # bytecode from __pycache__ (pip compiles it, as it did Flower's); a shell that sets
        # PYTHONDONTWRITEBYTECODE would make each of those processes recompile our sources
        # instead, a cost no deployment pays, so the processes here may cache bytecode.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        path = [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        env.update({
            "FLWR_HOME": str(self.home),
            "PYTHONPATH": os.pathsep.join(path),
            # Flower's subprocesses (flower-superexec, flwr-clientapp) are found on PATH
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "PYTHONUNBUFFERED": "1",
        })
        return env

    # -- processes ------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> Process:
        log = self.logs / f"{name}.log"
        handle = open(log, "w", encoding="utf-8")  # noqa: SIM115  (closed in close())
        proc = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=self.env,
                                cwd=self.workdir, start_new_session=True)
        process = Process(name, proc, log, handle)
        self.processes.append(process)
        return process

    def start(self) -> Deployment:
        missing = missing_binaries()
        if missing:
            raise DeploymentError(f"Flower commands not found: {', '.join(missing)} "
                                  "(pip install 'secagg[flower]', flwr 1.42)")
        # Flower 1.42 serves the Fleet, Control and Runtime APIs over HTTP on one port
        port, *node_ports = free_ports(1 + self.num_nodes)
        self.port = port
        link = self._spawn("superlink", [
            binary("flower-superlink"), "--insecure", "--disable-runtime-dependency-installation",
            "--host", "127.0.0.1", "--port", str(port),
            "--database", str(self.workdir / "superlink.db"),
            *(["--simulation"] if self.simulation else [])])
        wait_port(port, self.start_timeout, link.proc, link.log)
        self._write_connection()
        for i, node_port in enumerate(node_ports):
            self.nodes.append(self._spawn(f"supernode-{i}", [
                binary("flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{port}",
                "--host", "127.0.0.1", "--port", str(node_port),
                "--node-config", f"partition-id={i} num-partitions={self.num_nodes}"]))
        for node, node_port in zip(self.nodes, node_ports, strict=True):
            wait_port(node_port, self.start_timeout, node.proc, node.log)
        if self.nodes:
            self.wait_registered()
        return self

    def online_nodes(self) -> int:
        """How many SuperNodes the SuperLink lists as online (``flwr supernode ls``)."""
        log = self.logs / "flwr-supernode-ls.log"
        with contextlib.suppress(OSError):
            log.unlink()
        self.flwr(["supernode", "ls", CONNECTION, "--format", "json"], log, 60)
        text = log.read_text(encoding="utf-8", errors="replace")
        try:
            payload = json.loads(text[text.index("{"):])
        except ValueError:
            return 0
        return sum(1 for n in payload.get("nodes") or [] if n.get("status") == "online")

    def wait_registered(self) -> None:
        """Until every SuperNode is registered, so the first round samples all of them."""
        deadline = time.monotonic() + self.start_timeout
        while self.online_nodes() < len(self.nodes):
            for node in self.nodes:
                if not node.alive():
                    raise DeploymentError(f"{node.name} exited with {node.proc.returncode}; "
                                          f"see {node.log}")
            if time.monotonic() > deadline:
                raise DeploymentError(f"not all {len(self.nodes)} SuperNodes registered "
                                      f"after {self.start_timeout:.0f} s; see {self.logs}")
            time.sleep(1.0)

    def _write_connection(self) -> None:
        """The SuperLink connection ``flwr run APP deployment`` uses (Flower 1.42 style)."""
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n'
            f'[superlink.{CONNECTION}]\naddress = "127.0.0.1:{self.port}"\ninsecure = true\n',
            encoding="utf-8")

    def kill_node(self, index: int) -> None:
        """SIGKILL SuperNode ``index`` and its ClientApp processes, as a crash would."""
        node = self.nodes[index]
        node.killed = True
        node.kill(signal.SIGKILL)

    def close(self) -> None:
        """Stop every process group (SIGTERM, then SIGKILL after 5 s) and close the logs."""
        for p in self.processes:
            if p.alive():
                p.kill(signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for p in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.proc.wait(max(0.1, deadline - time.monotonic()))
            p.kill(signal.SIGKILL)  # the group: children a SIGTERM left behind
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.proc.wait(5.0)
            p.handle.close()

    def __enter__(self) -> Deployment:
        self._catch_stop_signals()
        try:
            return self.start()
        except BaseException:
            self.close()
            self._restore_signals()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            self.close()
        finally:
            self._restore_signals()

    def _catch_stop_signals(self) -> None:
        """SIGTERM/SIGHUP raise :class:`Stopped` here (main thread only: Python delivers
        signals there, and only there may handlers be set)."""
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(signum: int, frame: object) -> None:
            for sig in STOP_SIGNALS:  # a second signal must not interrupt the cleanup
                signal.signal(sig, signal.SIG_IGN)
            raise Stopped(signum)

        handler: Callable[[int, Any], None] = stop
        for sig in STOP_SIGNALS:
            self._handlers[sig] = signal.signal(sig, handler)

    def _restore_signals(self) -> None:
        while self._handlers:
            sig, previous = self._handlers.popitem()
            signal.signal(sig, previous)

    # -- runs -----------------------------------------------------------------------------
    def flwr(self, args: list[str], log: Path, timeout: float) -> subprocess.CompletedProcess[str]:
        with open(log, "a", encoding="utf-8") as out:
            return subprocess.run([binary("flwr"), *args], stdout=out, stderr=subprocess.STDOUT,
                                  env=self.env, cwd=self.workdir, timeout=timeout, check=False,
                                  text=True, start_new_session=True)

    def run(self, run_config: Mapping[str, Any], *, app: Path = EXAMPLE_APP,
            timeout: float = 600.0, name: str = "flwr-run",
            federation_config: Mapping[str, Any] | None = None) -> RunResult:
        """``flwr run APP deployment --stream -c ...``: blocks until the run ends."""
        log = self.logs / f"{name}.log"
        start = time.perf_counter()
        extra = ["--federation-config", toml_pairs(federation_config)] if federation_config else []
        proc = self.flwr(["run", str(app), CONNECTION, "--stream",
                          "--run-config", toml_pairs(run_config), *extra], log, timeout)
        seconds = time.perf_counter() - start
        text = log.read_text(encoding="utf-8", errors="replace")
        found = re.search(r"Successfully started run (\d+)", text)
        run_id = int(found.group(1)) if found else None
        status = self.run_status(run_id, log) if run_id is not None else None
        return RunResult(proc.returncode, run_id, status, seconds, log)

    def run_status(self, run_id: int, log: Path) -> str | None:
        """The SuperLink's status of run ``run_id`` (e.g. ``finished:completed``)."""
        status_log = log.with_suffix(".status.json")
        with contextlib.suppress(OSError):
            status_log.unlink()
        self.flwr(["ls", CONNECTION, "--run-id", str(run_id), "--format", "json"], status_log, 60)
        text = status_log.read_text(encoding="utf-8", errors="replace")
        try:
            payload = json.loads(text[text.index("{"):])
        except ValueError:
            return None
        runs = payload.get("runs") or []
        return str(runs[0].get("status")) if runs else None

    def logs_tail(self, lines: int = 15) -> str:
        """The last lines of every log, for a failure message."""
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)


def toml_pairs(config: Mapping[str, Any]) -> str:
    """``k1=v1 k2="v2"`` as ``flwr run --run-config`` takes them (TOML values)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return json.dumps(str(v))
    return " ".join(f"{k}={value(v)}" for k, v in config.items())

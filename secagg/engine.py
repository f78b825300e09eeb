"""Engines that run the server's unmasking jobs (pure functions) on several workers.

Why an abstraction: the sans-IO :class:`~secagg.server.ServerProtocol` must not own
processes or sockets, yet its unmasking (X25519, HKDF, keystream) is the one part
worth spreading over cores or machines. The driver that owns the process lifetime
(the simulator, a transport) makes an engine and hands it to the server; the server
only calls :meth:`Engine.map` with the pure functions of :mod:`secagg.unmask`.

* :class:`InlineEngine` runs jobs one after another in this process (tests,
  and a reference for the others);
* :class:`ProcessEngine` runs them on a local pool of worker processes;
* :class:`RayEngine` runs them as Ray tasks (extra ``ray``): on a local Ray it
  starts itself, or on an existing cluster (``address``).

Each engine can also run a call on one given worker (:meth:`run_on`): the simulator
keeps a shard of its clients in each worker (:mod:`secagg.simclients`) and sends
every round's messages to the worker that holds their clients.

Jobs carry the reconstructed secrets a worker needs (spec §8.5): run workers
only where the server itself runs (one host, or a cluster the operator controls).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.context import BaseContext
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

from secagg.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


@runtime_checkable
class Engine(Protocol):
    """Runs pure, picklable functions on ``workers`` workers; results in input order."""

    @property
    def workers(self) -> int: ...

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]: ...


@runtime_checkable
class PinnedEngine(Engine, Protocol):
    """An engine that can also run a call on one chosen worker, whose process keeps
    module state between calls (the simulator's client shards)."""

    def run_on(self, calls: Sequence[tuple[int, Callable[[T], R], T]]) -> list[R]:
        """Run each (worker, fn, arg) on that worker, all at once; results in order."""
        ...


class InlineEngine:
    """Every job in this process, in order: ``workers`` only says how to split the work."""

    def __init__(self, workers: int = 1) -> None:
        self._workers = _check_workers(workers)

    @property
    def workers(self) -> int:
        return self._workers

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        return [fn(item) for item in items]

    def run_on(self, calls: Sequence[tuple[int, Callable[[T], R], T]]) -> list[R]:
        """Every call here, in order (module state is this process's)."""
        return [fn(arg) for _, fn, arg in calls]

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"InlineEngine(workers={self._workers})"


class _PoolEngine:
    """What the engines with workers to release share: ``workers``, ``repr`` and use
    as a context manager that closes them."""

    _workers: int

    @property
    def workers(self) -> int:
        return self._workers

    def close(self) -> None:
        """Release the workers."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self._workers})"


def _warm(_: int) -> int:
    """Import the jobs' modules and compile the kernels in a fresh worker (a Ray actor
    too), so no session pays for it."""
    import secagg.recover
    import secagg.server  # noqa: F401 - the unmasking's jobs live here
    from secagg.kernels.warmup import warm_up

    warm_up(1 << 32)
    return os.getpid()


class ProcessEngine(_PoolEngine):
    """``workers`` local processes, started (and warmed) when made.

    Each worker is a pool of one process, so a call can be sent to a chosen worker
    (:meth:`run_on`) and find the module state an earlier call left there; :meth:`map`
    deals the items out round robin (the unmasking's jobs come one per worker).

    ``start_method``: by default ``forkserver`` where the platform has it (a clean
    server process imports the unmasking code once and forks the workers from it:
    no copy of this process's threads or locks, unlike ``fork``), else ``spawn``.
    Both import the caller's main module in every worker, so a script that makes
    an engine needs the usual ``if __name__ == "__main__":`` guard. Close the
    engine (or use it as a context manager) to stop the workers.
    """

    def __init__(self, workers: int, *, start_method: str | None = None) -> None:
        self._workers = _check_workers(workers)
        methods = multiprocessing.get_all_start_methods()
        if start_method is None:
            start_method = "forkserver" if "forkserver" in methods else "spawn"
        if start_method not in methods:
            raise ConfigError(f"start method {start_method!r} is not available here")
        context: BaseContext = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # every module a job names (pickled by reference), so no job pays an import
            context.set_forkserver_preload(["secagg.unmask", "secagg.recover", "secagg.server",
                                             "secagg.simclients", "secagg.kernels.warmup"])
        self._pools = [ProcessPoolExecutor(max_workers=1, mp_context=context)
                       for _ in range(self._workers)]
        # start every worker now: a pool starts its process lazily, on first use
        self.run_on([(i, _warm, i) for i in range(self._workers)])

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        return self.run_on([(i % self._workers, fn, item) for i, item in enumerate(items)])

    def run_on(self, calls: Sequence[tuple[int, Callable[[T], R], T]]) -> list[R]:
        futures = [self._pools[worker].submit(fn, arg) for worker, fn, arg in calls]
        return [f.result() for f in futures]

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=True, cancel_futures=True)



def _call(fn: Callable[[T], R], item: T) -> R:
    """One job as a Ray task (module-level, so Ray pickles it by reference)."""
    return fn(item)


class _Actor:
    """One Ray worker that keeps its process (and so its module state) between calls."""

    def call(self, fn: Callable[[T], R], arg: T) -> R:
        return fn(arg)


class RayEngine(_PoolEngine):
    """Jobs as Ray tasks, at most ``workers`` at a time on the local Ray this starts.

    With ``address`` (e.g. ``"auto"`` or ``"ray://head:10001"``) it joins an existing
    cluster instead, whose nodes must be able to import ``secagg`` (install it there or
    pass a ``runtime_env``); the cluster's scheduler then decides where each job runs.
    A Ray that this engine started is shut down by :meth:`close`.
    """

    def __init__(self, workers: int, *, address: str | None = None) -> None:
        self._workers = _check_workers(workers)
        try:
            import ray
        except ImportError:
            raise ConfigError("--engine ray needs Ray: install the 'ray' extra "
                              "(pip install 'secagg[ray]')") from None
        self._ray = ray
        self._owned = not ray.is_initialized()
        if self._owned:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                       "configure_logging": False}
            if address is None:
                options["num_cpus"] = self._workers
            ray.init(address=address, **options)
        self._task = ray.remote(num_cpus=1)(_call)
        self._actors: list[Any] = []
        # Ray starts its worker processes lazily: start them now, not in the first session
        self.map(_warm, range(self._workers))

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        refs = [self._task.remote(fn, item) for item in items]
        return list(self._ray.get(refs))

    def run_on(self, calls: Sequence[tuple[int, Callable[[T], R], T]]) -> list[R]:
        """Each call on one of ``workers`` actors (made on first use; they reserve no
        CPU, so the tasks of :meth:`map` still find theirs)."""
        if not self._actors:
            actor = self._ray.remote(num_cpus=0)(_Actor)
            self._actors = [actor.remote() for _ in range(self._workers)]
        refs = [self._actors[worker].call.remote(fn, arg) for worker, fn, arg in calls]
        return list(self._ray.get(refs))

    def close(self) -> None:
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()



def _check_workers(workers: object) -> int:
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError("workers must be a positive integer")
    return workers


#: The engines ``--engine`` names.
ENGINES = ("process", "ray", "inline")


def make_engine(workers: int, kind: str = "process", *, address: str | None = None
                ) -> InlineEngine | ProcessEngine | RayEngine | None:
    """The engine for ``--workers K --engine kind``; None for one local process worker
    (the threaded, in-process path). ``address``: a Ray cluster to join (ray only)."""
    _check_workers(workers)
    if kind not in ENGINES:
        raise ConfigError(f"unknown engine {kind!r} ({', '.join(ENGINES)})")
    if address is not None and kind != "ray":
        raise ConfigError("a Ray address needs the ray engine")
    if kind == "ray":
        return RayEngine(workers, address=address)
    if workers == 1:
        return None
    return ProcessEngine(workers) if kind == "process" else InlineEngine(workers)


__all__ = ["ENGINES", "Engine", "InlineEngine", "PinnedEngine", "ProcessEngine", "RayEngine",
           "make_engine"]

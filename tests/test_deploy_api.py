"""The deployment API (secagg.deploy): a server object and client objects over mTLS gRPC in
one process (clients in threads), plus the pure parameter binding. Real processes with a
SIGKILL are tested through examples/pytorch (tests/test_example_pytorch.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from secagg.aggregator import weighted_mean
from secagg.config import SessionConfig, SessionSettings
from secagg.deploy import (
    AggregationParams,
    ClientStoppedError,
    DeploymentClient,
    DeploymentServer,
    ParameterMismatchError,
    RoundAborted,
    SubmitResult,
    model_digest,
)
from secagg.deploy.params import UNBOUND, check_session, spec_of, task_hash
from secagg.errors import ConfigError, SecAggError
from secagg.transport import certs

PARAMS = AggregationParams(clip=1.0, bits=16, max_weight=100, max_clients=10)
SMALL = SessionSettings(min_cohort=3)
MODEL = [np.zeros((3, 4), np.float32), np.zeros(5, np.float64), np.zeros((), np.float32)]


@pytest.fixture(scope="module")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return certs.init_dev_ca(tmp_path_factory.mktemp("certs"), range(1, 8)).directory


@pytest.fixture()
def server_factory(certs_dir: Path) -> Iterator[Callable[..., DeploymentServer]]:
    made: list[DeploymentServer] = []

    def make(clients: int = 4, **kwargs: Any) -> DeploymentServer:
        kwargs.setdefault("round_timeout", 10.0)
        kwargs.setdefault("join_timeout", 30.0)
        server = DeploymentServer(kwargs.pop("params", PARAMS), clients=clients,
                                  certs_dir=certs_dir, settings=SMALL, **kwargs)
        server.start()
        made.append(server)
        return server

    yield make
    for s in made:
        s.close()


def _clients(server: DeploymentServer, certs_dir: Path, ids: range,
             params: dict[int, AggregationParams] | None = None,
             kwargs: dict[int, dict[str, Any]] | None = None) -> dict[int, DeploymentClient]:
    return {u: DeploymentClient((params or {}).get(u, PARAMS), server=f"127.0.0.1:{server.port}",
                                client_id=u, certs_dir=certs_dir, connect_timeout=20,
                                client_kwargs=(kwargs or {}).get(u)).start()
            for u in ids}


def _submit_all(clients: dict[int, DeploymentClient], updates: dict[int, Any],
                weights: dict[int, int], model: Any
                ) -> tuple[dict[int, Any], list[threading.Thread]]:
    """Each client's submit in its own thread; the results (or errors) land in the dict."""
    out: dict[int, Any] = {}

    def run(u: int) -> None:
        try:
            out[u] = clients[u].submit(updates[u], weights[u], model=model)
        except SecAggError as exc:
            out[u] = exc
        if not getattr(out[u], "included", False):
            clients[u].close()  # what a client refusing the server's session does

    threads = [threading.Thread(target=run, args=(u,), daemon=True) for u in updates]
    for t in threads:
        t.start()
    return out, threads


def _join(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()


def _updates(ids: range, seed: int) -> dict[int, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {u: [rng.uniform(-1.5, 1.5, a.shape).astype(a.dtype) for a in MODEL] for u in ids}


# -- the happy path: shapes, dtypes, names, the weighted mean -------------------------------
@pytest.mark.slow
def test_two_rounds_give_the_weighted_mean_in_the_model_shapes(
        server_factory: Callable[..., DeploymentServer], certs_dir: Path) -> None:
    server = server_factory()
    ids = range(1, 5)
    clients = _clients(server, certs_dir, ids)
    try:
        # round 0: lists of arrays, model bound
        updates = _updates(ids, 0)
        weights = {u: u * 7 for u in ids}
        results, threads = _submit_all(clients, updates, weights, MODEL)
        r0 = server.aggregate(MODEL)
        _join(threads)
        assert r0.round_index == 0 and r0.included == (1, 2, 3, 4) and r0.dropped == ()
        assert r0.total_weight == sum(weights.values())
        assert [(a.shape, a.dtype) for a in r0.mean] == [(a.shape, a.dtype) for a in MODEL]
        want = weighted_mean(updates, weights, ids, clip=PARAMS.clip)
        for got, ref in zip(r0.mean, want, strict=True):
            assert np.max(np.abs(got.astype(np.float64) - ref)) <= r0.error_bound
        assert all(isinstance(results[u], SubmitResult) and results[u].included for u in ids)
        assert {results[u].session_id for u in ids} == {r0.session_id}

        # round 1: a state_dict model; one client sends torch tensors, the others numpy
        torch = pytest.importorskip("torch")
        names = ("fc.weight", "fc.bias", "scale")
        model = dict(zip(names, MODEL, strict=True))
        flat = _updates(ids, 1)
        sd = {u: dict(zip(names, flat[u], strict=True)) for u in ids}
        sd[1] = {k: torch.from_numpy(v) for k, v in sd[1].items()}
        results, threads = _submit_all(clients, sd, dict.fromkeys(ids, 1), model)
        r1 = server.aggregate(model)
        _join(threads)
        assert r1.round_index == 1 and r1.included == (1, 2, 3, 4)
        assert r1.session_id != r0.session_id
        mean = r1.state_dict()
        assert list(mean) == list(names)
        want = weighted_mean(flat, None, ids, clip=PARAMS.clip)
        for name, ref in zip(names, want, strict=True):
            assert mean[name].shape == model[name].shape
            assert np.max(np.abs(mean[name].astype(np.float64) - ref)) <= r1.error_bound
    finally:
        for c in clients.values():
            c.close()


# -- refusals ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_client_with_other_parameters_refuses_with_a_typed_error(
        server_factory: Callable[..., DeploymentServer], certs_dir: Path) -> None:
    """Client 6 clips at 0.5: it refuses the session before any key (and, like a real
    client would, leaves); client 7's own policy (min_cohort 10) refuses the cohort of 7;
    the others finish without them."""
    server = server_factory(clients=7)
    ids = range(1, 8)
    other = AggregationParams(clip=0.5, bits=16, max_weight=100, max_clients=10)
    clients = _clients(server, certs_dir, ids, {6: other}, {7: {"min_cohort": 10}})
    try:
        results, threads = _submit_all(clients, _updates(ids, 2), dict.fromkeys(ids, 1), MODEL)
        result = server.aggregate(MODEL)
        _join(threads)
        assert isinstance(results[6], ParameterMismatchError)
        assert "task hash differs" in str(results[6])
        assert results[7].status == "refused" and "minimum of 10" in results[7].reason
        assert result.included == (1, 2, 3, 4, 5) and result.dropped == (6, 7)
        # both left at once: the round did not wait for its deadline
        assert result.outcome.wall_seconds < 10.0, result.outcome.rounds
    finally:
        for c in clients.values():
            c.close()


def _config(params: AggregationParams, model: Any, n: int = 4, *,
            digest: bytes = UNBOUND) -> SessionConfig:
    spec, _ = spec_of(model)
    return SessionConfig.create(range(1, n + 1), spec.dim(params), params.quantization().modulus,
                                settings=SMALL, task_hash=task_hash(params, spec, digest))


@pytest.mark.parametrize("client_params, client_model, needle", [
    (AggregationParams(clip=1.0, bits=12, max_weight=100, max_clients=10), MODEL, "modulus"),
    # same modulus (2**26) as max_clients=10, but the cohort of 10 is too large for it
    (AggregationParams(clip=1.0, bits=16, max_weight=100, max_clients=9), MODEL,
     "more than max_clients=9"),
    (PARAMS, [np.zeros((4, 3), np.float32), *MODEL[1:]], "task hash"),  # same size, shapes differ
    (PARAMS, MODEL[:2], "aggregates 19 values, this client's update gives 18"),
    (AggregationParams(clip=0.25, bits=16, max_weight=100, max_clients=10), MODEL, "task hash"),
    (PARAMS, dict(zip("abc", MODEL, strict=True)), "task hash"),  # names bound
])
def test_check_session_names_what_differs(client_params: AggregationParams, client_model: Any,
                                          needle: str) -> None:
    config = _config(PARAMS, MODEL, 10)
    spec, _ = spec_of(client_model)
    check_session(config, PARAMS, spec_of(MODEL)[0])  # the server's own parameters pass
    with pytest.raises(ParameterMismatchError, match=needle) as info:
        check_session(config, client_params, spec)
    assert isinstance(info.value, ConfigError)


def test_the_model_digest_is_bound_and_dtype_blind() -> None:
    model64 = [a.astype(np.float64) + 0.5 for a in MODEL]
    model32 = [a.astype(np.float32) + 0.5 for a in MODEL]
    assert model_digest(model64) == model_digest(model32)
    assert model_digest(model64) != model_digest([a + 0.25 for a in model64])
    config = _config(PARAMS, MODEL, digest=model_digest(model64))
    spec = spec_of(MODEL)[0]
    check_session(config, PARAMS, spec, model_digest(model32))
    with pytest.raises(ParameterMismatchError):
        check_session(config, PARAMS, spec)  # a client that did not bind the model
    with pytest.raises(ParameterMismatchError):
        check_session(config, PARAMS, spec, model_digest(MODEL))  # another model


@pytest.mark.parametrize("kwargs", [{"clip": 0.0}, {"bits": 0}, {"max_weight": 0},
                                    {"max_clients": 0}, {"clip": float("nan")}])
def test_unusable_parameters_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        AggregationParams(**kwargs)


def test_arguments_are_checked_before_anything_is_sent(certs_dir: Path) -> None:
    client = DeploymentClient(PARAMS, server="127.0.0.1:1", client_id=1, certs_dir=certs_dir)
    try:
        with pytest.raises(ConfigError, match="weight"):
            client.submit(MODEL, 101)
        with pytest.raises(ConfigError, match="NaN"):
            client.submit([np.full(3, np.nan)], 1)
        with pytest.raises(ConfigError, match="not one array"):
            client.submit(np.zeros(3), 1)
    finally:
        client.close()
    with pytest.raises(ConfigError, match="insecure"):
        DeploymentClient(PARAMS, server="127.0.0.1:1", client_id=1)
    with pytest.raises(ConfigError, match="min_cohort"):
        DeploymentServer(PARAMS, clients=5, certs_dir=certs_dir)  # default min_cohort 10
    with pytest.raises(ConfigError, match="max_clients"):
        DeploymentServer(PARAMS, clients=11, certs_dir=certs_dir)


# -- dropouts and aborts ------------------------------------------------------------------------
@pytest.mark.slow
def test_a_client_that_leaves_mid_round_is_dropped_without_waiting_for_the_deadline(
        server_factory: Callable[..., DeploymentServer], certs_dir: Path) -> None:
    opened = threading.Event()
    server = server_factory(clients=5, round_timeout=20.0, on_event=lambda e: (
        opened.set() if e.get("event") == "session-open" else None))
    clients = _clients(server, certs_dir, range(1, 6))
    leaver = clients.pop(5)
    try:
        updates = _updates(range(1, 5), 3)
        results, threads = _submit_all(clients, updates, dict.fromkeys(range(1, 5), 2), MODEL)

        def leave() -> None:  # connected and in the cohort, then gone mid-round
            opened.wait(30)
            leaver.close()

        threading.Thread(target=leave, daemon=True).start()
        result = server.aggregate(MODEL)
        _join(threads)
        assert result.included == (1, 2, 3, 4) and result.dropped == (5,)
        assert all(results[u].status == "done" for u in range(1, 5))
        # the disconnect closed the round, not its 20 s deadline
        assert result.outcome.wall_seconds < 20.0, result.outcome.rounds
        want = weighted_mean(updates, None, range(1, 5), clip=PARAMS.clip)
        for got, ref in zip(result.mean, want, strict=True):
            assert np.max(np.abs(got.astype(np.float64) - ref)) <= result.error_bound
    finally:
        for c in clients.values():
            c.close()


@pytest.mark.slow
def test_too_few_clients_abort_the_round_and_the_clients_are_told(
        server_factory: Callable[..., DeploymentServer], certs_dir: Path) -> None:
    server = server_factory(clients=3, join_timeout=1.0)
    clients = _clients(server, certs_dir, range(1, 3))
    results, threads = _submit_all(clients, _updates(range(1, 3), 4), {1: 1, 2: 1}, MODEL)
    with pytest.raises(RoundAborted, match="only 2 clients joined"):
        server.aggregate(MODEL)
    with pytest.raises(ConfigError, match="round_index"):  # session ids must not repeat
        server.aggregate(MODEL, round_index=0)
    server.close()  # goodbye: the clients stop, their pending updates fail
    _join(threads)
    assert all(isinstance(results[u], ClientStoppedError) for u in (1, 2))
    with pytest.raises(ConfigError, match="start"):
        server.aggregate(MODEL)

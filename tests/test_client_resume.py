"""A client resumed at the unmask round from its held shares behaves as the one that
computed them, and the Flower mod stores those shares, never the seed, after the masked
input (spec §20.4)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from secagg.client import ClientProtocol, ClientState
from secagg.config import SessionConfig
from secagg.crypto.entropy import DeterministicEntropy
from secagg.errors import ConfigError, ProtocolError
from secagg.messages import UnmaskRequest
from secagg.server import ServerProtocol

N = 5


def _session() -> tuple[SessionConfig, dict[int, ClientProtocol], ServerProtocol]:
    """Five clients run to the unmask round (nobody drops)."""
    config = SessionConfig.create(range(1, N + 1), 16, 1 << 20, min_cohort=N)
    clients = {u: ClientProtocol(config, u, np.full(16, u, dtype=np.uint32),
                                 entropy=DeterministicEntropy(bytes([u])))
               for u in config.cohort}
    server = ServerProtocol(config)
    for c in clients.values():
        server.receive(c.start())
    for _ in range(2):  # ShareKeys, then MaskedInput
        for u, msg in server.close_round().items():
            server.receive(clients[u].handle(msg))  # type: ignore[arg-type]
    return config, clients, server


def test_resumed_client_releases_the_same_shares_and_refuses_the_same() -> None:
    config, clients, _ = _session()
    request = UnmaskRequest(alive=(1, 2, 3, 4), dropped=(5,))
    original = clients[1]
    resumed = ClientProtocol.resume_unmasking(config, 1, original.unmasking_state())
    assert resumed.state is ClientState.UNMASKING
    assert resumed.handle(request) == original.handle(request)
    both = UnmaskRequest(alive=(1, 2, 3, 4, 5), dropped=(2,))
    with pytest.raises(ProtocolError, match="both alive and dropped"):
        ClientProtocol.resume_unmasking(config, 2, clients[2].unmasking_state()).handle(both)


def test_unmasking_state_only_where_it_is_all_the_client_holds() -> None:
    config, clients, _ = _session()
    fresh = ClientProtocol(config, 1, np.zeros(16, dtype=np.uint32))
    with pytest.raises(ConfigError):
        fresh.unmasking_state()  # before the masked input it holds its own secrets
    held = clients[1].unmasking_state()
    clients[1].handle(UnmaskRequest(alive=(1, 2, 3, 4, 5), dropped=()))
    with pytest.raises(ConfigError):
        clients[1].unmasking_state()  # done: nothing left to resume
    bad = dict(held)
    bad[2] = (b"short", bad[2][1])
    with pytest.raises(ConfigError):
        ClientProtocol.resume_unmasking(config, 1, bad)
    with pytest.raises(ConfigError):
        ClientProtocol.resume_unmasking(config, 1, {**held, 99: held[2]})  # not a neighbour
    active = SessionConfig.create(range(1, 11), 16, 1 << 20, mode="active")
    with pytest.raises(ConfigError, match="active"):
        ClientProtocol.resume_unmasking(active, 1, {})


def test_mod_keeps_held_shares_not_the_seed_after_the_masked_input() -> None:
    pytest.importorskip("flwr", reason="the secagg[flower] extra is not installed")
    from flwr.app import Context, Message
    from flwr.client import NumPyClient
    from flwr.clientapp import ClientApp
    from flwr.common import ndarrays_to_parameters
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow
    from flwr.serverapp import Grid, ServerApp

    from secagg.flower import RECORD_KEY, SecAggPlusMod, SecAggPlusWorkflow, run_inprocess
    from secagg.flower.common import STATE_KEY

    stored: dict[str, dict[str, object]] = {}

    def spy(msg: Message, ctxt: Context, call_next: Callable[..., Message]) -> Message:
        stage = str(msg.content.config_records[RECORD_KEY]["stage"])  # the mod removes it
        reply = call_next(msg, ctxt)
        if int(ctxt.node_config["partition-id"]) == 0:
            record = ctxt.state.config_records.get(STATE_KEY)
            stored[stage] = dict(record) if record is not None else {}
        return reply

    class Plain(NumPyClient):
        def fit(self, parameters: list[np.ndarray], config: dict[str, object]
                ) -> tuple[list[np.ndarray], int, dict[str, float]]:
            return [p + 0.5 for p in parameters], 3, {}

    workflow = SecAggPlusWorkflow(clipping_range=1.0, max_weight=10, min_cohort=N)
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=N,
                          min_available_clients=N,
                          initial_parameters=ndarrays_to_parameters([np.zeros(8)]))
        legacy = LegacyContext(context, config=ServerConfig(num_rounds=1), strategy=strategy,
                               client_manager=SimpleClientManager())
        DefaultWorkflow(fit_workflow=workflow)(grid, legacy)  # type: ignore[arg-type]

    client = ClientApp(client_fn=lambda context: Plain().to_client(),
                       mods=[spy, SecAggPlusMod(cache=False)])
    run_inprocess(server, client, N, seed=6)
    assert len(workflow.outcomes[0].included) == N  # the resumed clients did unmask
    before = stored["share-keys"]
    assert len(before["seed"]) == 32 and before["history"] and not before["held"]  # type: ignore[arg-type]
    after = stored["masked-input"]
    assert after["seed"] == b"" and after["history"] == []
    assert len(after["held"]) == N - 1  # type: ignore[arg-type]  # one per neighbour
    assert stored["unmask"] == {"next-stage": ""}  # done: nothing kept

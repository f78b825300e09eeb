"""The Flower client path imports nothing heavy beyond what Flower's own mod imports.

In Flower's deployment engine every message starts a fresh ClientApp process, so
whatever ``secagg.flower`` pulls in is paid four times per node and round (issue
19). These tests check that budget by module names, never by wall-clock time: a
heavy dependency (numba, scikit-learn, matplotlib, grpc, torch, scipy, tqdm, ray,
dp-accounting) must not appear among the modules our import adds to
``flwr.client.mod``'s, and a whole round at a small model size runs without numba.
The measured times are ``python -m bench.import_cost``'s job.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytest.importorskip("flwr", reason="the secagg[flower] extra (flwr 1.42) is not installed")

HEAVY = frozenset({"numba", "llvmlite", "sklearn", "matplotlib", "grpc", "torch", "scipy",
                   "tqdm", "ray", "dp_accounting"})
_LINE = re.compile(r"^import time:\s+\d+\s+\|\s+\d+\s+\|\s*(\S+)\s*$")


def imported_by(statement: str) -> set[str]:
    """Every module ``python -X importtime -c statement`` reports importing."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", statement],
                         capture_output=True, text=True, check=True)
    names = {m.group(1) for line in out.stderr.splitlines() if (m := _LINE.match(line))}
    assert names, "no -X importtime output: the check would pass vacuously"
    return names


def top_level(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


@pytest.fixture(scope="module")
def flower_baseline() -> set[str]:
    return imported_by("import flwr.client.mod")


@pytest.mark.parametrize("statement", [
    "import secagg.flower",
    "from secagg.flower import secaggplus_mod",
    "from secagg.flower import SecAggPlusMod, RECORD_KEY, Stage",
])
def test_client_imports_nothing_heavy_beyond_flower(statement: str,
                                                    flower_baseline: set[str]) -> None:
    ours = imported_by(statement)
    assert "secagg.flower" in ours
    extra = top_level(ours - flower_baseline)
    assert not extra & HEAVY, f"{statement!r} imports {sorted(extra & HEAVY)}"


def test_the_mod_does_not_import_the_server_side() -> None:
    """A ClientApp never needs the workflow, the session driver or the engine's pools."""
    ours = imported_by("from secagg.flower import secaggplus_mod")
    server_side = {"secagg.flower.workflow", "secagg.flower.inprocess", "secagg.server",
                   "secagg.session", "secagg.engine", "secagg.transcript", "secagg.receipt",
                   "multiprocessing"}
    assert not ours & server_side, sorted(ours & server_side)


def test_the_mod_loads_no_second_crypto_library() -> None:
    """Flower's client side already loads ``cryptography`` (OpenSSL); our semi-honest
    client path uses it too (X25519) and never loads libsodium (``nacl``, ``_sodium``),
    a whole second library per ClientApp process. Ed25519 (active mode, the server's
    identities) still uses it."""
    ours = top_level(imported_by("import flwr.client.mod\n"
                                 "from secagg.flower import secaggplus_mod"))
    assert not ours & {"nacl", "_sodium"}, sorted(ours & {"nacl", "_sodium"})
    assert "nacl" in top_level(imported_by("from secagg.flower import secaggplus_mod\n"
                                           "import secagg.crypto.signatures"))


def test_the_check_sees_a_heavy_import(flower_baseline: set[str]) -> None:
    """The budget check can fail: importing numba next to our mod is caught."""
    ours = imported_by("from secagg.flower import secaggplus_mod\nimport numba")
    assert "numba" in top_level(ours - flower_baseline) & HEAVY


def test_a_small_round_runs_without_numba() -> None:
    """Four stages on every client of a small model: the numpy paths, no numba loaded."""
    code = """
import sys
import numpy as np
from flwr.app import Context
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import SimpleClientManager
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow
from flwr.serverapp import ServerApp
from secagg.flower import SecAggPlusMod, SecAggPlusWorkflow, run_inprocess

class C(NumPyClient):
    def fit(self, parameters, config):
        return [p + 0.5 for p in parameters], 3, {}

server = ServerApp()
workflow = SecAggPlusWorkflow(clipping_range=1.0, max_weight=10, min_cohort=5)

@server.main()
def main(grid, context):
    strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=5,
                      min_available_clients=5,
                      initial_parameters=ndarrays_to_parameters([np.zeros(1000, np.float32)]))
    legacy = LegacyContext(context, config=ServerConfig(num_rounds=1), strategy=strategy,
                           client_manager=SimpleClientManager())
    DefaultWorkflow(fit_workflow=workflow)(grid, legacy)

client = ClientApp(client_fn=lambda context: C().to_client(), mods=[SecAggPlusMod(cache=False)])
run_inprocess(server, client, 5, seed=2)
assert len(workflow.outcomes[0].included) == 5, workflow.outcomes
print(sorted({m.split(".")[0] for m in sys.modules} & {"numba", "llvmlite"}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"

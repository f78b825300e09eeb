"""LoRA fine-tuning (fl.lora): only adapter tensors are ever sent, fewer bytes than full
fine-tuning, secure equals plaintext, and the example runs at small size."""

from __future__ import annotations

import runpy
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

import torch

import fl.fedavg as fedavg_mod
from fl.data import federate
from fl.fedavg import FedAvgConfig, run_fedavg
from fl.lora import AdapterModel, experiment, with_lora
from fl.torch_adapter import mlp_module
from secagg.aggregator import AggregationResult, SecureAggregator
from secagg.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "lora" / "run.py"


class SpyAggregator(SecureAggregator):
    """Records every array any client hands to the secure session."""

    sent: ClassVar[list[list[np.ndarray]]] = []

    def aggregate(self, updates_by_client: Mapping[int, Sequence[np.ndarray]],
                  weights: Mapping[int, int] | None = None, **kw: Any) -> AggregationResult:
        type(self).sent.extend([np.array(a) for a in v] for v in updates_by_client.values())
        return super().aggregate(updates_by_client, weights, **kw)


def test_only_adapter_tensors_are_ever_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    data = federate("digits", 10, alpha=0.5, seed=0)
    base = mlp_module(data.num_features, data.num_classes, hidden=16, seed=0)
    frozen = {k: v.clone() for k, v in base.state_dict().items()}
    model = with_lora(base, rank=2)
    assert isinstance(model, AdapterModel)
    assert model.adapter_names and all("lora_" in n for n in model.adapter_names)
    adapter_shapes = [tuple(p.shape) for p in model.get_weights()]
    SpyAggregator.sent = []
    monkeypatch.setattr(fedavg_mod, "SecureAggregator", SpyAggregator)
    history = run_fedavg(data, model, FedAvgConfig(rounds=2, local_epochs=1, lr=0.1))
    assert SpyAggregator.sent
    assert all([a.shape for a in sent] == adapter_shapes for sent in SpyAggregator.sent)
    assert history.within_bound
    # the base never moved, in the trained model or in the module it was copied from
    state = model.module.state_dict()
    for name, tensor in frozen.items():
        peft_name = "base_model.model." + name.replace(".weight", ".base_layer.weight").replace(
            ".bias", ".base_layer.bias")
        assert torch.equal(state[peft_name], tensor)
        assert torch.equal(base.state_dict()[name], tensor)
    with pytest.raises(ConfigError):
        model.set_weights(model.get_weights()[:-1])


def test_lora_against_full_fine_tuning_small() -> None:
    result = experiment(clients=10, rounds=2, seed=1)
    lora, full = result["lora"], result["full"]
    assert lora["scalars_per_update"] < full["scalars_per_update"] / 4
    assert lora["bytes_up_per_client_per_round"] < full["bytes_up_per_client_per_round"] / 4
    for r in (lora, full):
        assert r["within_bound"]
        assert abs(r["final_accuracy_secure"] - r["final_accuracy_plaintext"]) <= 0.01


def test_example_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), "--clients", "10", "--rounds", "1"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(EXAMPLE), run_name="__main__")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "lora:" in out and "full:" in out and "bytes up per client per round" in out

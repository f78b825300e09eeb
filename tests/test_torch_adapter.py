"""PyTorch adapter: exact NDArrays round trip (parameters and buffers), FedProx, and
FedAvg with secure aggregation on a torch model.

Needs the ``torch`` extra, which ``make test`` installs. Without it these tests skip
with the reason, except under CI (CI set), where a missing torch is a failure: the
extra is part of what CI must test.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

if importlib.util.find_spec("torch") is None:
    if os.environ.get("CI"):
        pytest.fail("torch is not installed but CI must run the adapter tests: "
                    "install the extra with pip install -e '.[dev,torch]'", pytrace=False)
    pytest.skip("PyTorch not installed (optional extra 'torch': pip install -e '.[torch]')",
                allow_module_level=True)

import torch
from torch import nn

from fl.data import federate
from fl.fedavg import FedAvgConfig, run_fedavg
from fl.models import Model
from fl.torch_adapter import TorchModel, mlp_module
from secagg.errors import ConfigError

# Tiny models gain nothing from a second intra-op thread, and under load (the other
# core busy) torch's spinning worker threads made this file 10x slower.
torch.set_num_threads(1)


def bn_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(),
                         nn.Linear(8, 3, dtype=torch.float64).float())


def test_round_trip_is_exact_with_buffers() -> None:
    net = bn_net(1)
    net.train()
    net(torch.randn(16, 6))  # move the BatchNorm running statistics off their init
    model = TorchModel(net)
    assert isinstance(model, Model)
    weights = model.get_weights()
    names = list(net.state_dict())
    assert len(weights) == len(names)
    assert "1.num_batches_tracked" in names
    assert weights[names.index("1.num_batches_tracked")].dtype == np.int64
    # into a differently initialised twin: bit-for-bit equal state afterwards
    twin = TorchModel(bn_net(2))
    twin.set_weights(weights)
    for (k, a), (k2, b) in zip(net.state_dict().items(), twin.module.state_dict().items(),
                               strict=True):
        assert k == k2 and a.dtype == b.dtype and torch.equal(a, b)
    for a, b in zip(weights, twin.get_weights(), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    # copies, not views: changing the arrays does not touch the module
    weights[0][...] = 5.0
    assert not torch.any(net.state_dict()["0.weight"] == 5.0)


def test_set_weights_casts_and_refuses() -> None:
    model = TorchModel(mlp_module(4, 2, hidden=3))
    w64 = [w.astype(np.float64) / 3 for w in model.get_weights()]
    model.set_weights(w64)
    assert all(w.dtype == np.float32 for w in model.get_weights())
    assert np.array_equal(model.get_weights()[0], w64[0].astype(np.float32))
    with pytest.raises(ConfigError, match="expected 4 arrays"):
        model.set_weights(w64[:2])
    with pytest.raises(ConfigError, match="shape"):
        model.set_weights([np.zeros((4, 3)), *w64[1:]])
    with pytest.raises(ConfigError):
        TorchModel("not a module")  # type: ignore[arg-type]


def test_fedprox_mu_zero_is_plain_sgd_and_mu_pulls_back() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    dist = {}
    results = {}
    for mu in (0.0, 5.0):
        model = TorchModel(mlp_module(4, 2, hidden=5, seed=3))
        start = model.get_weights()
        model.fit(x, y, epochs=5, lr=0.1, batch_size=8, mu=mu, rng=np.random.default_rng(1))
        results[mu] = model.get_weights()
        dist[mu] = sum(float(((a - b) ** 2).sum()) for a, b in zip(results[mu], start,
                                                                  strict=True))
    # reference: torch SGD with no proximal term at all, same shuffling and seeds
    ref = mlp_module(4, 2, hidden=5, seed=3)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    g = np.random.default_rng(1)
    g.integers(2**62)  # the adapter draws its torch seed first
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(5):
        order = torch.from_numpy(g.permutation(64))
        for s in range(0, 64, 8):
            b = order[s : s + 8]
            opt.zero_grad()
            nn.functional.cross_entropy(ref(xt[b]), yt[b]).backward()
            opt.step()
    for a, b in zip(results[0.0], [v.detach().numpy() for v in ref.state_dict().values()],
                    strict=True):
        assert np.array_equal(a, b)
    assert dist[5.0] < dist[0.0]


def test_fedavg_with_a_torch_model_stays_within_the_bound() -> None:
    data = federate("digits", 12, alpha=1.0, seed=1)
    model = TorchModel(mlp_module(data.num_features, data.num_classes, seed=0))
    history = run_fedavg(data, model, FedAvgConfig(rounds=3, local_epochs=2, lr=0.3,
                                                   graph="complete"))
    assert history.within_bound
    assert history.final_accuracy_secure > history.initial_accuracy + 0.3
    plain = history.final_accuracy_plaintext
    assert plain is not None and abs(history.final_accuracy_secure - plain) <= 0.02
    for r in history.rounds:
        assert r.aggregation_error is not None and r.aggregation_error <= r.error_bound

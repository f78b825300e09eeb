"""LoRA fine-tuning through secure aggregation: only adapter tensors are masked and summed.

A base model is trained centrally (on data the server holds; nothing is
downloaded), then wrapped by ``peft`` with LoRA adapters (Hu et al. 2021): each
targeted ``nn.Linear`` gets ``W + B A`` with ``A`` (r x in) and ``B`` (out x r)
trainable and ``W`` frozen. :class:`AdapterModel` is a
:class:`~fl.torch_adapter.TorchModel` whose ``get_weights`` / ``set_weights``
exchange the trainable (adapter) tensors only, so the FedAvg loop
(:func:`fl.fedavg.run_fedavg`) and :class:`~secagg.aggregator.SecureAggregator`
never see the frozen base: the masked vector is the adapters' size, not the
model's. :func:`upload_bytes` says what one client sends in the masked-input
round (spec §7: one masked vector mod R, each element in the modulus' dtype).

Needs the ``torch`` extra (``torch`` and ``peft``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from fl.torch_adapter import Loss, TorchModel
from secagg.aggregator import SecureAggregator
from secagg.crypto.prg import mask_dtype
from secagg.errors import ConfigError
from secagg.quantize import flatten

if TYPE_CHECKING:
    from fl.data import FederatedData
    from fl.fedavg import FedAvgConfig


class AdapterModel(TorchModel):
    """A module whose exchanged weights are its trainable parameters only (LoRA adapters).

    ``adapter_names`` lists them in order; the frozen base never leaves the client
    and is never overwritten by ``set_weights``.
    """

    def __init__(self, module: nn.Module, *, loss: Loss | None = None) -> None:
        super().__init__(module, loss=loss)
        self.adapter_names = [n for n, p in module.named_parameters() if p.requires_grad]
        if not self.adapter_names:
            raise ConfigError("the module has no trainable (adapter) parameters")

    def _adapters(self) -> list[torch.nn.Parameter]:
        params = dict(self.module.named_parameters())
        return [params[n] for n in self.adapter_names]

    def get_weights(self) -> list[np.ndarray]:
        """The adapter tensors as numpy copies (the frozen base is not included)."""
        return [p.detach().cpu().numpy().copy() for p in self._adapters()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        params = self._adapters()
        if len(weights) != len(params):
            raise ConfigError(f"expected {len(params)} adapter arrays, got {len(weights)}")
        with torch.no_grad():
            for name, p, w in zip(self.adapter_names, params, weights, strict=True):
                a = np.asarray(w)
                if tuple(a.shape) != tuple(p.shape):
                    raise ConfigError(f"{name} has shape {tuple(p.shape)}, got {a.shape}")
                p.copy_(torch.from_numpy(np.array(a, copy=True)).to(p.dtype))


def linear_names(module: nn.Module) -> list[str]:
    """Names of the module's ``nn.Linear`` layers: the LoRA targets."""
    return [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]


def with_lora(base: nn.Module, *, rank: int = 4, alpha: int | None = None,
              seed: int = 0) -> AdapterModel:
    """A copy of ``base`` with LoRA adapters of ``rank`` on every Linear layer (base frozen).

    ``alpha`` is LoRA's scale numerator (the update is ``alpha / rank * B A``);
    None takes ``2 * rank``, a scale of 2 whatever the rank.

    peft draws ``A`` from torch's global RNG; it is seeded from ``seed`` here (the
    caller's RNG left alone), so the secure run, its twin and any rerun agree.
    """
    if rank < 1:
        raise ConfigError("rank must be >= 1")
    config = LoraConfig(r=rank, lora_alpha=2 * rank if alpha is None else alpha,
                        target_modules=linear_names(base), lora_dropout=0.0, bias="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AdapterModel(get_peft_model(copy.deepcopy(base), config))


def upload_bytes(aggregator: SecureAggregator, cohort: Sequence[int],
                 weights: Sequence[np.ndarray]) -> int:
    """Bytes of one client's masked input for updates shaped like ``weights`` (spec §7):
    the session's length (the update plus the weight coordinate) times the element size."""
    config = aggregator.session_config(list(cohort), flatten(weights)[1])
    return int(config.dim) * mask_dtype(config.modulus).itemsize


def experiment(*, clients: int = 20, alpha: float = 0.5, rounds: int = 10,
               local_epochs: int = 2, lr: float = 0.1, pretrain_classes: int = 5,
               pretrain_epochs: int = 20, rank: int = 4, hidden: int = 64,
               dropout: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """Pretrain centrally, then fine-tune federatedly: LoRA adapters against the full model.

    The base is an MLP trained centrally on the examples of the first
    ``pretrain_classes`` digit classes only (the server's own data: the task it
    knows); the federation then fine-tunes it on all ten classes, securely
    aggregated, once with LoRA adapters (rank ``rank`` on every Linear layer,
    the base frozen) and once as full fine-tuning, with the same cohorts,
    dropouts and seeds. Returns accuracies (secure and plaintext twin) and the
    bytes each client uploads per round in each case.
    """
    from fl.data import federate
    from fl.fedavg import FedAvgConfig

    # tiny matrices: torch's intra-op threads cost far more than they save (x70 on 2 cores)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {"alpha": alpha, **_experiment(federate("digits", clients, alpha=alpha, seed=seed),
                           FedAvgConfig(rounds=rounds, local_epochs=local_epochs, lr=lr,
                                        dropout=dropout, seed=seed),
                           pretrain_classes=pretrain_classes, pretrain_epochs=pretrain_epochs,
                           rank=rank, hidden=hidden)}
    finally:
        torch.set_num_threads(threads)


def _experiment(data: FederatedData, config: FedAvgConfig, *, pretrain_classes: int,
                pretrain_epochs: int, rank: int, hidden: int) -> dict[str, Any]:
    from fl.fedavg import run_fedavg
    from fl.torch_adapter import mlp_module

    seed, lr = config.seed, config.lr
    x = np.concatenate([c.x_train for _, c in sorted(data.clients.items())])
    y = np.concatenate([c.y_train for _, c in sorted(data.clients.items())])
    known = y < pretrain_classes
    base = mlp_module(data.num_features, data.num_classes, hidden=hidden, seed=seed)
    central = TorchModel(base)
    central.fit(x[known], y[known], epochs=pretrain_epochs, lr=lr, batch_size=32, mu=0.0,
                rng=np.random.default_rng([seed, 0xBA5E]))
    out: dict[str, Any] = {
        "pretrain_classes": pretrain_classes, "pretrain_examples": int(known.sum()),
        "base_accuracy": central.evaluate(data.x_test, data.y_test).accuracy,
        "clients": len(data.clients), "rounds": config.rounds, "rank": rank,
    }
    for name, model in (("lora", with_lora(base, rank=rank, seed=seed)),
                        ("full", TorchModel(copy.deepcopy(base)))):
        start = model.get_weights()
        history = run_fedavg(data, model, config)
        aggregator = SecureAggregator(clip=config.clip, bits=config.bits,
                                      max_weight=data.num_train,
                                      settings=config.session_settings())
        out[name] = {
            "scalars_per_update": int(flatten(start)[0].size),
            "bytes_up_per_client_per_round": upload_bytes(aggregator, sorted(data.clients),
                                                          start),
            "final_accuracy_secure": history.final_accuracy_secure,
            "final_accuracy_plaintext": history.final_accuracy_plaintext,
            "within_bound": history.within_bound,
            "secagg_seconds": history.secagg_seconds,
        }
    return out

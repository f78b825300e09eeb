"""PyTorch adapter: any ``nn.Module`` as an :class:`fl.models.Model` (``NDArrays`` in and out).

Needs the optional extra ``torch`` (``pip install -e '.[torch]'``); importing
this module without PyTorch raises :class:`~secagg.errors.ConfigError` saying so.

Parameters travel as the module's ``state_dict`` values in order, the
convention Flower uses: buffers (e.g. BatchNorm running statistics) are part
of the model a client trains, so they are averaged too. ``get_weights`` and
``set_weights`` round-trip exactly (same dtypes, bit for bit).

Simulating many clients of a small model in one process? ``torch.set_num_threads(1)``:
a small model gains nothing from intra-op threads, and their spinning workers
slowed training by 10x when the other core was busy (measured on 2 cores).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from fl.models import Metrics, check_training_args
from secagg.errors import ConfigError

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigError(
        "fl.torch_adapter needs PyTorch: install the extra with pip install -e '.[torch]'"
    ) from exc

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TorchModel:
    """Wraps an ``nn.Module`` classifier for the FedAvg loop.

    ``loss`` defaults to cross-entropy on the module's logits; inputs are
    converted to the dtype of the module's first floating-point parameter.
    Training runs on the CPU with SGD; FedProx's ``mu`` adds
    ``mu/2 * ||w - w_received||^2`` over the trainable parameters.
    """

    def __init__(self, module: nn.Module, *, loss: Loss | None = None) -> None:
        if not isinstance(module, nn.Module):
            raise ConfigError("module must be a torch.nn.Module")
        self.module = module
        self.loss: Loss = loss if loss is not None else nn.functional.cross_entropy
        floats = [p.dtype for p in module.parameters() if p.is_floating_point()]
        self._dtype = floats[0] if floats else torch.float32

    def get_weights(self) -> list[np.ndarray]:
        """The ``state_dict`` values as numpy copies (detached, on the CPU)."""
        return [v.detach().cpu().numpy().copy() for v in self.module.state_dict().values()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Load arrays into the ``state_dict`` in order; shapes must match exactly.

        Each array is cast to the dtype of the tensor it replaces, so a float64
        mean computed elsewhere lands in the module's own precision.
        """
        state = self.module.state_dict()
        if len(weights) != len(state):
            raise ConfigError(f"expected {len(state)} arrays, got {len(weights)}")
        new: OrderedDict[str, torch.Tensor] = OrderedDict()
        for (name, tensor), w in zip(state.items(), weights, strict=True):
            a = np.asarray(w)
            if tuple(a.shape) != tuple(tensor.shape):
                raise ConfigError(
                    f"{name} has shape {tuple(tensor.shape)}, got an array of shape {a.shape}"
                )
            new[name] = torch.from_numpy(np.array(a, copy=True)).to(tensor.dtype)
        self.module.load_state_dict(new, strict=True)

    def _tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.as_tensor(np.asarray(x)).to(self._dtype),
                torch.as_tensor(np.asarray(y), dtype=torch.long))

    def fit(self, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, batch_size: int,
            mu: float, rng: np.random.Generator) -> None:
        """Minibatch SGD; shuffling (and torch's own RNG, e.g. for dropout) from ``rng``."""
        check_training_args(epochs, lr, batch_size, mu)
        xt, yt = self._tensors(x, y)
        params = [p for p in self.module.parameters() if p.requires_grad]
        # always applied (adds exactly zero for mu = 0), as in fl.models
        anchor = [p.detach().clone() for p in params]
        optimizer = torch.optim.SGD(params, lr=lr)
        self.module.train()
        n = yt.shape[0]
        with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG alone
            torch.manual_seed(int(rng.integers(2**62)))
            for _ in range(epochs):
                order = torch.from_numpy(rng.permutation(n))
                for start in range(0, n, batch_size):
                    batch = order[start : start + batch_size]
                    optimizer.zero_grad()
                    loss = self.loss(self.module(xt[batch]), yt[batch])
                    prox = sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))
                    loss = loss + 0.5 * mu * prox
                    loss.backward()
                    optimizer.step()

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> Metrics:
        xt, yt = self._tensors(x, y)
        self.module.eval()
        with torch.no_grad():
            logits = self.module(xt)
            loss = float(self.loss(logits, yt))
            accuracy = float((logits.argmax(dim=1) == yt).float().mean()) if len(yt) else 0.0
        return Metrics(loss=loss, accuracy=accuracy)


def mlp_module(num_features: int, num_classes: int, *, hidden: int = 32,
               seed: int = 0) -> nn.Module:
    """A small MLP (Linear-ReLU-Linear), seeded, to try the adapter with."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(num_features, hidden), nn.ReLU(),
                             nn.Linear(hidden, num_classes))

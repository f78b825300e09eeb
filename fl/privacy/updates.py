"""What a client sends and what the server holds: one update, the secure sum, the noisy sum.

A client's *update* is ``w_local - w_global`` after ``local_steps`` steps of
SGD on its own examples (FedAvg's message, the thing secure aggregation hides).
Three *views* of a round are built here, one per thing a server may hold:

- ``individual``: one client's update, as a server without secure aggregation
  receives it;
- ``aggregate``: the sum of the ``n`` clients' updates, computed by a real
  secure-aggregation session (:class:`secagg.aggregator.SecureAggregator`:
  quantize, mask, unmask the sum; spec §4-§7), the only vector the server holds;
- ``aggregate_dp``: the same quantized sum with distributed-DP noise added
  (:mod:`fl.privacy.noise`), after each update is clipped to an L2 norm.

Everything is in PyTorch (CPU) because the attacks differentiate through the
clients' local training; the parameters are the module's ``parameters()`` in
order, which for ``fl.torch_adapter.mlp_module`` equal its ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from fl.privacy.noise import NoiseFn, distributed_discrete_gaussian
from secagg.aggregator import SecureAggregator
from secagg.config import DEFAULT_MIN_COHORT
from secagg.errors import ConfigError

VIEWS = ("individual", "aggregate", "aggregate_dp")

Params = list[torch.Tensor]


def params_of(module: nn.Module) -> Params:
    """The module's parameters, detached copies (the global model the server sent)."""
    return [p.detach().clone() for p in module.parameters()]


def _schedule(n: int, local_steps: int, batch_size: int | None,
              generator: torch.Generator | None) -> list[torch.Tensor | None]:
    """Example indices per SGD step: ``None`` = the whole batch, else shuffled minibatches."""
    if batch_size is None or batch_size >= n:
        return [None] * local_steps
    out: list[torch.Tensor | None] = []
    while len(out) < local_steps:
        order = torch.randperm(n, generator=generator)
        out.extend(order[i:i + batch_size] for i in range(0, n, batch_size))
    return out[:local_steps]


def local_update(module: nn.Module, w0: Sequence[torch.Tensor], x: torch.Tensor,
                 y: torch.Tensor, *, lr: float, local_steps: int, batch_size: int | None = None,
                 create_graph: bool = False, generator: torch.Generator | None = None) -> Params:
    """``w_local - w0`` after ``local_steps`` SGD steps of cross-entropy on ``(x, y)``.

    ``batch_size=None`` (or >= len(x)) makes every step a full-batch step on the
    client's examples, the setting of "Inverting Gradients" §5 (local steps on
    one batch). With ``create_graph`` the result is differentiable in ``x``:
    the attacker simulates a client's training on candidate inputs this way.
    """
    names = [n for n, _ in module.named_parameters()]
    params = [w.detach().clone().requires_grad_(True) for w in w0]
    for idx in _schedule(x.shape[0], local_steps, batch_size, generator):
        xb, yb = (x, y) if idx is None else (x[idx], y[idx])
        logits = functional_call(module, dict(zip(names, params, strict=True)), (xb,))
        loss = nn.functional.cross_entropy(logits, yb)
        grads = torch.autograd.grad(loss, params, create_graph=create_graph)
        params = [p - lr * g for p, g in zip(params, grads, strict=True)]
        if not create_graph:
            params = [p.detach().requires_grad_(True) for p in params]
    return [(p - w) if create_graph else (p - w).detach()
            for p, w in zip(params, w0, strict=True)]


def clip_l2(update: Sequence[torch.Tensor], bound: float) -> Params:
    """Scale an update down to L2 norm ``bound`` (the DP sensitivity of one client)."""
    norm = float(torch.sqrt(sum((u.double() ** 2).sum() for u in update)))
    scale = min(1.0, bound / norm) if norm > 0 else 1.0
    return [u * scale for u in update]


@dataclass(frozen=True)
class DPConfig:
    """Distributed DP on the sum: clip each update to ``clip_norm``, noise ``multiplier``.

    The sum gets noise of standard deviation ``multiplier * clip_norm`` per
    coordinate (each client's share ``/ sqrt(n)``), the Gaussian mechanism's
    calibration for L2 sensitivity ``clip_norm``.
    """

    multiplier: float
    clip_norm: float = 1.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.multiplier) and self.multiplier >= 0):
            raise ConfigError("--dp noise multiplier must be a finite number >= 0")
        if not (np.isfinite(self.clip_norm) and self.clip_norm > 0):
            raise ConfigError("DP clip norm must be a finite number > 0")


def secure_sum(updates: Sequence[Sequence[torch.Tensor]], *, clip: float, bits: int = 20,
               dp: DPConfig | None = None, noise: NoiseFn = distributed_discrete_gaussian,
               seed: int = 0) -> Params:
    """The sum of ``updates`` as the server gets it from a secure-aggregation session.

    Runs :meth:`SecureAggregator.aggregate` (every client in one process) and
    returns ``mean * n``. With ``dp``, updates are first L2-clipped to
    ``dp.clip_norm`` and the session's integer sum mod R (what the server
    unmasks) gets integer noise from ``noise`` in quantization levels before
    decoding, which is how distributed DP lands on a secure sum. The noise is
    added to the integer sum without reduction mod R, as if the modulus had
    room for it (sizing the modulus for the noise is ``secagg.dp``'s job).
    """
    if dp is not None:
        updates = [clip_l2(u, dp.clip_norm) for u in updates]
    # the library refuses cohorts below DEFAULT_MIN_COHORT because their sum reveals too
    # much; here small cohorts are what is being measured, so the floor is lowered explicitly
    agg = SecureAggregator(clip=clip, bits=bits, seed=seed,
                           min_cohort=min(len(updates), DEFAULT_MIN_COHORT))
    arrays = {cid: [u.double().numpy() for u in upd] for cid, upd in enumerate(updates, start=1)}
    result = agg.aggregate(arrays)
    n = len(result.included)
    shapes = [u.shape for u in updates[0]]
    if dp is None:
        flat = np.concatenate([m.ravel() for m in result.mean]) * n
    else:
        q = result.quantization
        step = 2.0 * q.clip / q.levels
        total = np.asarray(result.report.sum, dtype=np.int64)
        rng = np.random.default_rng([seed, 0xD9])
        noisy = total + noise(total.shape[0], dp.multiplier * dp.clip_norm / step, n, rng)
        flat = noisy.astype(np.float64) * step - q.clip * n
    out: Params = []
    offset = 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(torch.from_numpy(flat[offset:offset + size].reshape(shape)).float())
        offset += size
    return out

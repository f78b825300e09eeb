"""Membership inference: was this record in the training data behind what the server holds?

The base score is the loss decrease: for a record ``(x, y)`` and the model the
view implies (``w0 + Δ_u`` for one update, ``w0 + Σ/n`` for the secure sum,
``w0 + (Σ + noise)/n`` with DP; ``w0`` is the global model the server sent),

    s(x, y) = loss(w0; x, y) - loss(w_view; x, y)

how much the view's training lowered the record's loss. It is then calibrated
per record as in offline LiRA (Carlini et al., S&P 2022): the attacker trains
shadow updates from ``w0`` on data of its own (never the round's records), and
reports ``(s - μ_out) / σ_out`` with the record's own mean and deviation under
those shadows, which removes per-record difficulty (easy digits improve
whether seen or not).

Members and non-members come from the same clients, hence the same label
distribution: for one update, client u's training part against u's held-out
part (pooled over the clients); for the sums, every client's training part
against every client's held-out part. So the AUC measures membership, not the
label skew of a non-IID client. Reported: ROC AUC and the true-positive rate
at 1% false positives (the low-FPR regime LiRA argues is the one that matters).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from fl.privacy.updates import Params


def losses(module: nn.Module, params: Sequence[torch.Tensor], x: torch.Tensor,
           y: torch.Tensor) -> np.ndarray:
    """Per-example cross-entropy of the module with ``params`` on ``(x, y)``."""
    names = [n for n, _ in module.named_parameters()]
    with torch.no_grad():
        logits = functional_call(module, dict(zip(names, params, strict=True)), (x,))
        return nn.functional.cross_entropy(logits, y, reduction="none").double().numpy()


def scores(module: nn.Module, w0: Params, delta: Sequence[torch.Tensor], x: torch.Tensor,
           y: torch.Tensor) -> np.ndarray:
    """Loss decrease of each record from ``w0`` to ``w0 + delta`` (higher = member)."""
    w = [a + d for a, d in zip(w0, delta, strict=True)]
    return losses(module, w0, x, y) - losses(module, w, x, y)


@dataclass(frozen=True)
class MembershipResult:
    """ROC summary of one view: AUC, TPR at 1% FPR, and the sample sizes behind them."""

    auc: float
    tpr_at_1pct_fpr: float
    members: int
    non_members: int
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)


def evaluate(member_scores: np.ndarray, non_member_scores: np.ndarray) -> MembershipResult:
    """AUC and TPR at 1% FPR (scikit-learn's ROC; linear interpolation at FPR = 0.01)."""
    from secagg.extras import require

    metrics = require("sklearn.metrics", "train", "the membership attack's ROC")
    roc_auc_score, roc_curve = metrics.roc_auc_score, metrics.roc_curve

    s = np.concatenate([member_scores, non_member_scores])
    truth = np.concatenate([np.ones(member_scores.shape[0]), np.zeros(non_member_scores.shape[0])])
    fpr, tpr, _ = roc_curve(truth, s)
    return MembershipResult(
        auc=float(roc_auc_score(truth, s)),
        tpr_at_1pct_fpr=float(np.interp(0.01, fpr, tpr)),
        members=int(member_scores.shape[0]),
        non_members=int(non_member_scores.shape[0]),
        fpr=fpr,
        tpr=tpr,
    )


def alignment(module: nn.Module, w0: Params, delta: Sequence[torch.Tensor], x: torch.Tensor,
              y: torch.Tensor) -> np.ndarray:
    """Cosine between each record's descent direction at ``w0`` and the update."""
    from torch.func import grad, vmap

    names = [n for n, _ in module.named_parameters()]

    def loss_one(params: tuple[torch.Tensor, ...], xi: torch.Tensor, yi: torch.Tensor
                 ) -> torch.Tensor:
        logits = functional_call(module, dict(zip(names, params, strict=True)), (xi[None],))
        return nn.functional.cross_entropy(logits, yi[None])

    g = vmap(grad(loss_one), in_dims=(None, 0, 0))(tuple(w0), x, y)
    flat_g = torch.cat([t.reshape(t.shape[0], -1) for t in g], dim=1).double()
    flat_d = torch.cat([t.reshape(-1) for t in delta]).double()
    cos = -(flat_g @ flat_d) / (flat_g.norm(dim=1) * flat_d.norm() + 1e-30)
    return cos.numpy()



@dataclass(frozen=True)
class Calibration:
    """Per-record mean and deviation of the score under shadow updates that did not train on it.

    The offline variant of LiRA (Carlini et al. 2022, §VI.C): the observed
    score is compared with the record's own OUT distribution, ``(s - μ) / σ``,
    which removes per-record difficulty far better than one reference model.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, module: nn.Module, w0: Params, shadows: Sequence[Sequence[torch.Tensor]],
            x: torch.Tensor, y: torch.Tensor) -> Calibration:
        s = np.stack([scores(module, w0, d, x, y) for d in shadows])
        return cls(mean=s.mean(axis=0), std=s.std(axis=0) + 1e-6)

    def slice(self, start: int, size: int) -> Calibration:
        return Calibration(self.mean[start:start + size], self.std[start:start + size])

    def score(self, module: nn.Module, w0: Params, delta: Sequence[torch.Tensor],
              x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        return (scores(module, w0, delta, x, y) - self.mean) / self.std

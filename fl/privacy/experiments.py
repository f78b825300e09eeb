"""The two experiments behind ``secagg attack``: one round of FedAvg, attacked in three views.

Both use the trainer's data (:func:`fl.data.federate`, bundled digits, Dirichlet
label skew alpha = 0.5) and a small model (:func:`fl.torch_adapter.mlp_module`:
64-32-10 ReLU MLP for inversion; 64-128-10 for membership, where a model that
can memorise is the fair target), start from a seeded global model, and build
the views with :mod:`fl.privacy.updates` (the sums by a real secure-aggregation
session). Membership splits the data over ``2n`` clients: the round's ``n`` and
``n`` earlier ones whose records only the attacker's shadow updates use.
Each returns one JSON-ready dict per view; field names are the public
interface of ``secagg attack --json``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fl.data import federate
from fl.privacy import inversion as inv
from fl.privacy import membership as mia
from fl.privacy.noise import NoiseFn, distributed_discrete_gaussian
from fl.privacy.plots import image_grid, roc_plot
from fl.privacy.updates import DPConfig, Params, local_update, params_of, secure_sum
from fl.torch_adapter import mlp_module
from secagg.errors import ConfigError

Tick = Callable[[int], None]
SIDE = 8  # digits are 8 x 8


@dataclass(frozen=True)
class InversionSetup:
    """One FedAvg round as the inversion attack sees it (FedSGD when ``local_steps = 1``)."""

    clients: int = 20
    batch_size: int = 1
    local_steps: int = 1
    lr: float = 0.1
    targets: int = 4  # individual updates attacked (clients 1..targets)
    dp: DPConfig = field(default_factory=lambda: DPConfig(multiplier=1.0))
    quant_clip: float = 2.0
    seed: int = 0

    def check(self) -> None:
        if self.clients < 1:
            raise ConfigError("--clients must be >= 1")
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be >= 1")
        if self.local_steps < 1:
            raise ConfigError("--local-steps must be >= 1")
        if self.targets < 1:
            raise ConfigError("--targets must be >= 1")


def _batches(setup: InversionSetup) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], np.ndarray]:
    """Each client's batch (``batch_size`` of its own training examples) and the training pool."""
    data = federate("digits", setup.clients, seed=setup.seed)
    rng = np.random.default_rng([setup.seed, 0x1A7])
    batches = []
    for _, c in sorted(data.clients.items()):
        if c.num_examples < setup.batch_size:
            raise ConfigError(f"a client holds {c.num_examples} examples, < --batch-size")
        pick = rng.choice(c.num_examples, setup.batch_size, replace=False)
        batches.append((torch.tensor(c.x_train[pick], dtype=torch.float32),
                        torch.tensor(c.y_train[pick])))
    pool = np.concatenate([c.x_train for _, c in sorted(data.clients.items())])
    return batches, pool


def run_inversion(setup: InversionSetup, out: Path, *, config: inv.InversionConfig | None = None,
                  noise: NoiseFn = distributed_discrete_gaussian, tick: Tick | None = None,
                  ) -> list[dict[str, Any]]:
    """Invert one update (clients 1..targets), the secure sum and the DP sum; write PNGs."""
    setup.check()
    torch.manual_seed(setup.seed)
    module = mlp_module(SIDE * SIDE, 10, seed=setup.seed)
    w0 = params_of(module)
    batches, pool = _batches(setup)
    updates = [local_update(module, w0, x, y, lr=setup.lr, local_steps=setup.local_steps)
               for x, y in batches]
    kw = {"lr": setup.lr, "local_steps": setup.local_steps, "side": SIDE, "config": config,
          "progress": tick}
    originals = np.concatenate([x.numpy() for x, _ in batches])
    results: list[dict[str, Any]] = []
    # the sums first: a cohort the library refuses is refused before minutes of inversion
    sums = {view: (dp, secure_sum(updates, clip=setup.quant_clip, dp=dp, noise=noise,
                                  seed=setup.seed))
            for view, dp in (("aggregate", None), ("aggregate_dp", setup.dp))}

    # (a) individual: what a server without secure aggregation holds
    targets = min(setup.targets, setup.clients)
    recs, matches = [], []
    for u in range(targets):
        rec, _ = inv.invert(module, w0, updates[u], setup.batch_size, seed=setup.seed + u, **kw)
        recs.append(rec)
        matches.append(inv.best_match(rec, pool))
    rec = np.concatenate(recs)
    match = inv.Match(index=np.concatenate([m.index for m in matches]),
                      mse=np.concatenate([m.mse for m in matches]),
                      recovered=np.concatenate([m.recovered for m in matches]))
    shown = originals[: targets * setup.batch_size]
    png = image_grid([("originals", shown, None),
                      ("from one update", rec, _captions(match))],
                     out / "inversion_individual.png",
                     title=f"one client's update (batch {setup.batch_size}, "
                     f"{setup.local_steps} local step(s)), clients 1-{targets}")
    results.append(_inv_row("individual", setup, match, targets, png))

    # (b) and (c): the secure sum, without and with distributed DP
    m = setup.clients * setup.batch_size
    for view, (dp, total) in sums.items():
        rec, _ = inv.invert(module, w0, total, m, seed=setup.seed + 1000, **kw)
        match = inv.best_match(rec, pool)
        label = "from the secure sum" if dp is None else "from the DP sum"
        png = image_grid([("originals", originals, None), (label, rec, _captions(match))],
                         out / f"inversion_{view}.png",
                         title=f"{view}: sum of {setup.clients} clients (batch "
                         f"{setup.batch_size}), attacker reconstructs {m} images")
        row = _inv_row(view, setup, match, 1, png)
        if dp is not None:
            row.update(dp_multiplier=dp.multiplier, dp_clip_norm=dp.clip_norm)
        results.append(row)
    return results


def _captions(match: inv.Match) -> list[str]:
    return [f"{e:.3f}" + (" ok" if r else "") for e, r in
            zip(match.mse, match.recovered, strict=True)]


def _inv_row(view: str, setup: InversionSetup, match: inv.Match, attacked: int,
             png: Path) -> dict[str, Any]:
    return {
        "attack": "inversion", "view": view, "clients": setup.clients,
        "batch_size": setup.batch_size, "local_steps": setup.local_steps,
        "updates_attacked": attacked, "reconstructions": int(match.mse.shape[0]),
        "recovered": int(match.recovered.sum()),
        "recovered_fraction": match.recovered_fraction,
        "distinct_examples_recovered": len(set(match.index[match.recovered].tolist())),
        "median_best_mse": float(np.median(match.mse)),
        "recovered_mse_threshold": inv.RECOVERED_MSE,
        "png_path": str(png),
    }


@dataclass(frozen=True)
class MembershipSetup:
    """One FedAvg round of real local training (epochs of minibatch SGD on each client's data).

    ``pretrain_epochs > 0`` starts the round from a model trained on the
    earlier clients (a later round); 0 starts from the seeded initial model.
    """

    clients: int = 20
    batch_size: int = 8
    local_epochs: int = 50
    lr: float = 0.3
    dp: DPConfig = field(default_factory=lambda: DPConfig(multiplier=1.0))
    quant_clip: float = 8.0
    hidden: int = 128
    pretrain_epochs: int = 0
    shadows: int = 16
    seed: int = 0

    def check(self) -> None:
        if self.clients < 1:
            raise ConfigError("--clients must be >= 1")
        if self.batch_size < 1 or self.local_epochs < 1:
            raise ConfigError("--batch-size and --local-epochs must be >= 1")


def run_membership(setup: MembershipSetup, out: Path, *,
                   noise: NoiseFn = distributed_discrete_gaussian,
                   tick: Tick | None = None) -> list[dict[str, Any]]:
    """Score every client's training and held-out records against each view; write a ROC PNG."""
    setup.check()
    torch.manual_seed(setup.seed)
    gen = torch.Generator().manual_seed(setup.seed)
    module = mlp_module(SIDE * SIDE, 10, hidden=setup.hidden, seed=setup.seed)
    data = federate("digits", 2 * setup.clients, seed=setup.seed)
    everyone = [tuple(torch.tensor(a, dtype=torch.float32 if a.dtype.kind == "f" else torch.long)
                      for a in (c.x_train, c.y_train, c.x_test, c.y_test))
                for _, c in sorted(data.clients.items())]
    clients, earlier = everyone[: setup.clients], everyone[setup.clients:]
    w0 = _pretrain(module, earlier, setup, gen)
    updates: list[Params] = []
    for xtr, ytr, _, _ in clients:
        steps = setup.local_epochs * -(-xtr.shape[0] // setup.batch_size)
        updates.append(local_update(module, w0, xtr, ytr, lr=setup.lr, local_steps=steps,
                                    batch_size=setup.batch_size, generator=gen))
        if tick is not None:
            tick(1)
    shadows = _shadow_updates(module, w0, earlier, setup, gen, tick)
    x_in = torch.cat([c[0] for c in clients])
    y_in = torch.cat([c[1] for c in clients])
    x_out = torch.cat([c[2] for c in clients])
    y_out = torch.cat([c[3] for c in clients])
    cal_in = mia.Calibration.fit(module, w0, shadows, x_in, y_in)
    cal_out = mia.Calibration.fit(module, w0, shadows, x_out, y_out)
    ind_in, ind_out = [], []
    start_in = start_out = 0
    for (xtr, ytr, xte, yte), d in zip(clients, updates, strict=True):
        ind_in.append(cal_in.slice(start_in, xtr.shape[0]).score(module, w0, d, xtr, ytr))
        ind_out.append(cal_out.slice(start_out, xte.shape[0]).score(module, w0, d, xte, yte))
        start_in += xtr.shape[0]
        start_out += xte.shape[0]
    views = {"individual": mia.evaluate(np.concatenate(ind_in), np.concatenate(ind_out))}
    norms = [float(torch.sqrt(sum((t.double() ** 2).sum() for t in u))) for u in updates]
    for view, dp in (("aggregate", None), ("aggregate_dp", setup.dp)):
        total = secure_sum(updates, clip=setup.quant_clip, dp=dp, noise=noise, seed=setup.seed)
        mean = [t / setup.clients for t in total]
        views[view] = mia.evaluate(cal_in.score(module, w0, mean, x_in, y_in),
                                   cal_out.score(module, w0, mean, x_out, y_out))
        if tick is not None:
            tick(1)
    png = roc_plot([(f"{v} (AUC {r.auc:.2f})", r.fpr, r.tpr) for v, r in views.items()],
                   out / "membership_roc.png",
                   title=f"membership inference, {setup.clients} clients, "
                   f"{setup.local_epochs} local epochs, DP z={setup.dp.multiplier:g}")
    rows = []
    for view, r in views.items():
        row: dict[str, Any] = {
            "attack": "membership", "view": view, "clients": setup.clients,
            "batch_size": setup.batch_size, "local_epochs": setup.local_epochs,
            "auc": r.auc, "tpr_at_1pct_fpr": r.tpr_at_1pct_fpr,
            "members": r.members, "non_members": r.non_members,
            "median_update_norm": float(np.median(norms)), "png_path": str(png),
        }
        if view == "aggregate_dp":
            row.update(dp_multiplier=setup.dp.multiplier, dp_clip_norm=setup.dp.clip_norm)
        rows.append(row)
    return rows


def _pretrain(module: torch.nn.Module, earlier: list[tuple[torch.Tensor, ...]],
              setup: MembershipSetup, gen: torch.Generator) -> Params:
    """The global model of the attacked round: trained before on other clients' data.

    The round's own records (members and non-members alike) were never seen by
    it, so what the round's update adds about them is the membership signal.
    """
    x = torch.cat([c[0] for c in earlier])
    y = torch.cat([c[1] for c in earlier])
    w = params_of(module)
    steps = setup.pretrain_epochs * -(-x.shape[0] // 32)
    d = local_update(module, w, x, y, lr=setup.lr, local_steps=steps, batch_size=32,
                     generator=gen)
    return [a + b for a, b in zip(w, d, strict=True)]


def _shadow_updates(module: torch.nn.Module, w0: Params, earlier: list[tuple[torch.Tensor, ...]],
                    setup: MembershipSetup, gen: torch.Generator, tick: Tick | None,
                    ) -> list[Params]:
    """LiRA's OUT models: local training from ``w0`` on data the attacker holds.

    Each shadow client trains like a real one (same epochs, batch, learning
    rate, a client-sized sample) on the earlier clients' records, which are
    disjoint from the attacked round's members and non-members.
    """
    x = torch.cat([c[0] for c in earlier])
    y = torch.cat([c[1] for c in earlier])
    size = max(1, int(np.median([c[0].shape[0] for c in earlier])))
    out = []
    for _ in range(setup.shadows):
        idx = torch.randperm(x.shape[0], generator=gen)[:size]
        steps = setup.local_epochs * -(-size // setup.batch_size)
        out.append(local_update(module, w0, x[idx], y[idx], lr=setup.lr, local_steps=steps,
                                batch_size=setup.batch_size, generator=gen))
        if tick is not None:
            tick(1)
    return out

"""``secagg attack``: privacy attacks on what a server holds, with and without secure aggregation.

``secagg attack inversion`` reconstructs training images from (a) one client's
update, (b) the secure sum of ``--clients`` updates, (c) that sum with
distributed-DP noise (``--dp`` multiplier); ``secagg attack membership`` runs a
calibrated loss attack (offline LiRA) on the same three views. Both write
``<out>/<attack>.json`` and PNG pictures; ``--json`` prints the same object.

Options and ``--json`` field names are a public interface (README, "secagg attack").
The library does not know this command: ``fl`` contributes it through the
``secagg.commands`` entry point ``attack = "fl.privacy.cli:register"``.
Exit status: 0 done, 2 refused (bad option or PyTorch missing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from secagg.errors import SecAggError

ATTACKS = ("inversion", "membership")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``attack`` to the ``secagg`` subcommands (the ``secagg.commands`` entry point)."""
    p = sub.add_parser(
        "attack",
        help="privacy attacks (gradient inversion, membership) on one update, the secure "
        "sum, and the DP sum",
        description="Attack one FedAvg round on the bundled digits as the server sees it: one "
        "client's update (no secure aggregation), the secure sum of --clients updates, and the "
        "sum with distributed-DP noise. Writes <out>/<attack>.json and PNG pictures.",
    )
    p.add_argument("attack", choices=ATTACKS, help="gradient inversion or membership inference")
    p.add_argument("--clients", type=int, default=20, help="clients in the round (default 20)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="examples per client batch (default: 1 for inversion, 8 for membership)")
    p.add_argument("--local-steps", type=int, default=1,
                   help="inversion: local SGD steps on the batch (default 1)")
    p.add_argument("--local-epochs", type=int, default=50,
                   help="membership: local epochs on each client's data (default 50)")
    p.add_argument("--dp", type=float, default=1.0, metavar="Z",
                   help="noise multiplier of the aggregate_dp view: noise std Z * clip norm on "
                   "the sum (default 1.0; 0 = clipping only)")
    p.add_argument("--dp-clip", type=float, default=1.0, metavar="C",
                   help="L2 norm each update is clipped to in the aggregate_dp view (default 1.0)")
    p.add_argument("--targets", type=int, default=4,
                   help="inversion: individual updates attacked (default 4)")
    p.add_argument("--iterations", type=int, default=600,
                   help="inversion: optimiser steps per restart (default 600)")
    p.add_argument("--restarts", type=int, default=4,
                   help="inversion: random restarts, best kept (default 4)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for data, model and attack (default 0)")
    p.add_argument("--out", default="results/attack",
                   help="output directory (default results/attack)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    try:
        summary = _attack(args)
    except SecAggError as exc:
        print(f"secagg attack: refused: {exc}", file=sys.stderr)
        return 2
    summary["wall_seconds"] = time.perf_counter() - start
    out = Path(args.out)
    json_path = out / f"{args.attack}.json"
    summary["json_path"] = str(json_path)
    json_path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        _print_table(summary)
    return 0


def _attack(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen attack (imports PyTorch only now, so ``secagg --help`` stays fast)."""
    from secagg.errors import ConfigError

    try:
        import torch
        from tqdm import tqdm

        from fl.privacy import experiments as ex
        from fl.privacy.inversion import InversionConfig
        from fl.privacy.updates import DPConfig
    except ImportError as exc:
        raise ConfigError(f"secagg attack needs PyTorch and tqdm (pip install -e '.[torch]'): "
                          f"{exc.name} is missing") from None
    from fl.cli import check_extras

    check_extras("secagg attack")  # scikit-learn (ROC), matplotlib (pictures): before any work
    torch.set_num_threads(1)  # small model: threads only spin (fl.torch_adapter)
    dp = DPConfig(multiplier=args.dp, clip_norm=args.dp_clip)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {"attack": args.attack, "clients": args.clients, "seed": args.seed,
                                "dp_multiplier": args.dp, "dp_clip_norm": args.dp_clip}
    if args.attack == "inversion":
        if args.iterations < 1 or args.restarts < 1:
            raise ConfigError("--iterations and --restarts must be >= 1")
        setup = ex.InversionSetup(
            clients=args.clients, batch_size=_or(args.batch_size, 1),
            local_steps=args.local_steps, targets=args.targets, dp=dp, seed=args.seed)
        setup.check()
        total = args.restarts * (min(args.targets, args.clients) + 2)
        with tqdm(total=total, desc="inversion restarts", unit="run", disable=args.json or None,
                  file=sys.stderr) as bar:
            views = ex.run_inversion(
                setup, out, config=InversionConfig(iterations=args.iterations,
                                                   restarts=args.restarts), tick=bar.update)
        settings.update(batch_size=setup.batch_size, local_steps=setup.local_steps)
    else:
        msetup = ex.MembershipSetup(clients=args.clients, batch_size=_or(args.batch_size, 8),
                                    local_epochs=args.local_epochs, dp=dp, seed=args.seed)
        msetup.check()
        total = args.clients + msetup.shadows + 2
        with tqdm(total=total, desc="membership: training", unit="update",
                  disable=args.json or None, file=sys.stderr) as bar:
            views = ex.run_membership(msetup, out, tick=bar.update)
        settings.update(batch_size=msetup.batch_size, local_epochs=msetup.local_epochs)
    return {**settings, "views": views,
            "png_paths": sorted({v["png_path"] for v in views})}


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _print_table(s: dict[str, Any]) -> None:
    print(f"secagg attack {s['attack']}: {s['clients']} clients, batch {s['batch_size']}, "
          f"DP z={s['dp_multiplier']:g} (clip {s['dp_clip_norm']:g})")
    if s["attack"] == "inversion":
        print(f"{'view':<14} {'reconstructed':>13} {'recovered':>9} {'fraction':>8} "
              f"{'median MSE':>10}")
        for v in s["views"]:
            print(f"{v['view']:<14} {v['reconstructions']:>13} {v['recovered']:>9} "
                  f"{v['recovered_fraction']:>8.2f} {v['median_best_mse']:>10.4f}")
    else:
        print(f"{'view':<14} {'AUC':>6} {'TPR@1%FPR':>10} {'members':>8} {'non-members':>11}")
        for v in s["views"]:
            print(f"{v['view']:<14} {v['auc']:>6.3f} {v['tpr_at_1pct_fpr']:>10.3f} "
                  f"{v['members']:>8} {v['non_members']:>11}")
    print(f"wrote {s['json_path']} and {', '.join(s['png_paths'])} "
          f"({s['wall_seconds']:.1f} s)")

"""``secagg train --dp ddg|skellam``: distributed-DP training next to central DP and no DP.

:mod:`fl.cli` adds the options (:func:`add_dp_arguments`) and hands a DP run to
:func:`run_dp`; the training is :func:`fl.dp_training.run_dp_training`. Output:
``<out>/train.json`` (the ``--json`` summary) and ``<out>/train.png`` (accuracy
per round, three curves).

The DP default job (spec §21; README, "secagg train"): 200 clients on ``digits``
split IID (the most an 8-example-per-client split of 1,797 digits allows, and a
Dirichlet split of that many small clients often has none), softmax regression,
20 rounds x 3 local epochs at learning rate 1, L2 clip 1, the rest as FedAvg's
defaults. Options left unset take the DP job's values with ``--dp`` and FedAvg's
without. 20 rounds rather than 10: ε grows like sqrt(rounds) at a fixed noise, so
the noise per round grows by sqrt(2), but the model ends further from its start
and with larger margins, and the two DP twins (independent noise each) disagree
on fewer test examples: their accuracy gap's spread fell from about 1.1-1.5 to
about 0.6-0.8 points in measurement (README, "secagg train").
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secagg.errors import SecAggError

if TYPE_CHECKING:
    from fl.dp_training import DPRoundRecord, DPTrainingHistory

#: options whose default depends on --dp: (without --dp, with --dp); alpha None = IID
JOB_DEFAULTS: dict[str, tuple[Any, Any]] = {
    "clients": (20, 200),
    "rounds": (10, 20),
    "local_epochs": (5, 3),
    "lr": (0.5, 1.0),
    "alpha": (0.5, None),
}


def add_dp_arguments(p: argparse.ArgumentParser) -> None:
    """The DP options of ``secagg train`` (``--bits`` is shared: the ring width B)."""
    p.add_argument("--dp", choices=["ddg", "skellam"], default=None,
                   help="distributed differential privacy: ddg (distributed discrete Gaussian) "
                   "or skellam; trains central DP and no DP next to it (default off)")
    p.add_argument("--epsilon", type=float, default=8.0,
                   help="with --dp: privacy budget over all rounds (default %(default)s)")
    p.add_argument("--delta", type=float, default=1e-5,
                   help="with --dp: delta (default %(default)s)")
    p.add_argument("--dp-clip", type=float, default=1.0,
                   help="with --dp: L2 norm each client's update is clipped to (default 1.0)")
    p.add_argument("--dp-expected-dropout", type=float, default=None, metavar="E",
                   help="with --dp: dropout rate the noise is sized for; a round with fewer "
                   "survivors is not released (default: the --dropout value)")
    p.add_argument("--dp-min-block", type=int, default=16, metavar="B",
                   help="with --dp: smallest block of the block-diagonal rotation, a power of "
                   "two (650 parameters -> 512+128+16 = 656 coordinates); 0 pads to one power "
                   "of two (1024) (default %(default)s)")
    p.add_argument("--dp-sampling", choices=["none", "fixed", "poisson"], default="none",
                   help="with --dp: cohort sampling the accountant may use: none (charged at "
                   "q = 1), fixed (--cohort of --clients without replacement, replace-one "
                   "neighbours) or poisson (each client joins with rate --cohort/--clients; "
                   "cohorts outside a range whose tails cost 10%% of delta are skipped); "
                   "amplification holds only against parties who do not see the cohort")


def resolve_defaults(args: argparse.Namespace) -> None:
    """Fill the options left unset with the DP job's values (``--dp``) or FedAvg's."""
    dp = getattr(args, "dp", None) is not None
    for name, (plain, private) in JOB_DEFAULTS.items():
        if getattr(args, name, None) is None:
            setattr(args, name, private if dp else plain)
    if args.alpha is None:  # the DP job: IID unless --alpha is given
        args.iid, args.alpha = True, JOB_DEFAULTS["alpha"][0]


def run_dp(args: argparse.Namespace) -> int:
    """``secagg train --dp``: exit 0 done, 2 refused (bad option or unsafe DP setting)."""
    start = time.perf_counter()
    from fl.cli import fedavg_config, writable_dir
    from fl.data import federate
    from fl.dp_training import DPOptions, run_dp_training
    from fl.models import make_model

    try:
        writable_dir(args.out)  # before any training: nothing is lost at the end
        config = fedavg_config(args)
        options = DPOptions(mechanism=args.dp, epsilon=args.epsilon, delta=args.delta,
                            bits=args.bits, clip=args.dp_clip,
                            expected_dropout=args.dp_expected_dropout,
                            sampling=args.dp_sampling, min_block=args.dp_min_block)
        data = federate(args.dataset, args.clients, iid=args.iid, alpha=args.alpha,
                        seed=args.seed)
        model = make_model(args.model, data.num_features, data.num_classes, seed=args.seed)
        on_round = None if args.json else _print_row
        history = run_dp_training(data, model, config, options,
                                  on_round=on_round,
                                  on_plan=None if args.json else functools.partial(
                                      _print_header, args))
    except (SecAggError, ValueError) as exc:
        print(f"secagg train: refused: {exc}", file=sys.stderr)
        return 2
    summary = _summary(args, history, start)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        _print_summary(summary)
    return 0


def _summary(args: argparse.Namespace, history: DPTrainingHistory,
             start: float) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "train.json", out / "train.png"
    split = "IID" if args.iid else f"Dirichlet alpha={args.alpha:g}"
    _plot(history, png_path, f"{args.dataset}, {args.clients} clients ({split}), {args.model}, "
          f"{args.dp} {args.bits} bits, epsilon {history.epsilon:.2f}, delta {args.delta:g}")
    summary: dict[str, Any] = {
        "dataset": args.dataset, "model": args.model, "clients": args.clients,
        "iid": args.iid, "alpha": args.alpha, "num_rounds": len(history.rounds),
        **history.to_dict(),
        "wall_seconds": time.perf_counter() - start,
        "json_path": str(json_path), "png_path": str(png_path),
    }
    json_path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def _print_header(args: argparse.Namespace, plan_text: str) -> None:
    split = "IID" if args.iid else f"non-IID, Dirichlet alpha={args.alpha:g}"
    print(f"secagg train --dp {args.dp}: {args.dataset}, {args.clients} clients ({split}), "
          f"model {args.model}, {args.rounds} rounds x {args.local_epochs} local epochs, "
          f"lr {args.lr:g}; {args.dropout:.0%} of each cohort drops")
    print(plan_text)
    print()
    print(f"{'round':>5}  {'included':>8}  {'dist. DP':>8}  {'central':>8}  {'no DP':>8}  "
          f"{'epsilon':>8}  note")


def _print_row(r: DPRoundRecord) -> None:
    note = ("NOT RELEASED, model kept: " + (r.abort_reason or "")) if r.aborted else ""
    print(f"{r.round:>5}  {len(r.included):>3}/{len(r.cohort):<4}  "
          f"{100 * r.accuracy_secure:>7.2f}%  {100 * r.accuracy_central_dp:>7.2f}%  "
          f"{100 * r.accuracy_plaintext:>7.2f}%  {r.epsilon:>8.3f}  {note}".rstrip(), flush=True)


def _print_summary(s: dict[str, Any]) -> None:
    print()
    print(f"final test accuracy: distributed DP {100 * s['final_accuracy_secure']:.2f}%, "
          f"central DP {100 * s['final_accuracy_central_dp']:.2f}%, "
          f"no DP {100 * s['final_accuracy_plaintext']:.2f}%")
    print(f"privacy: epsilon {s['epsilon']:.3f} spent (target {s['epsilon_target']:g}), "
          f"delta {s['delta']:g}, {s['mechanism']}, {s['bits']} bits")
    print(f"central DP twin: the same noise per round, epsilon {s['epsilon_central_dp']:.3f}")
    if s["bytes_up_per_element"] is not None:
        print(f"upload: {s['bytes_up_per_element']:.3f} bytes per element of the masked "
              f"vector ({s['bytes_up_per_parameter']:.3f} per model parameter, padding included)")
    print(f"time: {s['secagg_seconds']:.2f} s in secure aggregation, "
          f"{s['wall_seconds']:.2f} s in all")
    print(f"wrote {s['json_path']} and {s['png_path']}")


def _plot(history: DPTrainingHistory, path: Path, title: str) -> None:
    """Accuracy per round: distributed DP, central DP, no DP (matplotlib Agg canvas)."""
    from secagg.extras import require

    FigureCanvasAgg = require("matplotlib.backends.backend_agg", "train",
                              "the accuracy plot").FigureCanvasAgg
    Figure = require("matplotlib.figure", "train", "the accuracy plot").Figure

    rounds = [0] + [r.round for r in history.rounds]
    fig = Figure(figsize=(7.0, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, label, style in (("accuracy_secure", "distributed DP (secure aggregation)", "o-"),
                               ("accuracy_central_dp", "central DP", "s--"),
                               ("accuracy_plaintext", "no DP", "^:")):
        acc = [history.initial_accuracy] + [getattr(r, name) for r in history.rounds]
        ax.plot(rounds, [100 * a for a in acc], style, label=f"{label}: {100 * acc[-1]:.1f}%")
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)

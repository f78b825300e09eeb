"""``secagg train``: federated training on bundled data, averaged by secure aggregation.

Runs :func:`fl.fedavg.run_fedavg` next to its plaintext twin and reports per
round: the secure model's and the plaintext model's test accuracy, the clients
included and the seconds spent in secure aggregation. Writes
``<out>/train.json`` and ``<out>/train.png``.

Options and ``--json`` field names are a public interface (README, "secagg train").
The library does not know this command: ``fl`` contributes it through the
``secagg.commands`` entry point ``train = "fl.cli:register"`` (pyproject.toml),
which :mod:`secagg.cli.plugins` discovers.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secagg.cli.progress import StageBar
from secagg.errors import SecAggError
from secagg.graph import GraphKind

if TYPE_CHECKING:
    from fl.fedavg import FedAvgConfig, Progress, RoundRecord

#: ``--mu`` when ``--algorithm fedprox`` is given without it
FEDPROX_DEFAULT_MU = 0.01

def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` to the ``secagg`` subcommands (the ``secagg.commands`` entry point)."""
    # fl.fedavg, fl.data and fl.models import neither scikit-learn nor matplotlib,
    # so `secagg --help` stays fast; the defaults are FedAvgConfig's, in one place
    from fl.algorithms import ALGORITHMS
    from fl.data import DATASETS
    from fl.dp_cli import add_dp_arguments
    from fl.fedavg import DROP_AT_CHOICES, FedAvgConfig
    from fl.models import MODELS

    d = FedAvgConfig()
    p = sub.add_parser(
        "train",
        help="federated training (FedAvg) with secure aggregation vs plaintext",
        description="Train a model with Federated Averaging on scikit-learn's bundled data, "
        "averaging the updates by secure aggregation with dropouts, next to plaintext FedAvg "
        "on the same cohorts; write <out>/train.json and <out>/train.png.",
    )
    p.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="bundled data set (default digits)")
    p.add_argument("--clients", type=int, default=None,
                   help="number of clients (default 20; 200 with --dp)")
    p.add_argument("--cohort", type=int, default=None,
                   help="clients sampled per round (default: all)")
    p.add_argument("--min-cohort", type=int, default=d.min_cohort,
                   help="the minimum cohort: a run whose per-round cohort is smaller is "
                   "refused before training, since a sum over few clients reveals too much "
                   "about each (default %(default)s; at least 3)")
    p.add_argument("--rounds", type=int, default=None,
                   help=f"FL rounds (default {d.rounds}; 20 with --dp)")
    p.add_argument("--local-epochs", type=int, default=None,
                   help=f"local SGD epochs per round (default {d.local_epochs}; 3 with --dp)")
    p.add_argument("--lr", type=float, default=None,
                   help=f"SGD learning rate (default {d.lr:g}; 1 with --dp)")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="SGD minibatch size (default %(default)s)")
    p.add_argument("--alpha", type=float, default=None,
                   help="Dirichlet label-skew parameter, smaller = more skewed (default 0.5; "
                   "with --dp: IID unless given)")
    p.add_argument("--iid", action="store_true", help="IID split instead of Dirichlet")
    p.add_argument("--dropout", type=float, default=d.dropout,
                   help="fraction of each cohort that drops (default %(default)s)")
    p.add_argument("--drop-at", default=d.drop_at, choices=DROP_AT_CHOICES,
                   help="protocol round at which they drop; random = a random one per FL "
                   "round (default)")
    p.add_argument("--graph", choices=[g.value for g in GraphKind], default=d.graph,
                   help="complete (SecAgg) or harary (SecAgg+, default)")
    p.add_argument("--declared-dropout", type=float, default=d.declared_dropout,
                   help="dropout rate the SecAgg+ parameter finder provisions for "
                   "(default %(default)s)")
    p.add_argument("--model", choices=MODELS, default="logreg",
                   help="numpy softmax regression or one-hidden-layer MLP (default logreg)")
    p.add_argument("--algorithm", choices=ALGORITHMS, default=d.algorithm,
                   help="fedavg (default), fedprox (proximal term --mu), scaffold (control "
                   "variates, one secure session for both means), fedper (personal heads "
                   "kept local; needs --model mlp) or ditto (personal models regularised "
                   "towards the global one, --ditto-lambda)")
    p.add_argument("--mu", type=float, default=None,
                   help=f"FedProx proximal term (default {d.mu:g}; "
                   f"{FEDPROX_DEFAULT_MU:g} with --algorithm fedprox)")
    p.add_argument("--control-clip", type=float, default=d.control_clip,
                   help="SCAFFOLD: clip each control-variate delta coordinate to "
                   "[-C, C] (default %(default)s)")
    p.add_argument("--ditto-lambda", type=float, default=d.ditto_lambda,
                   help="Ditto: proximal weight of the personal models (default %(default)s)")
    p.add_argument("--clip", type=float, default=d.clip,
                   help="clip each update coordinate to [-clip, clip] (default %(default)s)")
    p.add_argument("--bits", type=int, default=d.bits,
                   help="quantization bits per coordinate (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="seed for data split, cohorts, dropouts and SGD (default %(default)s); the "
                   "protocol's keys always come from the OS")
    p.add_argument("--out", default="results", help="output directory (default results)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_dp_arguments(p)  # --dp ddg|skellam, --epsilon, --delta, --dp-clip (fl.dp_cli)
    p.set_defaults(func=run)


def fedavg_config(args: argparse.Namespace, **extra: Any) -> FedAvgConfig:
    """The training settings shared by ``secagg train`` and ``secagg train --dp``.

    ``extra`` adds the fields only one of the two jobs sets (the DP job leaves
    clipping and the algorithm to its own options). Refuses ``--clients`` < 1.
    """
    from fl.fedavg import FedAvgConfig

    if args.clients < 1:
        raise SecAggError("--clients must be >= 1")
    return FedAvgConfig(
        rounds=args.rounds, cohort_size=args.cohort, local_epochs=args.local_epochs,
        lr=args.lr, batch_size=args.batch_size, mu=args.mu, dropout=args.dropout,
        drop_at=args.drop_at, graph=args.graph, declared_dropout=args.declared_dropout,
        bits=args.bits, seed=args.seed, min_cohort=args.min_cohort, **extra,
    )


def check_extras(command: str = "secagg train") -> None:
    """Refuse (MissingExtraError, one line) before any work when the ``train`` extra is
    missing: scikit-learn for the data sets, matplotlib for the PNG written at the end."""
    from secagg.extras import require

    require("sklearn.datasets", "train", command)
    require("matplotlib.figure", "train", command)


def run(args: argparse.Namespace) -> int:
    from fl.dp_cli import resolve_defaults, run_dp

    try:
        check_extras()
    except SecAggError as exc:
        print(f"secagg train: refused: {exc}", file=sys.stderr)
        return 2
    resolve_defaults(args)  # --clients, --rounds, --lr, ...: FedAvg's or the DP job's
    if args.mu is None:
        args.mu = FEDPROX_DEFAULT_MU if args.algorithm == "fedprox" else 0.0
    if args.dp is not None:
        if args.algorithm != "fedavg":
            print(f"secagg train: refused: --dp runs FedAvg only, not --algorithm "
                  f"{args.algorithm}", file=sys.stderr)
            return 2
        return run_dp(args)
    start = time.perf_counter()
    # heavy imports (scikit-learn, matplotlib) only when training
    from fl.data import federate
    from fl.fedavg import check_run, run_fedavg
    from fl.models import make_model
    from fl.plot import plot_accuracy

    try:
        out = writable_dir(args.out)  # before any training: nothing is lost at the end
        config = fedavg_config(args, clip=args.clip, algorithm=args.algorithm,
                               control_clip=args.control_clip, ditto_lambda=args.ditto_lambda)
        data = federate(args.dataset, args.clients, iid=args.iid, alpha=args.alpha,
                        seed=args.seed)
        model = make_model(args.model, data.num_features, data.num_classes, seed=args.seed)
        check_run(data, model, config)  # every refusal before the header is printed
        bar = StageBar() if not args.json and sys.stderr.isatty() else None
        if not args.json:
            _print_header(args, data.num_train)
        history = run_fedavg(
            data, model, config, progress=_round_progress(bar, args.rounds) if bar else None,
            on_round=None if args.json else functools.partial(_print_row, bar=bar))
        if bar:
            bar.close()
    except SecAggError as exc:
        print(f"secagg train: refused: {exc}", file=sys.stderr)
        return 2

    json_path, png_path = out / "train.json", out / "train.png"
    split = "IID" if args.iid else f"Dirichlet alpha={args.alpha:g}"
    title = (f"{args.dataset}, {args.clients} clients ({split}), {args.model}, "
             f"{args.algorithm}, "
             f"{args.dropout:.0%} dropout, graph={args.graph}")
    plot_accuracy(history, png_path, title=title)
    summary: dict[str, Any] = {
        "dataset": args.dataset, "model": args.model, "clients": args.clients,
        "iid": args.iid, "alpha": args.alpha,
        "num_rounds": len(history.rounds),
        **history.to_dict(),
        "wall_seconds": time.perf_counter() - start,
        "json_path": str(json_path), "png_path": str(png_path),
    }
    json_path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        _print_summary(summary)
    return 0 if history.within_bound else 3


def _print_header(args: argparse.Namespace, num_train: int) -> None:
    split = "IID" if args.iid else f"non-IID, Dirichlet alpha={args.alpha:g}"
    print(f"secagg train: {args.dataset}, {args.clients} clients ({split}, {num_train} "
          f"training examples), model {args.model}, {args.rounds} rounds x "
          f"{args.local_epochs} local epochs, lr {args.lr:g}, algorithm {args.algorithm}"
          + (f", FedProx mu={args.mu:g}" if args.mu else ""))
    print(f"secure aggregation: graph {args.graph}, {args.dropout:.0%} of each cohort drops at "
          f"{args.drop_at} round(s); {args.bits}-bit quantization, clip {args.clip:g}")
    print()
    print(f"{'round':>5}  {'dropped at':<12} {'included':>8}  {'secure acc':>10}  "
          f"{'plain acc':>9}  {'secagg s':>8}  note")


def _print_row(r: RoundRecord, bar: StageBar | None) -> None:
    if bar:
        bar.close()
    plain = "-" if r.accuracy_plaintext is None else f"{100 * r.accuracy_plaintext:.2f}%"
    note = ("ABORTED, model kept: " + (r.abort_reason or "")) if r.aborted else ""
    included = f"{len(r.included)}/{len(r.cohort)}"
    print(f"{r.round:>5}  {r.drop_at:<12} {included:>8}  {100 * r.accuracy_secure:>9.2f}%  "
          f"{plain:>9}  {r.secagg_seconds:>8.3f}  {note}".rstrip(), flush=True)


def _print_summary(s: dict[str, Any]) -> None:
    plain = s["final_accuracy_plaintext"]
    gap = "" if plain is None else (
        f"  (difference {100 * (s['final_accuracy_secure'] - plain):+.2f} points)")
    print()
    print(f"final test accuracy: secure {100 * s['final_accuracy_secure']:.2f}%, plaintext "
          + ("-" if plain is None else f"{100 * plain:.2f}%") + gap)
    if s["personal_accuracy_mean"] is not None:
        print(f"per-client accuracy on their own test data: mean "
              f"{100 * s['personal_accuracy_mean']:.2f}%, worst 10% "
              f"{100 * s['personal_accuracy_worst10']:.2f}%")
    err = s["max_aggregation_error"]
    if err is not None:
        bound = s["rounds"][0]["error_bound"]
        print(f"secure mean vs plaintext mean of the same updates: max |error| {err:.2e} "
              f"(bound {bound:.2e}) " + ("OK" if s["within_bound"] else "EXCEEDED"))
    ctrl = s["max_control_aggregation_error"]
    if ctrl is not None:
        bound = s["rounds"][0]["control_error_bound"]
        print(f"control-variate deltas (same session, own range): max |error| {ctrl:.2e} "
              f"(bound {bound:.2e})")
    if s["aborted_rounds"]:
        print(f"aborted rounds (old model kept): {s['aborted_rounds']}")
    print(f"time: {s['secagg_seconds']:.2f} s in secure aggregation, "
          f"{s['wall_seconds']:.2f} s in all")
    print(f"wrote {s['json_path']} and {s['png_path']}")


_STAGES = {"train": "local training", "secagg": "secure aggregation",
           "plaintext": "plaintext baseline", "done": "done"}


def _round_progress(bar: StageBar, rounds: int) -> Progress:
    """fedavg's ``(fl_round, stage, done, total)`` callback, drawn on ``bar``."""

    def show(fl_round: int, stage: str, done: int, total: int) -> None:
        bar.update(f"round {fl_round}/{rounds} {_STAGES.get(stage, stage)}", done, total)

    return show


def writable_dir(path: str | Path) -> Path:
    """``path`` as a folder this process can write into (created if missing), or a
    one-line SecAggError: checked before training so a bad ``--out`` loses no work."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SecAggError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise SecAggError(f"--out {out}: the folder is not writable")
    return out

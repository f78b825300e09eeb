"""``secagg dp plan``: size distributed-DP noise, scale and bit width for a target (ε, δ).

Prints what :func:`secagg.dp.planning.plan` found (spec §21.8): the noise
multiplier, the per-client noise share, the expected error of the decoded mean
next to central DP's, the wrap-around bound and the upload per coordinate; or
refuses, in one line with exit status 2, a setting whose wrap-around or error is
unreasonable (or an invalid option).

Options and ``--json`` field names are a public interface (README, "secagg dp plan").
"""

from __future__ import annotations

import argparse
import sys

from secagg.cli.plugins import SubParsers
from secagg.dp.params import MECHANISMS
from secagg.errors import SecAggError

#: the trainer's ``--dp-min-block`` default (``fl.dp_training.DPOptions.min_block``), so
#: a plan predicts the bytes ``secagg train --dp`` sends (§21.11; a test holds them equal)
DEFAULT_MIN_BLOCK = 16


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "dp",
        help="distributed differential privacy: plan noise, scale and bit width",
        description="Distributed differential privacy on top of secure aggregation (spec §21).",
    )
    dp_sub = p.add_subparsers(dest="dp_command", metavar="SUBCOMMAND")
    dp_sub.required = True
    q = dp_sub.add_parser(
        "plan",
        help="noise multiplier, error, wrap-around and bytes for a target (epsilon, delta)",
        description="Find the smallest noise meeting epsilon over the rounds (each round "
        "charged at the survivor floor), the largest scale whose wrap-around bound holds, "
        "and the error of the mean against central DP; refuse unreasonable settings "
        "(spec §21.8).",
    )
    q.add_argument("--clients", type=int, required=True, help="clients per round n")
    q.add_argument("--dim", type=int, required=True, help="vector length (model parameters)")
    q.add_argument("--clip", type=float, required=True, help="L2 clipping norm c")
    q.add_argument("--epsilon", type=float, required=True, help="target epsilon over all rounds")
    q.add_argument("--delta", type=float, required=True, help="target delta")
    q.add_argument("--rounds", type=int, required=True, help="number of rounds T")
    q.add_argument("--bits", type=int, default=None,
                   help="ring width B (R = 2^B); default: the smallest in [8, 32] within 1.1x "
                   "central DP's error")
    q.add_argument("--mechanism", choices=MECHANISMS, default="ddg",
                   help="ddg (distributed discrete Gaussian, default) or skellam")
    q.add_argument("--survivor-floor", type=int, default=None, metavar="F",
                   help="fewest included clients the noise must cover (default: all n)")
    q.add_argument("--sampling-rate", type=float, default=1.0, metavar="Q",
                   help="cohort sampling rate (default 1: no amplification)")
    q.add_argument("--min-block", type=int, default=DEFAULT_MIN_BLOCK, metavar="B",
                   help="block-diagonal rotation with blocks of at least B, a power of two "
                   "(650 -> 512+128+16 = 656 coordinates); 0 pads to one power of two "
                   "(default %(default)s, as secagg train --dp-min-block)")
    q.add_argument("--sampling", choices=["poisson", "fixed"], default="poisson",
                   help="how cohorts are drawn: poisson (each client independently, add/remove "
                   "neighbours) or fixed (q*N of N without replacement, replace-one neighbours)")
    q.add_argument("--max-wrap", type=float, default=1e-4,
                   help="largest acceptable wrap-around probability per round (default 1e-4)")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.set_defaults(func=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    from secagg.dp.planning import format_plan, plan, plan_json

    try:
        result = plan(args.clients, args.dim, args.clip, args.epsilon, args.delta, args.rounds,
                      args.bits, args.mechanism, survivor_floor=args.survivor_floor,
                      sampling_rate=args.sampling_rate, sampling=args.sampling,
                      min_block=args.min_block,
                      max_wrap=args.max_wrap)
    except (SecAggError, ValueError) as exc:
        print(f"secagg dp plan: refused: {exc}", file=sys.stderr)
        return 2
    print(plan_json(result) if args.json else format_plan(result))
    return 0

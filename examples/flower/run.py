"""Run the example: 10 Flower nodes, FedAvg on digits, every round securely aggregated.

    python examples/flower/run.py            # in this process, no Ray (seconds)
    python examples/flower/run.py --ray      # on Flower's simulation engine (needs
                                             # pip install "flwr[simulation]>=1.42,<1.43")

``flwr run`` (simulation or deployment engine) is described in README.md here.

In-process, two nodes go silent every round, one before sending its masked
update (left out of that round's mean) and one before unmasking (still in it),
to show that a round survives dropouts. The table shows the global model's
test accuracy after each round.
"""

from __future__ import annotations

import argparse
import logging
import sys

from flwr.app import Message
from secagg_flower_example import client_app, server_app

from secagg.flower import RECORD_KEY, Stage, run_inprocess

#: partition id -> protocol stage at which that node goes silent, every round
DROPS = {3: Stage.MASKED_INPUT.value, 7: Stage.UNMASK.value}


def silent(node: int, partition: int, message: Message) -> bool:
    """The drop rule: node ``partition`` does not answer its scheduled stage."""
    if partition not in DROPS or not message.has_content():
        return False
    record = message.content.config_records.get(RECORD_KEY)
    return record is not None and record.get("stage") == DROPS[partition]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray", action="store_true", help="use Flower's simulation engine")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--dp", choices=["none", "skellam", "ddg"], default="none",
                        help="distributed DP (the noise is sized for one dropout per round)")
    parser.add_argument("--epsilon", type=float, default=8.0, help="DP epsilon over the run")
    parser.add_argument("--clip", type=float, default=1.0, help="DP clip (L2 norm of an update)")
    args = parser.parse_args(argv)
    if args.ray:  # Flower's own log shows each round's "fit progress" (test accuracy)
        from flwr.simulation import run_simulation

        # run_simulation gives the apps an empty run config: the defaults of the apps
        # (10 nodes, 5 rounds) apply, so --nodes/--rounds are not passed on here
        run_simulation(server_app=server_app.app, client_app=client_app.app,
                       num_supernodes=10)
        return 0
    logging.getLogger("flwr").setLevel(logging.WARNING)
    run_config: dict[str, bool | bytes | float | int | str] = {
        "num-server-rounds": args.rounds, "num-partitions": args.nodes}
    if args.dp != "none":  # one node drops before its masked input every round: e = 0.1
        run_config.update({"dp": args.dp, "dp-epsilon": args.epsilon, "dp-clip": args.clip,
                           "dp-expected-dropout": 1 / args.nodes})
    context, grid = run_inprocess(server_app.app, client_app.app, args.nodes,
                                  run_config=run_config, drop=silent)
    print("round  test accuracy")
    for rnd in range(args.rounds + 1):
        record = context.state.metric_records.get(f"round-{rnd}")
        if record is not None:
            print(f"{rnd:5d}  {record['accuracy']:.3f}")
    print(f"{len(grid.silenced)} messages left unanswered by dropping nodes")
    epsilon = context.state.metric_records.get("dp")
    if epsilon is not None:
        print(f"distributed DP ({args.dp}): epsilon {epsilon['epsilon']:.3f} spent, "
              f"delta {epsilon['delta']:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

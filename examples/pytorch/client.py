"""The example's client process: local training, then the update into the secure sum.

Each round it waits for the global model in the model store, trains on its own
data for a few epochs, and submits the change of its weights (weighted by its
number of examples) with :class:`~secagg.deploy.DeploymentClient` over mTLS; the
server only ever sees the sum. In verification mode (``--verify``, used by
``run.py``'s check) it also writes its plaintext update to the work directory,
which a real client would never do. Started by ``run.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import task

from secagg.deploy import ClientStoppedError, DeploymentClient


def wait_for(path: Path, client: DeploymentClient, timeout: float) -> bool:
    """Poll the model store until ``path`` exists (False if the client stopped first)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if client.stopped or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--certs", type=Path, required=True)
    p.add_argument("--server", required=True)
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verify", action="store_true")
    args = p.parse_args()

    model = task.model(args.seed)
    (x, y), _ = task.load_arrays(task.data_file(args.work, args.id))
    rng = np.random.default_rng([args.seed, args.id])
    client = DeploymentClient(task.params(args.clients), server=args.server, client_id=args.id,
                              certs_dir=args.certs, update_timeout=60.0)
    try:  # the first submit connects: the server's first round waits while we train
        for r in range(args.rounds):
            path = task.model_file(args.work, r)
            if not wait_for(path, client, timeout=300.0):
                break
            global_weights, _ = task.load_arrays(path)
            model.set_weights(global_weights)
            model.fit(x, y, epochs=args.epochs, lr=args.lr, batch_size=16, mu=0.0, rng=rng)
            update = [w - g for w, g in zip(model.get_weights(), global_weights, strict=True)]
            weight = int(y.shape[0])
            if args.verify:
                task.save_arrays(task.update_file(args.work, r, args.id), update,
                                 weight=np.asarray(weight))
            try:
                result = client.submit(update, weight, model=global_weights)
            except ClientStoppedError:
                break
            print(json.dumps({"event": "submitted", "client": args.id, "round": r,
                              "status": result.status}), flush=True)
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

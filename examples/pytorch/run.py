"""Federated PyTorch training over the network with secure aggregation (no Flower).

    python examples/pytorch/run.py                      # 10 clients, 3 rounds
    python examples/pytorch/run.py --kill 2 --json      # SIGKILL 2 clients mid-round

Starts one server process (``server.py``) and ``--clients`` client processes
(``client.py``) on 127.0.0.1 with a fresh development CA (mutual TLS). The clients
train a small MLP on their own part of scikit-learn's digits and send only masked
updates; the server learns the weighted mean of each round's updates
(:mod:`secagg.deploy`). ``--kill K`` SIGKILLs K clients once they have joined the
second round's session (the first round's when there is one); the round closes with
the survivors and later rounds run without them.

Verification mode (on unless ``--no-verify``): clients also write their plaintext
update to the temporary directory, and after the run this script checks that every
round's secure mean is within one quantization step of the plaintext weighted mean
of the included clients' clipped updates (``within_bound``). A real deployment
never writes plaintext updates anywhere.

``--json`` prints one JSON object: ``final_accuracy``, ``initial_accuracy``,
``rounds`` (per round: ``included``, ``dropped``, their ids, ``error``, ``bound``,
``within_bound``, ``accuracy``, ``aborted`` (and its ``reason``), ``seconds`` of the session),
``within_bound``, ``killed``, ``seconds``.
The exit status is 0 when every round finished and stayed within the bound.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import task  # noqa: E402  (the example's shared module, next to this file)

from fl.data import federate  # noqa: E402
from secagg.aggregator import weighted_mean  # noqa: E402
from secagg.transport import certs  # noqa: E402
from secagg.transport.local import Proc  # noqa: E402


def write_data(work: Path, clients: int, seed: int) -> None:
    """Split the digits once; each client process reads only its own file."""
    fed = federate("digits", clients, seed=seed)
    for u, part in fed.clients.items():
        task.save_arrays(task.data_file(work, u), [part.x_train, part.y_train])
    task.save_arrays(task.data_file(work, "test"), [fed.x_test, fed.y_test])


def verify_round(work: Path, r: int, included: list[int], bound: float) -> tuple[float, bool]:
    """Max distance of the secure mean to the plaintext mean of the included (clipped)."""
    mean, _ = task.load_arrays(task.mean_file(work, r))
    updates: dict[int, list[np.ndarray]] = {}
    weights: dict[int, int] = {}
    for u in included:
        updates[u], extra = task.load_arrays(task.update_file(work, r, u))
        weights[u] = int(extra["weight"])
    want = weighted_mean(updates, weights, included, clip=task.CLIP)
    error = max(float(np.max(np.abs(m.astype(np.float64) - w))) for m, w in zip(mean, want,
                                                                                  strict=True))
    return error, error <= bound


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    start = time.monotonic()
    n = args.clients
    write_data(work, n, args.seed)
    cert_dir = certs.init_dev_ca(work / "certs", range(1, n + 1)).directory
    logs = work / "logs"
    logs.mkdir()
    verify = ["--verify"] if args.verify else []
    common = ["--work", work, "--certs", cert_dir, "--clients", n, "--rounds", args.rounds,
              "--seed", args.seed, *verify]
    server = Proc([sys.executable, HERE / "server.py", *map(str, common),
                   "--min-cohort", str(max(3, min(10, n - args.kill))),
                   "--round-timeout", str(args.round_timeout)], "server", logs)
    clients: dict[int, Proc] = {}
    killed: list[int] = []
    try:
        port = server.wait_event(lambda e: e.get("event") == "listening", 60)["port"]
        for u in range(1, n + 1):
            clients[u] = Proc([sys.executable, HERE / "client.py", *map(str, common),
                               "--server", f"127.0.0.1:{port}", "--id", str(u)],
                              f"client-{u}", logs)
        if args.kill:
            kill_round = 1 if args.rounds > 1 else 0
            server.wait_event(lambda e: e.get("event") == "session-open"
                              and e.get("round_index") == kill_round, args.timeout)
            rng = np.random.default_rng(args.seed)
            killed = sorted(int(u) for u in rng.choice(np.arange(1, n + 1), args.kill,
                                                       replace=False))
            for u in killed:  # joined (in the session's cohort), then gone without a word
                clients[u].popen.send_signal(signal.SIGKILL)
        finished = server.wait_event(lambda e: e.get("event") == "finished", args.timeout)
        server.wait(30)
        for u, proc in clients.items():
            if u not in killed:
                proc.wait(30)
    finally:
        for proc in (server, *clients.values()):
            proc.kill()
    rounds = []
    sessions = [e for e in server.events if e.get("event") == "session-end"]
    results = [e for e in server.events if e.get("event") == "round-result"]
    for e, session in zip(results, sessions, strict=True):  # one session per round
        row: dict[str, Any] = {"round": e["round"], "aborted": e["aborted"],
                               "accuracy": e["accuracy"], "seconds": session["wall_seconds"]}
        if e["aborted"]:
            row["reason"] = e["reason"]
        else:
            row.update(included=len(e["included_ids"]), dropped=len(e["dropped_ids"]),
                       included_ids=e["included_ids"], dropped_ids=e["dropped_ids"],
                       bound=e["error_bound"])
            if args.verify:
                row["error"], row["within_bound"] = verify_round(
                    work, e["round"], e["included_ids"], e["error_bound"])
        rounds.append(row)
    checked = [r.get("within_bound") for r in rounds]
    return {
        "clients": n, "rounds": rounds, "killed": killed,
        "initial_accuracy": finished["initial_accuracy"],
        "final_accuracy": finished["final_accuracy"],
        "within_bound": (all(c is True for c in checked) and len(rounds) == args.rounds)
        if args.verify else None,
        "seconds": time.monotonic() - start,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--kill", type=int, default=0, help="clients to SIGKILL during a round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--round-timeout", type=float, default=30.0,
                   help="seconds per protocol round, local training included (30)")
    p.add_argument("--timeout", type=float, default=300.0, help="bound on the whole run")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="no plaintext updates on disk, no within_bound check")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.clients < 3 or args.rounds < 1 or not 0 <= args.kill <= args.clients - 3:
        p.error("need --clients >= 3, --rounds >= 1 and 0 <= --kill <= clients - 3")
    with tempfile.TemporaryDirectory(prefix="secagg-pytorch-") as tmp:
        result = run(args, Path(tmp))
    ok = result["within_bound"] is not False and all(not r["aborted"] for r in result["rounds"])
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for r in result["rounds"]:
            if r["aborted"]:
                print(f"round {r['round']}: ABORTED")
                continue
            check = "" if "error" not in r else (
                f", error {r['error']:.2e} (bound {r['bound']:.2e})")
            print(f"round {r['round']}: {r['included']} included, {r['dropped']} dropped, "
                  f"accuracy {100 * r['accuracy']:.1f}%{check}")
        print(f"final accuracy {100 * result['final_accuracy']:.1f}% "
              f"(from {100 * result['initial_accuracy']:.1f}%), killed {result['killed']}, "
              f"{result['seconds']:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

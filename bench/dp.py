"""Distributed-DP suite (spec §21): error of the mean vs bits, accuracy vs ε, wrap-around.

Run ``python -m bench.dp`` (``secagg bench dp``; full size, 20-40 minutes on 2
busy cores) or ``--quick`` (seconds, into a temporary folder). Writes ``dp.json``,
``dp.csv`` and, unless ``--no-plots``, ``dp_mse.png``, ``dp_accuracy.png`` and
``dp_wrap.png``; a full run into ``bench/results`` also writes its own section of
``bench/README.md``.

**MSE vs bits** (the DDG paper's plot): for each mechanism and ring width B, the
planner's parameters at (ε, δ) over ``--rounds`` (no width refused on error, so the
curve shows where few bits cost accuracy), n clients' random vectors of L2 norm
``clip`` encoded with :func:`secagg.dp.pipeline.encode_client`, summed mod 2^B (the
sum secure aggregation outputs, exactly; the protocol's exactness is tested
elsewhere) and decoded with :func:`decode_mean`; the measured squared error of the
mean against the planner's prediction, and central DP's (the continuous Gaussian
added once to the plaintext mean at the same ε, δ) beside it.

**Accuracy vs ε**: ``secagg train --dp`` 's default job (200 IID clients on digits,
softmax regression, 10 rounds, 20% dropout, 16 bits) at several ε for both mechanisms:
the distributed-DP model, its central-DP twin (the same noise per round, added once to
the plaintext mean of the same clipped updates) and no DP.

**Wrap-around**: at one width, γ scaled past the planner's choice, the fraction of
sessions in which some coordinate of the integer sum (rounded vectors plus noise,
before the wrap) leaves [−2^{B−1}, 2^{B−1}), against the planner's union bound. The
clients' vectors are all the same (the bound's worst case, signals aligned).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    RESULTS_DIR,
    add_common_args,
    command_line,
    machine,
    output_dir,
    write_csv,
    write_json,
)
from bench.report import STANDALONE_MARK, write_standalone_section
from secagg.dp.errors import DPConfigError
from secagg.dp.params import MECHANISMS, DPParams
from secagg.dp.pipeline import decode_mean, encode_client, noise_share
from secagg.dp.planning import plan, wrap_probability
from secagg.dp.randomness import default_source
from secagg.dp.ring import add_mod
from secagg.dp.rotation import rotate_blocks, rotation_signs
from secagg.dp.rounding import clip_l2, conditional_round

SID = bytes(32)  # a fixed public session id: the rotation signs are public anyway
TITLE = "Distributed DP: error vs bits, accuracy vs epsilon, wrap-around (issue 13)"
#: sizes: MSE part (clients, dim, sessions per point), accuracy part (the DP training
#: job's clients and rounds, the ε grid), wrap part (clients, dim, bits, sessions)
FULL: dict[str, Any] = {"mse_clients": 100, "mse_dim": 1000, "trials": 20, "clients": 200,
                        "rounds": 10, "epsilons": [1.0, 2.0, 4.0, 8.0],
                        "wrap_clients": 30, "wrap_dim": 500, "wrap_bits": 12,
                        "sessions": 200}
QUICK: dict[str, Any] = {"mse_clients": 20, "mse_dim": 60, "trials": 5, "clients": 30,
                         "rounds": 1, "epsilons": [8.0], "wrap_clients": 20, "wrap_dim": 60,
                         "wrap_bits": 12, "sessions": 40}


def _unit_vectors(n: int, dim: int, clip: float, rng: np.random.Generator) -> np.ndarray:
    x = rng.normal(size=(n, dim))
    out: np.ndarray = clip * x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def mse_row(params: DPParams, vectors: np.ndarray, trials: int) -> float:
    """Measured mean squared error ||decoded mean − true mean||² over ``trials`` sessions."""
    true = vectors.mean(axis=0)
    errs = []
    for trial in range(trials):
        total = np.zeros(params.padded_dim, dtype=np.uint64)
        for v in vectors:
            total = add_mod(total, encode_client(v, params, SID, trial), params.bits)
        mean = decode_mean(total, params, SID, len(vectors), trial)
        errs.append(float(np.sum((mean - true) ** 2)))
    return float(np.mean(errs))


def mse_vs_bits(n: int, dim: int, clip: float, eps: float, delta: float, rounds: int,
                bits: Sequence[int], trials: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    vectors = _unit_vectors(n, dim, clip, rng)
    rows: list[dict[str, Any]] = []
    for mech in MECHANISMS:
        for b in bits:
            try:
                p = plan(n, dim, clip, eps, delta, rounds, b, mech, max_error_ratio=1e12)
            except DPConfigError as exc:
                rows.append({"part": "mse", "mechanism": mech, "bits": b, "refused": str(exc)})
                continue
            central_sd = math.sqrt(p.mse_central / dim)  # per coordinate
            central = float(np.mean([np.sum(rng.normal(0.0, central_sd, dim) ** 2)
                                     for _ in range(trials)]))
            rows.append({"part": "mse", "mechanism": mech, "bits": b, "refused": None,
                         "mse": mse_row(p.params, vectors, trials), "mse_predicted": p.mse,
                         "mse_central": central, "mse_central_predicted": p.mse_central,
                         "epsilon": p.epsilon, "gamma": p.params.gamma})
    return rows


def _wrapped(params: DPParams, vector: np.ndarray, n: int, round_index: int) -> bool:
    """Does the integer sum of n encodings of ``vector`` leave the centred ring?"""
    src = default_source()
    signs = rotation_signs(SID, round_index, params.padded_dim)
    scaled = rotate_blocks(clip_l2(vector, params.clip), signs, params.blocks) * params.gamma
    total = np.zeros(params.padded_dim, dtype=np.int64)
    for _ in range(n):
        total += conditional_round(scaled, params.delta2, src) + noise_share(params, src)
    half = 2 ** (params.bits - 1)
    return bool(np.any(total >= half) or np.any(total < -half))


def wrap_vs_bound(n: int, dim: int, clip: float, eps: float, delta: float, rounds: int,
                  bits: int, scales: Sequence[float], sessions: int,
                  rng: np.random.Generator) -> list[dict[str, Any]]:
    vector = _unit_vectors(1, dim, clip, rng)[0]
    rows: list[dict[str, Any]] = []
    for mech in MECHANISMS:
        base = plan(n, dim, clip, eps, delta, rounds, bits, mech, max_error_ratio=1e12).params
        for s in scales:
            p = dataclasses.replace(base, gamma=base.gamma * s)
            hits = sum(_wrapped(p, vector, n, i) for i in range(sessions))
            rows.append({"part": "wrap", "mechanism": mech, "bits": bits, "gamma_scale": s,
                         "sessions": sessions, "wrap_frequency": hits / sessions,
                         "wrap_bound": wrap_probability(p)})
    return rows


def accuracy_vs_epsilon(epsilons: Sequence[float], clients: int, rounds: int,
                        seed: int) -> list[dict[str, Any]]:
    """The DP training job at each ε, both mechanisms (one run each: fresh OS noise)."""
    from fl.data import federate
    from fl.dp_training import DPOptions, run_dp_training
    from fl.fedavg import FedAvgConfig
    from fl.models import make_model

    data = federate("digits", clients, iid=True, seed=seed)
    config = FedAvgConfig(rounds=rounds, local_epochs=3, seed=seed)
    rows: list[dict[str, Any]] = []
    for mech in MECHANISMS:
        for eps in epsilons:
            model = make_model("logreg", data.num_features, data.num_classes, seed=seed)
            t0 = time.perf_counter()
            h = run_dp_training(data, model, config, DPOptions(mechanism=mech, epsilon=eps))
            d = h.to_dict()
            rows.append({"part": "accuracy", "mechanism": mech, "epsilon_target": eps,
                         "epsilon": d["epsilon"], "epsilon_central_dp": d["epsilon_central_dp"],
                         "accuracy_secure": d["final_accuracy_secure"],
                         "accuracy_central_dp": d["final_accuracy_central_dp"],
                         "accuracy_plaintext": d["final_accuracy_plaintext"],
                         "bytes_up_per_element": d["bytes_up_per_element"],
                         "seconds": time.perf_counter() - t0})
    return rows


def _figure() -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.0), dpi=120)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Any, ax: Any, path: Path) -> Path:
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path


def _plot(rows: list[dict[str, Any]], path: Path) -> Path:
    fig, ax = _figure()
    ok = [r for r in rows if r["part"] == "mse" and r["refused"] is None]
    for mech, style in zip(MECHANISMS, ("o-", "s-"), strict=True):
        pts = [r for r in ok if r["mechanism"] == mech]
        ax.plot([r["bits"] for r in pts], [r["mse"] for r in pts], style, label=mech)
    if ok:
        central = float(np.mean([r["mse_central"] for r in ok]))
        ax.axhline(central, color="k", ls="--", label="central DP")
    ax.set_yscale("log")
    ax.set_xlabel("bits per coordinate B")
    ax.set_ylabel("MSE of the mean")
    return _save(fig, ax, path)


def _plot_accuracy(rows: list[dict[str, Any]], path: Path) -> Path:
    fig, ax = _figure()
    acc = [r for r in rows if r["part"] == "accuracy"]
    for mech, style in zip(MECHANISMS, ("o-", "s-"), strict=True):
        pts = [r for r in acc if r["mechanism"] == mech]
        ax.plot([r["epsilon"] for r in pts], [100 * r["accuracy_secure"] for r in pts], style,
                label=f"{mech} (distributed)")
        ax.plot([r["epsilon_central_dp"] for r in pts],
                [100 * r["accuracy_central_dp"] for r in pts], style[0] + ":",
                label=f"central twin of {mech}")
    if acc:
        ax.axhline(100 * float(np.mean([r["accuracy_plaintext"] for r in acc])), color="k",
                   ls="--", label="no DP")
    ax.set_xscale("log")
    ax.set_xlabel("epsilon spent (delta 1e-5, 10 rounds)")
    ax.set_ylabel("test accuracy (%)")
    return _save(fig, ax, path)


def _plot_wrap(rows: list[dict[str, Any]], path: Path) -> Path:
    fig, ax = _figure()
    wrap = [r for r in rows if r["part"] == "wrap"]
    for mech, style in zip(MECHANISMS, ("o-", "s-"), strict=True):
        pts = [r for r in wrap if r["mechanism"] == mech]
        ax.plot([r["gamma_scale"] for r in pts], [r["wrap_frequency"] for r in pts], style,
                label=f"{mech}: measured")
        ax.plot([r["gamma_scale"] for r in pts], [r["wrap_bound"] for r in pts],
                style[0] + "--", label=f"{mech}: bound")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("gamma / planner's gamma")
    ax.set_ylabel("sessions with a wrap-around")
    return _save(fig, ax, path)


def markdown(payload: dict[str, Any]) -> str:
    """The README section: what was run, then one table per part."""
    rows = payload["rows"]
    size = payload["size"]
    lines = [
        f"`{payload['command']}` — {payload['finished']} ({payload['wall_seconds']:.0f} s; "
        f"load average {payload['load']}); {STANDALONE_MARK} (`bench/dp.py`).", "",
        f"**MSE of the mean vs bits** (the DDG paper's plot): n = {size['mse_clients']} "
        f"random vectors of L2 norm 1, dim {size['mse_dim']}, the planner's parameters at "
        f"ε = {payload['epsilon']:g}, δ = {payload['delta']:g} over 10 rounds, every client "
        f"present, {size['trials']} sessions per point. Central DP: the continuous Gaussian "
        "once on the plaintext mean at the same ε, δ.", "",
        "![MSE vs bits](results/dp_mse.png)", "",
        "| mechanism | bits | MSE measured | MSE predicted | central DP | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["part"] != "mse":
            continue
        if r["refused"]:
            lines.append(f"| {r['mechanism']} | {r['bits']} | refused: {r['refused']} | | | |")
            continue
        lines.append(f"| {r['mechanism']} | {r['bits']} | {r['mse']:.4g} | "
                     f"{r['mse_predicted']:.4g} | {r['mse_central']:.4g} | "
                     f"{r['mse'] / r['mse_central']:.3f} |")
    lines += ["", f"**Accuracy vs ε**: `secagg train --dp` 's default job ({size['clients']} "
              "clients, 10 rounds, 20% dropout, 16 bits), one run per point (fresh OS noise, "
              "a 400-example test set: a single point moves by about a point at ε = 8 and "
              "by up to 10 points at ε = 1, where three more runs of skellam gave gaps of "
              "+5.0, -11.25 and +10.25 points). The central "
              "twin carries the noise each distributed round summed, so its ε is at most the "
              "distributed one.", "", "![accuracy vs epsilon](results/dp_accuracy.png)", "",
              "| mechanism | ε target | ε spent | ε central twin | distributed | central | "
              "no DP | gap (points) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["part"] == "accuracy":
            gap = 100 * (r["accuracy_secure"] - r["accuracy_central_dp"])
            lines.append(f"| {r['mechanism']} | {r['epsilon_target']:g} | {r['epsilon']:.3f} | "
                         f"{r['epsilon_central_dp']:.3f} | {100 * r['accuracy_secure']:.2f}% | "
                         f"{100 * r['accuracy_central_dp']:.2f}% | "
                         f"{100 * r['accuracy_plaintext']:.2f}% | {gap:+.2f} |")
    lines += ["", f"**Wrap-around**: {size['wrap_clients']} clients, dim {size['wrap_dim']}, "
              f"{size['wrap_bits']} bits, all sending the same vector (the bound's worst case), γ "
              "scaled past the planner's choice; the fraction of sessions in which some "
              "coordinate of the integer sum left the centred ring, against the union bound "
              "the planner uses (it must never be below the measurement).", "",
              "![wrap-around](results/dp_wrap.png)", "",
              "| mechanism | γ scale | sessions | measured | bound |", "|---|---|---|---|---|"]
    for r in rows:
        if r["part"] == "wrap":
            lines.append(f"| {r['mechanism']} | {r['gamma_scale']:g} | {r['sessions']} | "
                         f"{r['wrap_frequency']:.4g} | {min(1.0, r['wrap_bound']):.4g} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="secagg bench dp", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    args = parser.parse_args(argv)
    out = output_dir(args, "dp")  # before the work: a bad --out is refused at once
    rng = np.random.default_rng(args.seed)
    size = QUICK if args.quick else FULL
    start = time.perf_counter()
    rows = mse_vs_bits(size["mse_clients"], size["mse_dim"], 1.0, args.epsilon, args.delta, 10,
                       range(10, 21, 2), size["trials"], rng)
    rows += accuracy_vs_epsilon(size["epsilons"], size["clients"], size["rounds"], args.seed)
    rows += wrap_vs_bound(size["wrap_clients"], size["wrap_dim"], 1.0, args.epsilon,
                          args.delta, 10, size["wrap_bits"], (1.0, 1.5, 2.0, 2.5),
                          size["sessions"], rng)
    for r in rows:
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in r.items()))
    payload = {"suite": "dp", "quick": bool(args.quick), "machine": machine(),
               "command": command_line("dp", argv), "size": size, "epsilon": args.epsilon,
               "delta": args.delta, "rows": rows, "wall_seconds": time.perf_counter() - start,
               "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "load": ", ".join(f"{x:.1f}" for x in os.getloadavg())}
    files = [write_json(out / "dp.json", payload),
             write_csv(out / "dp.csv", rows)]
    if not args.no_plots:
        files += [_plot(rows, out / "dp_mse.png"), _plot_accuracy(rows, out / "dp_accuracy.png"),
                  _plot_wrap(rows, out / "dp_wrap.png")]
    if not args.quick and out.resolve() == RESULTS_DIR.resolve():
        write_standalone_section(RESULTS_DIR.parent / "README.md", TITLE, markdown(payload))
        files.append(RESULTS_DIR.parent / "README.md")
    print(f"wrote {', '.join(str(f) for f in files)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

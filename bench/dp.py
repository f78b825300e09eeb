"""Distributed-DP suite (spec §21): error of the mean vs bits, wrap-around vs its bound.

Run ``python -m bench.dp`` (moderate size) or ``--quick`` (seconds, into a temporary
folder). Writes ``dp.json``, ``dp.csv`` and ``dp_mse.png`` (unless ``--no-plots``).

**MSE vs bits** (the DDG paper's plot): for each mechanism and ring width B, the
planner's parameters at (ε, δ) over ``--rounds`` (no width refused on error, so the
curve shows where few bits cost accuracy), n clients' random vectors of L2 norm
``clip`` encoded with :func:`secagg.dp.pipeline.encode_client`, summed mod 2^B (the
sum secure aggregation outputs, exactly; the protocol's exactness is tested
elsewhere) and decoded with :func:`decode_mean`; the measured squared error of the
mean against the planner's prediction, and central DP's (the continuous Gaussian
added once to the plaintext mean at the same ε, δ) beside it.

**Wrap-around**: at one width, γ scaled past the planner's choice, the fraction of
sessions in which some coordinate of the integer sum (rounded vectors plus noise,
before the wrap) leaves [−2^{B−1}, 2^{B−1}), against the planner's union bound. The
clients' vectors are all the same (the bound's worst case, signals aligned).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import add_common_args, command_line, machine, output_dir, write_csv, write_json
from secagg.dp.errors import DPConfigError
from secagg.dp.params import MECHANISMS, DPParams
from secagg.dp.pipeline import decode_mean, encode_client, noise_share
from secagg.dp.planning import plan, wrap_probability
from secagg.dp.randomness import default_source
from secagg.dp.ring import add_mod
from secagg.dp.rotation import rotate, rotation_signs
from secagg.dp.rounding import clip_l2, conditional_round

SID = bytes(32)  # a fixed public session id: the rotation signs are public anyway


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
    scaled = rotate(clip_l2(vector, params.clip), signs) * params.gamma
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


def _plot(rows: list[dict[str, Any]], path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
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
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="secagg bench dp", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    args = parser.parse_args(argv)
    out = output_dir(args, "dp")  # before the work: a bad --out is refused at once
    rng = np.random.default_rng(args.seed)
    n, dim, trials, sessions = (20, 60, 5, 40) if args.quick else (100, 500, 20, 400)
    start = time.perf_counter()
    rows = mse_vs_bits(n, dim, 1.0, args.epsilon, args.delta, 10, range(10, 21, 2), trials, rng)
    rows += wrap_vs_bound(n, dim, 1.0, args.epsilon, args.delta, 10, 12, (1.0, 1.5, 2.0, 2.5),
                          sessions, rng)
    for r in rows:
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in r.items()))
    payload = {"suite": "dp", "quick": bool(args.quick), "machine": machine(),
               "command": command_line("dp", argv), "clients": n, "dim": dim,
               "rows": rows, "wall_seconds": time.perf_counter() - start}
    files = [write_json(out / "dp.json", payload),
             write_csv(out / "dp.csv", rows)]
    if not args.no_plots:
        files.append(_plot(rows, out / "dp_mse.png"))
    print(f"wrote {', '.join(str(f) for f in files)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

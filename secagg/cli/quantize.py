"""``secagg quantize`` and ``secagg dequantize``: float updates in and out of Z_R (spec §10).

The gRPC commands move integer vectors: ``secagg client --input`` takes a vector
already in Z_R and ``secagg server --out`` writes the sum mod R. These two commands
are the steps on either side, with :mod:`secagg.quantize`:

* ``secagg quantize UPDATE.npy --out update.npy`` (each client): clip, stochastically
  round and weight a float update (:func:`~secagg.quantize.encode`) into the dtype of
  the server's modulus;
* ``secagg dequantize sums.npz --out mean.npy`` (whoever holds the sum): the server's
  sum of the included clients back into their (weighted) mean
  (:func:`~secagg.quantize.decode_sum`).

Both sides must use the same quantization parameters (``--clients``, ``--modulus-bits``,
``--clip``, ``--bits``, ``--max-weight``): they are the session's public choices, like
the server's own options. A modulus too small for the worst-case sum of ``--clients``
contributions is refused before anything is written (§10.2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from secagg.cli.args import writable_file
from secagg.cli.plugins import SubParsers
from secagg.errors import ConfigError, SecAggError
from secagg.quantize import QuantizationConfig, decode_sum, encode, error_bound

__all__ = ["register"]


def register(sub: SubParsers) -> None:
    q = sub.add_parser(
        "quantize", help="turn a float update (.npy) into a secagg client --input vector in Z_R",
        description="Clip a float update to [-clip, clip], round it stochastically to "
        "2**bits levels and weight it, into the dtype of the server's modulus: the file "
        "'secagg client --input' takes. Prints the --dim the server needs.",
    )
    q.add_argument("update", type=Path, help="the float update, a .npy array of any shape")
    q.add_argument("--out", type=Path, required=True, help="the quantized vector, FILE.npy")
    q.add_argument("--weight", type=int, default=1,
                   help="this client's weight, e.g. its example count (1..--max-weight; 1)")
    q.add_argument("--seed", type=int, default=None,
                   help="seed of the stochastic rounding (default: fresh randomness)")
    _session_arguments(q)
    q.set_defaults(func=run_quantize)

    d = sub.add_parser(
        "dequantize", help="turn a server's sums.npz back into the (weighted) mean update",
        description="Decode the sum a 'secagg server --out' wrote (the included clients' "
        "quantized updates, summed mod R) into their weighted mean, as float64.",
    )
    d.add_argument("sums", type=Path, help="the server's --out file (sums.npz)")
    d.add_argument("--out", type=Path, required=True, help="the mean update, FILE.npy")
    d.add_argument("--session", type=int, default=None,
                   help="which session of the file (its sequence number; default: the last)")
    d.add_argument("--shape", default=None,
                   help="reshape the mean, e.g. 64,10 (default: the flat vector)")
    _session_arguments(d)
    d.set_defaults(func=run_dequantize)


def _session_arguments(p: argparse.ArgumentParser) -> None:
    """The session's quantization parameters: the same values on both sides."""
    p.add_argument("--clients", type=int, required=True,
                   help="cohort size n of the session (the server's --clients)")
    p.add_argument("--modulus-bits", type=int, default=32,
                   help="R = 2**bits, the server's --modulus-bits (default 32)")
    p.add_argument("--clip", type=float, default=1.0,
                   help="clip every coordinate to [-clip, clip] (default 1.0)")
    p.add_argument("--bits", type=int, default=16,
                   help="quantization levels 2**bits (default 16)")
    p.add_argument("--max-weight", type=int, default=1,
                   help="largest weight a client may declare; above 1 the vector carries "
                   "its weight in one extra coordinate (default 1: plain mean)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _config(args: argparse.Namespace) -> QuantizationConfig:
    return QuantizationConfig(clip=args.clip, bits=args.bits, max_clients=args.clients,
                              max_weight=args.max_weight, modulus_bits=args.modulus_bits)


def _load_npy(path: Path, option: str) -> np.ndarray:
    """A plain .npy array (never pickled objects), or a one-line ConfigError."""
    try:
        value = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError(f"{option} {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{option} {path}: not a readable .npy array ({exc})") from None
    if not isinstance(value, np.ndarray):
        raise ConfigError(f"{option} {path}: an .npz archive, not one .npy array")
    return value


def run_quantize(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
        writable_file(args.out, "--out")
        update = _load_npy(args.update, "UPDATE")
        if update.dtype.kind not in "iuf" or update.size == 0:
            raise ConfigError(f"UPDATE {args.update}: need a non-empty numeric array, got "
                              f"{update.dtype} of shape {update.shape}")
        rng = np.random.default_rng(args.seed) if args.seed is not None else None
        vector = encode(update.reshape(-1), config, weight=args.weight, rng=rng)
    except SecAggError as exc:
        print(f"secagg quantize: refused: {exc}", file=sys.stderr)
        return 2
    np.save(args.out, vector, allow_pickle=False)
    clipped = float(np.mean(np.abs(update.astype(np.float64)) > config.clip))
    info = {"out": str(args.out), "dim": int(vector.size), "dtype": str(vector.dtype),
            "modulus_bits": config.modulus_bits, "shape": list(update.shape),
            "weight": args.weight, "clipped_fraction": clipped,
            "error_bound": error_bound(config)}
    _report(args.json, info, f"{args.out}: {vector.size} elements in Z_2^{config.modulus_bits} "
            f"({vector.dtype}), {clipped:.1%} of the update clipped; the server needs "
            f"--dim {vector.size} --modulus-bits {config.modulus_bits}")
    return 0


def _session_sum(path: Path, session: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The sum and included ids of one session of a ``secagg server --out`` file."""
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError(f"SUMS {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"SUMS {path}: not a readable .npz archive ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ConfigError(f"SUMS {path}: a single array, not the server's .npz archive")
    with archive:
        names = ("sum", "included") if session is None else (f"sum_{session}",
                                                             f"included_{session}")
        if not all(n in archive.files for n in names):
            have = sorted(f for f in archive.files if f.startswith("sum_"))
            raise ConfigError(f"SUMS {path}: no {names[0]} (the server finished "
                              f"{len(have)} session(s): {', '.join(have) or 'none'})")
        return archive[names[0]], archive[names[1]]


def _shape(text: str | None, size: int) -> tuple[int, ...]:
    if text is None:
        return (size,)
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--shape {text}: need comma-separated ints, e.g. 64,10") from None
    if int(np.prod(shape)) != size or any(s < 0 for s in shape):
        raise ConfigError(f"--shape {text}: holds {int(np.prod(shape))} values, the mean "
                          f"has {size}")
    return shape


def run_dequantize(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
        writable_file(args.out, "--out")
        total, included = _session_sum(args.sums, args.session)
        if included.size == 0:
            raise ConfigError(f"SUMS {args.sums}: the session included no client")
        decoded = decode_sum(total, config, num_clients=int(included.size))
        mean = decoded.mean.reshape(_shape(args.shape, decoded.mean.size))
    except SecAggError as exc:
        print(f"secagg dequantize: refused: {exc}", file=sys.stderr)
        return 2
    np.save(args.out, mean, allow_pickle=False)
    info = {"out": str(args.out), "included": [int(u) for u in included],
            "total_weight": decoded.total_weight, "shape": list(mean.shape),
            "error_bound": error_bound(config)}
    _report(args.json, info, f"{args.out}: mean of {included.size} clients (total weight "
            f"{decoded.total_weight}), shape {mean.shape}, within {error_bound(config):.2e} "
            "of the mean of their clipped updates")
    return 0


def _report(as_json: bool, info: dict[str, Any], line: str) -> None:
    print(json.dumps(info, sort_keys=True) if as_json else line)

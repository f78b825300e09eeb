"""Known-answer vectors of the distributed-DP pipeline (spec §21.9): ``specs/vectors/dp/dp.json``.

``python -m secagg.dp.vectors`` checks the committed file byte for byte;
``--write`` regenerates it. Every draw uses :class:`SeededTestVectorSource`
with a per-entry seed, so an implementation can reproduce each entry alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from secagg.dp import cks, samplers
from secagg.dp.params import DPParams
from secagg.dp.pipeline import encode_client
from secagg.dp.randomness import SeededTestVectorSource
from secagg.dp.rotation import block_sizes, rotate, rotate_blocks, rotation_signs

# A subfolder: specs/vectors/*.json is the set secagg.vectors.FILES owns (tests check it).
PATH = Path(__file__).resolve().parents[2] / "specs" / "vectors" / "dp" / "dp.json"
_DRAWS = 16


def _src(name: str) -> SeededTestVectorSource:
    return SeededTestVectorSource(b"secagg-dp-vectors/" + name.encode())


def _scalar_entries() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for g in ("0", "1/3", "1", "5/2"):
        s = _src("bernoulli_exp/" + g)
        out.append({"sampler": "bernoulli_exp", "gamma": g,
                    "draws": [int(cks.bernoulli_exp(Fraction(g), s)) for _ in range(_DRAWS)]})
    s = _src("discrete_laplace/3/2")
    out.append({"sampler": "discrete_laplace", "scale": "3/2",
                "draws": [cks.discrete_laplace(Fraction(3, 2), s) for _ in range(_DRAWS)]})
    s = _src("discrete_gaussian_cks/5/2")
    out.append({"sampler": "discrete_gaussian_cks", "sigma2": "5/2",
                "draws": [cks.discrete_gaussian(Fraction(5, 2), s) for _ in range(_DRAWS)]})
    return out


def _table_entries() -> list[dict[str, Any]]:
    dg = samplers.discrete_gaussian(Fraction(7), _DRAWS, _src("discrete_gaussian/7"))
    po = samplers.poisson(Fraction(7, 2), _DRAWS, _src("poisson/7/2"))
    sk = samplers.skellam(Fraction(10), _DRAWS, _src("skellam/10"))
    return [
        {"sampler": "discrete_gaussian", "sigma2": "7", "draws": dg.tolist()},
        {"sampler": "poisson", "mean": "7/2", "draws": po.tolist()},
        {"sampler": "skellam", "mean": "10", "draws": sk.tolist()},
    ]


def _block_entry(sid: bytes, x: np.ndarray) -> dict[str, Any]:
    """Block-diagonal rotation (§21.11): dim 5, minimum block 2 -> blocks (4, 2)."""
    sizes = block_sizes(x.size, 2)
    signs = rotation_signs(sid, 3, sum(sizes))
    return {"session_id": sid.hex(), "round": 3, "min_block": 2, "blocks": list(sizes),
            "signs": [int(v) for v in signs], "input": [float(v).hex() for v in x],
            "output": [float(v).hex() for v in rotate_blocks(x, signs, sizes)]}


def build() -> dict[str, Any]:
    sid = bytes(range(32))
    signs = rotation_signs(sid, 3, 8)
    x = np.array([1.0, -2.0, 3.5, 0.25, -1.0])
    params = DPParams("ddg", dim=5, clip=4.0, gamma=16.0, bits=12, noise=Fraction(9, 2),
                      floor=2, clients=3)
    enc = encode_client(x, params, sid, 3, _src("encode_client"))
    return {
        "source": {"seed": "secagg-dp-vectors/source",
                   "first_32_bytes": _src("source").random_bytes(32).hex()},
        "samplers": _scalar_entries() + _table_entries(),
        "rotation": {"session_id": sid.hex(), "round": 3, "n": 8,
                     "signs": [int(v) for v in signs], "input": [float(v).hex() for v in x],
                     "output": [float(v).hex() for v in rotate(x, signs)]},
        "rotation_blocks": _block_entry(sid, x),
        "encode_client": {"session_id": sid.hex(), "round": 3, "seed": "encode_client",
                          "params_binding": params.binding().hex(),
                          "input": [float(v).hex() for v in x], "output": enc.tolist()},
    }


def render() -> str:
    return json.dumps(build(), indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="distributed-DP known-answer vectors")
    ap.add_argument("--write", action="store_true", help="regenerate the file")
    args = ap.parse_args(argv)
    text = render()
    if args.write:
        PATH.write_text(text)
        return 0
    if PATH.read_text() != text:
        print("dp vectors differ from the implementation", file=sys.stderr)
        return 1
    print("dp vectors match")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

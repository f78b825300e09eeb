"""Privacy suite: what a server reconstructs or infers from one update, the sum, the DP sum.

Run ``python -m bench.privacy`` (moderate size, ~10 minutes on 2 busy cores) or
``--quick`` (smoke size, into a temporary folder). Writes
``bench/results/privacy/privacy.json`` (every row), ``privacy.md`` (the tables
pasted into ``bench/README.md``) and the pictures of the headline runs.

**Inversion** (:mod:`fl.privacy.inversion`): Inverting Gradients with iDLG labels
against clients 1-4's individual updates, the secure sum of all n clients (a
real secure-aggregation session) and that sum with distributed-DP noise, over
batch size B, local steps and n. "Recovered" = MSE < 0.005 to the closest real
training image (the threshold's justification is in the module docstring).

**Membership** (:mod:`fl.privacy.membership`): offline LiRA (loss decrease
calibrated by 16 shadow updates) on the same three views, over the DP noise
multiplier; AUC and TPR at 1% FPR.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from bench.common import quick_dir
from fl.privacy import experiments as ex
from fl.privacy.inversion import InversionConfig
from fl.privacy.updates import DPConfig

OUT = Path(__file__).resolve().parent / "results" / "privacy"

# (batch size, local steps, clients, keep pictures)
INVERSION_FULL = [(1, 1, 20, True), (2, 1, 20, False), (4, 1, 20, True), (2, 3, 20, False),
                  (1, 1, 5, False), (1, 1, 10, False)]
INVERSION_QUICK = [(1, 1, 3, True)]
DP_MULTIPLIERS_FULL = [0.3, 1.0]
DP_MULTIPLIERS_QUICK = [1.0]


def run(quick: bool, out: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    scratch = quick_dir("privacy-bench-")  # reconstructions not kept: removed at exit
    cfg = InversionConfig(iterations=150, restarts=1) if quick else InversionConfig()
    grid = INVERSION_QUICK if quick else INVERSION_FULL
    rows: list[dict[str, Any]] = []
    for b, steps, n, keep in tqdm(grid, desc="inversion settings", unit="setting"):
        where = out / f"inversion_b{b}_n{n}" if keep else scratch / f"b{b}s{steps}n{n}"
        t0 = time.perf_counter()
        setup = ex.InversionSetup(clients=n, batch_size=b, local_steps=steps,
                                  targets=1 if quick else 4)
        for r in ex.run_inversion(setup, where, config=cfg):
            r["seconds"] = time.perf_counter() - t0
            if not keep:
                r["png_path"] = None
            else:
                r["png_path"] = str(Path(r["png_path"]).relative_to(out.parent.parent))
            rows.append(r)
    mrows: list[dict[str, Any]] = []
    for z in tqdm(DP_MULTIPLIERS_QUICK if quick else DP_MULTIPLIERS_FULL,
                  desc="membership, DP multipliers", unit="z"):
        t0 = time.perf_counter()
        ms = ex.MembershipSetup(clients=4 if quick else 20, local_epochs=3 if quick else 50,
                                dp=DPConfig(multiplier=z))
        where = out if z == 1.0 else scratch / f"z{z}"
        for r in ex.run_membership(ms, where):
            if r["view"] != "aggregate_dp" and z != 1.0:
                continue  # the undefended views do not depend on z
            r["seconds"] = time.perf_counter() - t0
            r["png_path"] = (str(Path(r["png_path"]).relative_to(out.parent.parent))
                             if z == 1.0 else None)
            mrows.append(r)
    result = {"inversion": rows, "membership": mrows,
              "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (out / "privacy.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    (out / "privacy.md").write_text(markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = ["| view | B | local steps | n | reconstructed | recovered | fraction | "
             "median best MSE | s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["inversion"]:
        lines.append(f"| {r['view']} | {r['batch_size']} | {r['local_steps']} | {r['clients']} | "
                     f"{r['reconstructions']} | {r['recovered']} | "
                     f"**{r['recovered_fraction']:.2f}** | {r['median_best_mse']:.4f} | "
                     f"{r['seconds']:.0f} |")
    lines += ["", "| view | DP z | n | members / non-members | AUC | TPR at 1% FPR |",
              "|---|---|---|---|---|---|"]
    for r in result["membership"]:
        z = f"{r['dp_multiplier']:g}" if "dp_multiplier" in r else "-"
        lines.append(f"| {r['view']} | {z} | {r['clients']} | {r['members']} / "
                     f"{r['non_members']} | **{r['auc']:.3f}** | {r['tpr_at_1pct_fpr']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke size, temporary folder")
    args = parser.parse_args()
    out = quick_dir("privacy-quick-") if args.quick else OUT
    result = run(args.quick, out)
    print(markdown(result))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

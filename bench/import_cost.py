"""What a Flower client process pays to import our mod, next to Flower's own (issue 19).

Run ``python -m bench.import_cost [--repeats N] [--json]``. In Flower's deployment
engine every message starts a fresh ClientApp process, so the import is paid four
times per node and round. Each case runs in a fresh interpreter that times only its
import statement (``time.perf_counter`` around it, interpreter start excluded); the
cases alternate within every repetition so all of them see the same machine state,
and the medians are compared in the same run:

* ``flwr``: ``import flwr.client.mod`` (Flower's ``secaggplus_mod`` lives there);
* ``ours-package``: ``import secagg.flower``;
* ``ours-mod``: ``from secagg.flower import secaggplus_mod`` (what a ClientApp does);
* ``ours-on-flwr``: both, Flower's first: what ours adds to a process that already
  imported Flower's client side (the deployment engine's case).

The target (issue 19): every ``ours`` median at most 0.05 s above ``flwr``'s. The
list of modules ours imports beyond ``flwr.client.mod`` is printed too, so a heavy
dependency that creeps onto the client path shows up by name.

Bytecode: an installed package has its ``.pyc`` files (pip compiles them), and
flwr's in site-packages do. With ``PYTHONDONTWRITEBYTECODE=1`` in the environment
and a source checkout, every fresh process would compile our modules again (~40 ms
here), a cost no installed client pays; so the children run without that variable,
after one untimed warm-up import per case that writes the bytecode (``--as-is``
keeps the environment unchanged, to see that cost).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

CASES = {
    "flwr": "import flwr.client.mod",
    "ours-package": "import secagg.flower",
    "ours-mod": "from secagg.flower import secaggplus_mod",
    "ours-on-flwr": "import flwr.client.mod\nfrom secagg.flower import secaggplus_mod",
}
TARGET_S = 0.05
#: heavy modules that must not appear on the client path (issue 19)
HEAVY = ("numba", "llvmlite", "sklearn", "matplotlib", "grpc", "torch", "scipy", "tqdm",
         "ray", "dp_accounting")

_TIMER = ("import time\n_t, _c = time.perf_counter(), time.process_time()\n{stmt}\n"
          "print(repr(time.perf_counter() - _t), repr(time.process_time() - _c))\n")


def child_env(as_is: bool = False) -> dict[str, str]:
    """The children's environment: this one, without PYTHONDONTWRITEBYTECODE (see above)."""
    return dict(os.environ) if as_is else {
        k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def time_import(stmt: str, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall and CPU seconds that ``stmt`` takes in a fresh interpreter (start-up excluded)."""
    out = subprocess.run([sys.executable, "-c", _TIMER.format(stmt=stmt)],
                         capture_output=True, text=True, check=True, env=env)
    wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def modules_beyond_flwr(stmt: str = CASES["ours-mod"]) -> list[str]:
    """Top-level names of the modules ``stmt`` imports that ``flwr.client.mod`` does not."""
    code = ("import sys\nimport flwr.client.mod\nbefore = set(sys.modules)\n"
            f"{stmt}\nprint('\\n'.join(sorted(set(sys.modules) - before)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return sorted({name.split(".")[0] for name in out.stdout.split()})


def _compare(samples: dict[str, list[float]]) -> dict[str, Any]:
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians["flwr"]
    return {
        "median_s": medians,
        "extra_over_flwr_s": {n: medians[n] - base for n in CASES if n != "flwr"},
        "ratio_to_flwr": {n: medians[n] / base for n in CASES if n != "flwr"},
    }


def run(repeats: int, as_is: bool = False) -> dict[str, Any]:
    """Median import time of every case over ``repeats`` alternating fresh processes.

    Wall time is what a message waits; CPU time (``process_time``) is what the import
    itself costs, and moves less when other jobs share the cores.
    """
    env = child_env(as_is)
    for stmt in CASES.values():  # untimed: writes the bytecode an installed package has
        time_import(stmt, env)
    wall: dict[str, list[float]] = {name: [] for name in CASES}
    cpu: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(max(1, repeats)):
        for name, stmt in CASES.items():
            w, c = time_import(stmt, env)
            wall[name].append(w)
            cpu[name].append(c)
    result = {"repeats": max(1, repeats), "bytecode": "as-is" if as_is else "compiled",
              "wall": _compare(wall), "cpu": _compare(cpu)}
    beyond = modules_beyond_flwr()
    result.update({
        "target_extra_s": TARGET_S,
        "met_cpu": all(v <= TARGET_S for v in result["cpu"]["extra_over_flwr_s"].values()),
        "met_wall": all(v <= TARGET_S for v in result["wall"]["extra_over_flwr_s"].values()),
        "top_level_modules_beyond_flwr": beyond,
        "heavy_modules_beyond_flwr": [m for m in beyond if m in HEAVY],
    })
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15,
                        help="fresh processes per case (default 15)")
    parser.add_argument("--as-is", action="store_true",
                        help="keep PYTHONDONTWRITEBYTECODE if set (no bytecode warm-up)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(args.repeats, args.as_is)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"import cost, median of {result['repeats']} fresh processes per case "
          f"(wall | CPU; bytecode {result['bytecode']})")
    wall, cpu = result["wall"], result["cpu"]
    for name, stmt in CASES.items():
        cells = [f"{wall['median_s'][name]:.3f} s", f"{cpu['median_s'][name]:.3f} s"]
        if name != "flwr":
            cells += [f"{wall['extra_over_flwr_s'][name]:+.3f}",
                      f"{cpu['extra_over_flwr_s'][name]:+.3f} s vs flwr"]
        print(f"  {name:<13} {' | '.join(cells)}   ({stmt!r})")
    verdict = {True: "met", False: "NOT met"}
    print(f"  target: at most +{TARGET_S} s: CPU {verdict[result['met_cpu']]}, "
          f"wall {verdict[result['met_wall']]}")
    print(f"  modules beyond flwr.client.mod: {', '.join(result['top_level_modules_beyond_flwr'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

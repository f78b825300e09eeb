"""``secagg bench primitives`` and ``secagg bench protocol``: the existing benchmarks,
with their results written to files like every other suite.

Both wrap the modules' own ``main`` (``bench.primitives``, ``bench.protocol``),
run once with ``--json`` so nothing is measured twice, and save that JSON (with
the machine and command) plus a CSV in the output folder, then print the
human-readable table. All their own options pass through unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from bench import primitives, protocol
from bench.common import finish, fmt, output_dir


def _run_json(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, Any]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main([*argv, "--json"])
    return code, json.loads(buf.getvalue())


def _split(prog: str, argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Our options (--out, --no-plots) apart from the wrapped module's own."""
    parser = argparse.ArgumentParser(prog=prog, add_help=False)
    parser.add_argument("--out", default=None)
    parser.add_argument("--no-plots", action="store_true")
    ours, rest = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    rest = [a for a in rest if a != "--json"]
    if "-h" in rest or "--help" in rest:
        print(f"{prog}: the module's options below, plus --out DIR (default bench/results, "
              "or a temporary folder with --quick).\n")
    ours.quick = "--quick" in rest
    return ours, rest


def _wrap(suite: str, main: Callable[[list[str]], int], argv: Sequence[str] | None,
          show: Callable[[Any], tuple[dict[str, Any], list[dict[str, Any]]]]) -> int:
    """Run the module's ``main`` once with ``--json``; ``show`` prints its table and says
    what to save (the JSON payload and the CSV rows), written with the machine and command."""
    args, rest = _split(f"secagg bench {suite}", argv)
    if "-h" in rest or "--help" in rest:
        return main(rest)
    out = output_dir(args, suite)  # before the work: a bad --out is refused at once
    code, res = _run_json(main, rest)
    payload, rows = show(res)
    files = finish(args, out, suite, payload, rows, argv)
    print(f"wrote {', '.join(str(f) for f in files)}", file=sys.stderr)
    return code


def primitives_main(argv: Sequence[str] | None = None) -> int:
    """PRG vs raw AES-CTR, Shamir, X25519, accumulate kernels; JSON/CSV in the output folder."""
    return _wrap("primitives", primitives.main, argv, _show_primitives)


def _show_primitives(res: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rows = [{"group": "prg", "cipher": c, **v} for c, v in res["prg"].items()]
    rows += [{"group": g, **res[g]} for g in ("shamir", "x25519", "accumulate")]
    primitives._print_text(res)
    return res, rows


def protocol_main(argv: Sequence[str] | None = None) -> int:
    """The protocol issue's configurations with the floor beside each; JSON/CSV saved."""
    return _wrap("protocol", protocol.main, argv, _show_protocol)


def _show_protocol(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    print(f"{'case':<42} {'exact':>5} {'server s':>9} {'floor s':>8} {'x floor':>7} "
          f"{'full s':>8} {'x full':>6} {'client ms':>9} {'B/elem':>6} {'peak MB':>8}")
    for r in rows:
        print(f"{r['case']:<42} {r['exact']!s:>5} {r['server_seconds']:>9.3f} "
              f"{r['floor_seconds']:>8.3f} {fmt(r['server_to_floor'], '.2f'):>7} "
              f"{fmt(r.get('full_floor_seconds'), '.3f'):>8} "
              f"{fmt(r.get('server_to_full_floor'), '.2f'):>6} "
              f"{r['client_seconds_mean'] * 1e3:>9.1f} {r['masked_bytes_per_element']:>6.2f} "
              f"{r['peak_server_mb']:>8.1f}")
    return {"rows": rows}, rows

"""Regenerate ``bench/README.md`` (tables, plots, targets) from the suites' JSON results.

``secagg bench report`` (or ``python -m bench.report``) redraws the README and
every plot from ``bench/results/*.json`` in seconds, without measuring again;
``--run`` first runs every full suite (about an hour on 2 cores), so one command
reproduces the whole report. ``--quick --out DIR`` does the same at smoke-test
size into DIR (the test suite uses it), leaving the committed report alone.

The README states the machine, the date and the command of each suite, and puts
every target of the benchmark issue next to the measured value, so a reader can
see at once which hold.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, fmt, quick_dir, table_row

SUITE_ORDER = ("flower", "scaling", "dropout", "primitives", "protocol")
Payloads = Mapping[str, Mapping[str, Any]]


def load(results: Path) -> dict[str, dict[str, Any]]:
    """Every suite JSON present in ``results`` (missing suites are simply absent)."""
    out = {}
    for suite in SUITE_ORDER:
        path = results / f"{suite}.json"
        if path.exists():
            out[suite] = json.loads(path.read_text())
    return out


def _find(rows: Sequence[Mapping[str, Any]], **match: Any) -> Mapping[str, Any] | None:
    for r in rows:
        if all(r.get(k) == v or (isinstance(v, float) and isinstance(r.get(k), float)
                                 and math.isclose(r[k], v)) for k, v in match.items()):
            return r
    return None


def targets(p: Payloads) -> list[tuple[str, str, str, str]]:
    """(target, measured, verdict, where) for each target of the issue."""
    out = []
    rows = p.get("flower", {}).get("rows", [])
    r = _find(rows, graph="complete", n=100, dropout=0.3, kind="cost")
    if r and r.get("server_speedup"):
        ok = r["server_speedup"] >= 100
        out.append(("server >= 100x faster than Flower, SecAgg n=100, 30% dropout",
                    f"{r['server_speedup']:.0f}x ({fmt(r.get('server_speedup_1thread'), '.0f')}x "
                    f"with 1 server thread); Flower {r['flower_server_seconds']:.1f} s, "
                    f"ours {r['server_seconds']:.3f} s",
                    "met" if ok else "NOT met", "flower"))
    else:
        out.append(("server >= 100x faster than Flower, SecAgg n=100, 30% dropout",
                    "not measured", "-", "flower"))
    s_rows = p.get("scaling", {}).get("rows", [])
    r = _find(s_rows, graph="complete", n=100, m=1_000_000, drop_at="masked-input")
    if r and r.get("server_to_floor"):
        out.append(("server within 1.5x of the floor, n=100, m=10^6",
                    f"{r['server_to_floor']:.2f}x (server {r['server_seconds']:.3f} s, floor "
                    f"{r['floor_seconds']:.3f} s, {r['dropout']:.0%} dropout)",
                    "met" if r["server_to_floor"] <= 1.5 else "NOT met", "scaling"))
    else:
        out.append(("server within 1.5x of the floor, n=100, m=10^6", "not measured", "-",
                    "scaling"))
    # The target is set on the baseline configuration (SecAgg, n = 100, 30%); the SecAgg+
    # row at n = 100 (k = 16: little work on either side) is shown for reference.
    for graph, label in (("complete", "SecAgg, 30% dropout"), ("harary", "SecAgg+, reference")):
        r = _find(rows, graph=graph, n=100, kind="cost")
        if r and r.get("client_speedup"):
            theirs_ms = r["flower_client_seconds_mean"] * 1e3
            ok = r["client_speedup"] >= 20
            verdict = ("met" if ok else "NOT met") if graph == "complete" else (
                "(above 20x)" if ok else "(below 20x)")
            out.append((f"client >= 20x faster than Flower at n=100 ({label})",
                        f"{r['client_speedup']:.0f}x (Flower {theirs_ms:.0f} ms, ours "
                        f"{r['client_seconds_mean'] * 1e3:.1f} ms, k = {r['k']}, "
                        f"{r['dropout']:.0%} dropout)", verdict, "flower"))
    all_rows = [*rows, *s_rows]
    if all_rows:
        worst = max(all_rows, key=lambda x: x["masked_bytes_per_element"])
        big = [x for x in all_rows if x["m"] >= 100_000]
        typical = max(big, key=lambda x: x["masked_bytes_per_element"]) if big else worst
        fl = [x["flower_masked_bytes_per_element"] for x in rows
              if x.get("flower_masked_bytes_per_element") and x["m"] >= 100_000]
        bound = worst["wire_bound_bytes_per_element"]
        out.append(("upload <= ceil(log2 R)/8 bytes per element (R = 2^32: 4 B)",
                    f"{typical['masked_bytes_per_element']:.4f} B at m >= 100k (worst "
                    f"{worst['masked_bytes_per_element']:.3f} B at m = {worst['m']:,}, message "
                    f"header included); Flower {fmt(min(fl) if fl else None, '.4f')} B",
                    "met" if typical["masked_bytes_per_element"] <= bound + 0.01 else "NOT met",
                    "flower, scaling"))
    return out


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += [table_row(row) for row in rows]
    return lines


def _yn(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "**no**")


def section_flower(p: Mapping[str, Any]) -> list[str]:
    rows = p["rows"]
    cost = [r for r in rows if r["kind"] == "cost"]
    lines = [f"Flower {p.get('flower_version') or '(not run)'} in its own venv, driven "
             "in-process (its `secaggplus_mod` on every client, its `SecAggWorkflow` / "
             "`SecAggPlusWorkflow` stages on the server, protobuf serialization of every "
             "message); ours through `secagg.sim`. Same inputs, same dropped clients (they "
             "drop after ShareKeys). SecAgg+ uses the same k and t on both sides (Flower "
             "`num_shares = k + 1`, `reconstruction_threshold = t`). Speedup = Flower's time / "
             "ours; ours uses 2 server threads, the '1 thr' column one thread (Flower's "
             "server is single-threaded; when other jobs hold a core, our 2-thread server can "
             "be the slower of the two).", ""]
    table = []
    for r in cost:
        table.append([
            r["case"], f"{r['k']}/{r['t']}", f"{r['server_seconds']:.3f}",
            fmt(r.get("flower_server_seconds"), ".2f"),
            f"**{fmt(r.get('server_speedup'), '.0f')}x**",
            f"{fmt(r.get('server_speedup_1thread'), '.0f')}x",
            f"{r['client_seconds_mean'] * 1e3:.1f}",
            fmt((r.get("flower_client_seconds_mean") or math.nan) * 1e3, ".0f"),
            f"**{fmt(r.get('client_speedup'), '.0f')}x**",
            f"{r['masked_bytes_per_element']:.3f} / "
            f"{fmt(r.get('flower_masked_bytes_per_element'), '.3f')}",
            f"{r['bytes_up_per_client'] / 1e3:.0f} / "
            f"{fmt((r.get('flower_bytes_up_per_client') or math.nan) / 1e3, '.0f')}",
            f"{_yn(r['exact'])} / {_yn(r.get('flower_exact'))} / {_yn(r.get('sums_agree'))}",
        ])
    lines += _table(["case", "k/t", "ours server s", "Flower server s", "server speedup",
                     "1 thr", "ours client ms", "Flower client ms", "client speedup",
                     "upload B/elem ours / Flower", "kB up/client ours / Flower",
                     "exact ours / Flower / same sum"], table)
    m_values = sorted({r["m"] for r in cost})
    lines += ["", f"m = {', '.join(f'{m:,}' for m in m_values)}. 'same sum': Flower's aggregate "
              "(recovered exactly from its dequantized average) is identical to ours and both "
              "equal the plaintext sum of the same included clients."]
    drops = [r for r in rows if r["kind"] == "drop-round"]
    if drops:
        lines += ["", "**Does a session survive one client in ten dropping at each round?**", ""]
        table = []
        for r in drops:
            fl = ("not run" if "flower_completed" not in r else "exact sum" if r["flower_exact"]
                  else f"fails at {r['flower_failed_stage']}" if not r["flower_completed"]
                  else "**wrong sum**")
            table.append([r["case"], "exact sum" if r["exact"] else "aborted", fl,
                          f"`{r.get('flower_first_error') or ''}`"
                          if r.get("flower_first_error") else ""])
        lines += _table(["case", "ours", "Flower 1.42", "Flower's first client error"], table)
    return lines


def section_scaling(p: Mapping[str, Any]) -> list[str]:
    lines = ["One session per row; the floor is raw AES-CTR keystream plus vector additions for "
             "exactly the masks that session's server regenerated, same threads, measured "
             "beside it. Peak server memory from a tracemalloc replay.", ""]
    table = []
    for r in p["rows"]:
        table.append([
            r["sweep"], r["graph"], f"{r['n']:,}", f"{r['m']:,}", f"{r['dropout']:.0%}",
            r["drop_at"], f"{r['k']}/{r['t']}", _yn(r["exact"]),
            f"{r['server_seconds']:.3f}", f"{r['floor_seconds']:.3f}",
            fmt(r["server_to_floor"], ".2f"), fmt(r.get("server_to_full_floor"), ".2f"),
            f"{r['client_seconds_mean'] * 1e3:.1f}", f"{r['bytes_up_per_client'] / 1e3:.1f}",
            f"{r['bytes_down_per_client'] / 1e3:.1f}",
            f"{r['masked_bytes_per_element']:.3f}", f"{r['peak_server_mb']:.1f}",
        ])
    lines += _table(["sweep", "graph", "n", "m", "drop", "drop round", "k/t", "exact",
                     "server s", "floor s", "x floor", "x full floor", "client ms",
                     "kB up/client", "kB down/client", "upload B/elem", "peak server MB"], table)
    return lines


def section_dropout(p: Mapping[str, Any]) -> list[str]:
    wrong = sum(r["wrong_sum"] for g in p["completion"] for r in g["rows"])
    lines = ["Each client drops independently with probability p at the given round. Cells: "
             "observed fraction of sessions that completed with the exact sum / predicted. "
             "SecAgg: predicted exactly, P[Binomial(n, 1-p) >= t+1], to which every abort rule "
             "of the server reduces on the complete graph. SecAgg+: predicted by a Monte Carlo "
             "of the server's abort rules on the ring (no cryptography), with rigorous analytic "
             "bounds for drops at MaskedInput/Unmasking: (1-q)^n <= P <= (1-q)^floor(n/(k+1)), "
             "q = P[Binomial(k, 1-p) < t] (Harris' inequality; disjoint neighbourhoods).",
             "", "No session returned a wrong sum." if not wrong
             else f"**{wrong} sessions returned a wrong sum: see the JSON.**", ""]
    for g in p["completion"]:
        rounds = list(dict.fromkeys(r["drop_at"] for r in g["rows"]))
        lines += [f"**{g['label']}** (k = {g['k']}, t = {g['t']}), {g['sessions']} sessions "
                  f"per point, {g['mc_trials']:,} Monte Carlo trials", ""]
        harary = g["graph"] == "harary"
        table = []
        for rate in sorted({r["rate"] for r in g["rows"]}):
            cells = [f"{rate:.0%}"]
            for rnd in rounds:
                r = next(x for x in g["rows"] if x["rate"] == rate and x["drop_at"] == rnd)
                cells.append(f"{r['observed']:.2f} / {r['predicted']:.3f}")
            ref = next(x for x in g["rows"] if x["rate"] == rate and x["drop_at"] == rounds[-1])
            cells.append(f"[{ref['analytic_lower']:.3g}, {ref['analytic_upper']:.3g}]" if harary
                         else f"{ref['rules_mc']:.3f}")
            table.append(cells)
        last = "analytic bounds (MaskedInput, Unmasking)" if harary else "rules MC (check)"
        lines += _table(["p", *rounds, last], table)
        finder = g.get("finder")
        if finder:
            log2 = finder["log2_union_bound"]
            lines += ["", f"Parameter finder check: with exactly {finder['dropped']} of "
                      f"{g['n']} clients dropped (the declared {finder['declared_dropout']:.0%}), "
                      "the union bound on some client keeping fewer than t live neighbours is "
                      + ("0 (impossible)" if log2 is None else f"2^{log2:.1f}")
                      + " < 2^-20, as the finder requires; independent drops at the same mean "
                      "rate overshoot it, and the table shows where the margin runs out."]
        lines.append("")
    for g in p["recovery"]:
        reps = g["rows"][0].get("repeats", 1)
        lines += [f"**Recovery cost, {g['label']}** (k = {g['k']}, t = {g['t']}): least-squares "
                  f"slope {fmt(g['seconds_per_dropped_fit'], '.4f')} s of server time per "
                  f"dropped client (best of {reps} sessions per point).", ""]
        table = [[r["dropped"], f"{r['server_seconds']:.3f}", f"{r['floor_seconds']:.3f}",
                  fmt(r["server_to_floor"], ".2f"), r["pairwise_masks"],
                  fmt(r["marginal_seconds_per_dropped"], ".4f"),
                  fmt(r["marginal_ms_per_pairwise_mask"], ".3f"), _yn(r["exact"])]
                 for r in g["rows"]]
        lines += _table(["dropped", "server s", "floor s", "x floor", "pairwise masks "
                         "regenerated", "extra s per dropped", "extra ms per mask", "exact"],
                        table)
        lines.append("")
    return lines


def section_primitives(p: Mapping[str, Any]) -> list[str]:
    table = []
    for cipher, row in p["prg"].items():
        table.append([f"PRG {cipher}, R = 2^32", f"{row['prg_2^32_gbps']:.2f} GB/s",
                      f"{row['ratio_2^32']:.3f} of raw keystream ({row['raw_gbps']:.2f} GB/s)"])
    s = p["shamir"]
    table.append([f"Shamir n={s['n']}, t={s['t']}, 32-byte secret",
                  f"share {s['share_ms']:.2f} ms", f"reconstruct {s['reconstruct_ms']:.2f} ms "
                  f"({s['reconstruct_cached_ms']:.2f} ms cached Lagrange)"])
    x = p["x25519"]
    table.append(["X25519 agreement", f"{x['us_per_agreement']:.1f} us", x["backend"]])
    a = p["accumulate"]
    table.append([f"sum {a['vectors']} x {a['length']:,} uint32",
                  f"numba {a['numba_2^32_ms']:.1f} ms",
                  f"numpy {a['numpy_2^32_ms']:.1f} ms"])
    return _table(["primitive", "cost", "reference"], table)


def section_protocol(p: Mapping[str, Any]) -> list[str]:
    table = [[r["case"], _yn(r["exact"]), f"{r['server_seconds']:.3f}",
              f"{r['floor_seconds']:.3f}", fmt(r["server_to_floor"], ".2f"),
              fmt(r.get("full_floor_seconds") or None, ".3f"),
              fmt(r.get("server_to_full_floor"), ".2f"),
              f"{r['client_seconds_mean'] * 1e3:.1f}", f"{r['peak_server_mb']:.1f}"]
             for r in p["rows"]]
    return _table(["case", "exact", "server s", "floor s", "x floor", "full floor s",
                   "x full floor", "client ms", "peak MB"], table)


SECTIONS: dict[str, tuple[str, Callable[[Mapping[str, Any]], list[str]]]] = {
    "flower": ("Ours vs Flower 1.42 (SecAgg and SecAgg+)", section_flower),
    "scaling": ("Scaling: n, m, dropout, drop round, graph", section_scaling),
    "dropout": ("Dropout tolerance and recovery cost", section_dropout),
    "primitives": ("Primitives", section_primitives),
    "protocol": ("Protocol issue configurations", section_protocol),
}
PLOTS = {
    "flower": ("flower_cost_vs_dropout.png", "flower_harary_vs_n.png"),
    "scaling": ("scaling_cost_vs_n.png", "scaling_cost_vs_m.png"),
    "dropout": ("dropout_completion.png", "dropout_recovery.png"),
}


def render(payloads: Payloads, results: Path, readme: Path) -> str:
    """The README text; plot links are relative to the README's folder."""
    from bench import plots

    for suite, payload in payloads.items():
        plots.plot_suite(suite, payload, results)
    machine = next(iter(payloads.values()))["machine"] if payloads else {}
    rel = _relative(results, readme.parent)
    lines = [
        "# Benchmarks",
        "",
        "Generated by `secagg bench report` from the JSON files in "
        f"`{rel or '.'}/`; do not edit by hand. Every claim is a ratio measured in the same "
        "run (ours vs the hardware floor, ours vs Flower on the same inputs): the machine is "
        "a shared 2-core VM and absolute times move by tens of percent between runs.",
        "",
        f"**Machine**: {machine.get('cpu', '?')} ({machine.get('arch', '?')}), "
        f"{machine.get('cpu_count', '?')} vCPU, Python {machine.get('python', '?')}, "
        f"numpy {machine.get('numpy', '?')}, {machine.get('platform', '?')}.",
        "",
        "**Reproduce**: `secagg bench report --run` runs every suite below at full size "
        "(about an hour) and rewrites this file; `secagg bench report` only redraws it from "
        "the saved results. Each suite alone, with its exact command, is listed in its "
        "section. `--quick` runs any suite at smoke-test size into a temporary folder.",
        "",
        "## Targets",
        "",
    ]
    lines += _table(["target", "measured", "verdict", "suite"], targets(payloads))
    for suite, (title, fn) in SECTIONS.items():
        payload = payloads.get(suite)
        lines += ["", f"## {title}", ""]
        if payload is None:
            lines.append(f"Not run for this report: `secagg bench {suite}`.")
            continue
        load = payload["machine"].get("loadavg")
        lines += [f"`{payload['command']}` — finished {payload['machine']['date']}"
                  + (f", load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)"
                     if load else "")
                  + (" (quick run)" if payload.get("quick") else ""), ""]
        lines += fn(payload)
        for name in PLOTS.get(suite, ()):
            if (results / name).exists():
                lines += ["", f"![{name}]({rel + '/' if rel else ''}{name})"]
    lines += standalone_sections(readme)
    return "\n".join(lines) + "\n"


#: Sections whose first line carries this are written by their own script
#: (``bench.privacy``, ``bench.explore``); a report keeps them as they are.
STANDALONE_MARK = "written by that script, not by `secagg bench report`"


def standalone_sections(readme: Path) -> list[str]:
    """The sections of the current README that their own scripts wrote, verbatim."""
    if not readme.exists():
        return []
    kept: list[str] = []
    for section in readme.read_text().split("\n## ")[1:]:
        body = section.rstrip("\n").split("\n")
        first = next((line for line in body[1:] if line.strip()), "")
        if STANDALONE_MARK in first:
            kept += ["", "## " + body[0], *body[1:]]
    return kept


def write_standalone_section(readme: Path, title: str, body: str) -> None:
    """Put ``## title`` with ``body`` into the README, replacing an earlier one."""
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    head, *sections = text.split("\n## ")
    sections = [s for s in sections if s.split("\n", 1)[0] != title]
    sections.append(f"{title}\n\n{body.strip()}\n")
    readme.write_text("\n## ".join([head.rstrip("\n") + "\n", *sections]))


def standalone_main(doc: str, name: str, title: str, run: Callable[[bool], dict[str, Any]],
                    markdown: Callable[[dict[str, Any]], str]) -> None:
    """Entry point shared by the standalone suites (``bench.algorithms``, ``bench.lora``).

    Runs the suite, writes ``<name>.json`` (into a temporary folder with
    ``--quick``) and, at full size, the suite's own section of ``bench/README.md``.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke size, temporary folder")
    args = parser.parse_args()
    result = run(args.quick)
    out = quick_dir(f"{name}-quick-") if args.quick else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    text = markdown(result)
    if not args.quick:
        write_standalone_section(out.parent / "README.md", title, text)
    print(text)
    print(f"wrote {out / f'{name}.json'}")


def _relative(path: Path, start: Path) -> str:
    try:
        return str(path.resolve().relative_to(start.resolve()))
    except ValueError:
        return str(path.resolve())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``secagg bench report``."""
    parser = argparse.ArgumentParser(prog="secagg bench report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true",
                        help="run every suite first (full size, about an hour; or --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="with --run: smoke-test sizes (needs --out)")
    parser.add_argument("--out", default=None,
                        help="results folder to read (and write with --run); default "
                             "bench/results, whose README is bench/README.md")
    parser.add_argument("--no-flower", action="store_true",
                        help="with --run: our side of the flower suite only")
    args = parser.parse_args(argv)
    if args.quick and not args.out:
        parser.error("--quick needs --out (the committed report is never overwritten by it)")
    results = Path(args.out) if args.out else RESULTS_DIR
    readme = results.parent / "README.md" if results == RESULTS_DIR else results / "README.md"
    if args.run:
        from bench import dropout, flower, scaling, wrap

        # the committed results folder is every suite's default: no path in the recorded command
        common = ([] if results == RESULTS_DIR else ["--out", str(results)]) + (
            ["--quick"] if args.quick else [])
        runs: list[tuple[Callable[[list[str]], int], list[str]]] = [
            (flower.main, [*common, *(["--no-flower"] if args.no_flower else [])]),
            (scaling.main, common), (dropout.main, common), (wrap.primitives_main, common),
        ]
        for fn, suite_argv in runs:
            code = fn(suite_argv)
            if code:
                print(f"secagg bench report: a suite exited with {code}", file=sys.stderr)
                return code
    payloads = load(results)
    if not payloads:
        print(f"secagg bench report: no results in {results}", file=sys.stderr)
        return 2
    readme.write_text(render(payloads, results, readme))
    print(f"wrote {readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""PNG plots of the benchmark suites (matplotlib, Agg backend: no display needed).

Each ``plot_*`` takes a suite's JSON payload and writes its figures into a
folder, returning the paths. They read only the payload, so
``python -m bench.report`` can redraw every figure from the committed JSON
without running anything again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

Rows = Sequence[Mapping[str, Any]]


def _pyplot() -> Any | None:
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_suite(suite: str, payload: Mapping[str, Any], out: Path) -> list[Path]:
    """Every figure of ``suite`` into ``out``; [] for suites without plots or no matplotlib."""
    table: dict[str, Callable[[Mapping[str, Any], Path], list[Path]]] = {
        "scaling": plot_scaling,
        "dropout": plot_dropout,
        "flower": plot_flower,
        "flower-deployment": plot_flower_deployment,
    }
    fn = table.get(suite)
    if fn is None or _pyplot() is None:
        return []
    return fn(payload, out)


def _plain_ticks(ax: Any) -> None:
    """Log axes with 10, 100, 1000 rather than 10^1, 2x10^1 labels."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _pos: f"{v:g}")
    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            axis.set_major_formatter(fmt)
            axis.set_minor_formatter(FuncFormatter(lambda _v, _pos: ""))


def _log_axes(ax: Any, xlabel: str, ylabel: str, *, log_x: bool = True) -> None:
    """The cost plots' axes: log y (and x unless ``log_x`` is False), labelled, gridded,
    with plain tick labels."""
    if log_x:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    _plain_ticks(ax)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_scaling(payload: Mapping[str, Any], out: Path) -> list[Path]:
    """Cost vs n (server, floor, client; log-log) and server/floor vs m."""
    plt = _pyplot()
    rows = payload["rows"]
    files = []
    fig, (ax_s, ax_c) = plt.subplots(1, 2, figsize=(11, 4.2))
    series: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["sweep"] in ("n", "graph") and r["drop_at"] == "masked-input":
            label = ("SecAgg+ (Harary)" if r["graph"] == "harary" else "SecAgg (complete)")
            series[f"{label}, {r['dropout']:.0%} dropout"].append(r)
    for label, pts in sorted(series.items()):
        pts = sorted(pts, key=lambda r: r["n"])
        ns = [r["n"] for r in pts]
        line = ax_s.plot(ns, [r["server_seconds"] for r in pts], "o-", label=label)[0]
        ax_s.plot(ns, [r["floor_seconds"] for r in pts], "x:", color=line.get_color(),
                  label=f"floor ({label})")
        ax_c.plot(ns, [r["client_seconds_mean"] * 1e3 for r in pts], "o-", label=label)
    for ax, what in ((ax_s, "server compute (s)"), (ax_c, "client compute, mean (ms)")):
        _log_axes(ax, "clients n", what)
    ax_s.legend(fontsize=6)
    ax_c.legend(fontsize=7)
    m_note = sorted({r["m"] for pts in series.values() for r in pts})
    fig.suptitle(f"Cost vs n (m = {', '.join(f'{m:,}' for m in m_note)}; dotted = hardware floor)")
    files.append(_save(fig, out / "scaling_cost_vs_n.png"))

    m_rows = sorted((r for r in rows if r["sweep"] in ("m", "n") and r["n"] == 100
                     and r["graph"] == "complete" and r["drop_at"] == "masked-input"
                     and abs(r["dropout"] - 0.3) < 1e-9), key=lambda r: r["m"])
    if len(m_rows) >= 2:
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        ms = [r["m"] for r in m_rows]
        ax.plot(ms, [r["server_seconds"] for r in m_rows], "o-", label="server (ours)")
        ax.plot(ms, [r["floor_seconds"] for r in m_rows], "s:", label="hardware floor")
        for r in m_rows:
            if r["server_to_floor"]:
                ax.annotate(f"{r['server_to_floor']:.2f}x", (r["m"], r["server_seconds"]),
                            textcoords="offset points", xytext=(4, 6), fontsize=8)
        _log_axes(ax, "vector length m", "server compute (s)")
        ax.set_title("SecAgg n = 100, 30% dropout: server vs floor")
        ax.legend()
        files.append(_save(fig, out / "scaling_cost_vs_m.png"))
    return files


def plot_dropout(payload: Mapping[str, Any], out: Path) -> list[Path]:
    """Completion rate vs dropout rate (observed per drop round, predicted), recovery cost."""
    plt = _pyplot()
    files = []
    groups = payload.get("completion", [])
    if groups:
        fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), squeeze=False)
        for ax, group in zip(axes[0], groups, strict=True):
            by_round: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
            for r in group["rows"]:
                by_round[r["drop_at"]].append(r)
            for i, (rnd, pts) in enumerate(by_round.items()):
                pts = sorted(pts, key=lambda r: r["rate"])
                ax.plot([r["rate"] + 0.004 * (i - 1.5) for r in pts],
                        [r["observed"] for r in pts], "o", label=f"observed, drop at {rnd}")
                color = ax.lines[-1].get_color()
                ax.plot([r["rate"] for r in pts], [r["predicted"] for r in pts], "-",
                        color=color, alpha=0.6)
                if rnd == "masked-input" and any(
                        r["analytic_lower"] != r["analytic_upper"] for r in pts):
                    ax.fill_between([r["rate"] for r in pts], [r["analytic_lower"] for r in pts],
                                    [r["analytic_upper"] for r in pts], color=color, alpha=0.12,
                                    label="analytic bounds, MaskedInput/Unmasking")
            declared = group.get("declared_dropout")
            if declared is not None:
                ax.axvline(declared, color="grey", ls="--", lw=1,
                           label=f"declared rate {declared:.0%} (finder: fail < 2^-20)")
            ax.set_xlabel("dropout probability per client")
            ax.set_ylabel("fraction of sessions completing exactly")
            ax.set_ylim(-0.05, 1.05)
            exact = all(r["analytic_lower"] == r["analytic_upper"] for r in group["rows"])
            how = "exact P[Bin(n,1-p) >= t+1]" if exact else "Monte Carlo of the server rules"
            ax.set_title(f"{group['label']} (k={group['k']}, t={group['t']}), "
                         f"{group['sessions']} sessions/point\n"
                         f"markers: sessions run; lines: predicted, {how}", fontsize=8)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7, loc="lower left")
        files.append(_save(fig, out / "dropout_completion.png"))
    recovery = payload.get("recovery", [])
    if recovery:
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        for group in recovery:
            pts = sorted(group["rows"], key=lambda r: r["dropped"])
            xs = [r["dropped"] for r in pts]
            line = ax.plot(xs, [r["server_seconds"] for r in pts], "o-", label=group["label"])[0]
            ax.plot(xs, [r["floor_seconds"] for r in pts], ":", color=line.get_color(),
                    label=f"floor ({group['label']})")
        ax.set_xlabel("clients dropped after ShareKeys")
        ax.set_ylabel("server compute (s)")
        ax.set_title("Cost of recovery vs dropped clients")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        files.append(_save(fig, out / "dropout_recovery.png"))
    return files


def plot_flower(payload: Mapping[str, Any], out: Path) -> list[Path]:
    """Ours vs Flower (log scale): cost vs dropout rate (complete) and vs n (SecAgg+)."""
    plt = _pyplot()
    rows = [r for r in payload.get("rows", [])
            if r.get("kind") == "cost" and r.get("server_speedup") is not None]
    files = []
    complete = [r for r in rows if r["graph"] == "complete"]
    if complete:
        fig, (ax_s, ax_c) = plt.subplots(1, 2, figsize=(11, 4.2))
        for n in sorted({r["n"] for r in complete}):
            pts = sorted((r for r in complete if r["n"] == n), key=lambda r: r["dropout"])
            xs = [r["dropout"] * 100 for r in pts]
            for ax, ours, theirs, scale in (
                (ax_s, "server_seconds", "flower_server_seconds", 1.0),
                (ax_c, "client_seconds_mean", "flower_client_seconds_mean", 1e3),
            ):
                line = ax.plot(xs, [r[ours] * scale for r in pts], "o-", label=f"ours n={n}")[0]
                ax.plot(xs, [r[theirs] * scale for r in pts], "s--", color=line.get_color(),
                        label=f"Flower n={n}")
        for ax, what in ((ax_s, "server compute (s)"), (ax_c, "client compute, mean (ms)")):
            _log_axes(ax, "dropout (%)", what, log_x=False)
            ax.legend(fontsize=7)
        m = sorted({r["m"] for r in complete})
        fig.suptitle(f"SecAgg (complete graph), m = {', '.join(f'{x:,}' for x in m)}: "
                     "ours (solid) vs Flower 1.42 (dashed)")
        files.append(_save(fig, out / "flower_cost_vs_dropout.png"))
    harary = sorted((r for r in rows if r["graph"] == "harary"), key=lambda r: r["n"])
    if harary:
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        ns = [r["n"] for r in harary]
        ax.plot(ns, [r["server_seconds"] for r in harary], "o-", label="ours server")
        ax.plot(ns, [r["flower_server_seconds"] for r in harary], "s--", label="Flower server")
        ax.plot(ns, [r["client_seconds_mean"] for r in harary], "o-", label="ours client (mean)")
        ax.plot(ns, [r["flower_client_seconds_mean"] for r in harary], "s--",
                label="Flower client (mean)")
        _log_axes(ax, "clients n", "compute (s)")
        ax.set_title("SecAgg+ (same k, t), 10% dropout", fontsize=10)
        ax.legend(fontsize=7)
        files.append(_save(fig, out / "flower_harary_vs_n.png"))
    return files


def plot_flower_deployment(payload: Mapping[str, Any], out: Path) -> list[Path]:
    """Deployment engine, ours vs Flower: server wait per stage and round wall (bars)."""
    plt = _pyplot()
    rows = payload.get("rows", [])
    if not rows:
        return []
    stages = ["advertise", "share-keys", "masked-input", "unmask"]
    labels = [*stages, "round"]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        values = [row["stage_seconds"].get(s) or 0.0 for s in stages]
        values.append(row["round_seconds_mean"] or 0.0)
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, values, width, label="ours" if row["impl"] == "secagg" else "Flower 1.42")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("seconds (mean over rounds)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Deployment engine: N = {payload.get('nodes')} SuperNodes, "
                 f"m = {payload.get('dim') or 650}, {payload.get('rounds')} rounds", fontsize=10)
    dim = payload.get("dim") or 650
    return [_save(fig, out / f"flower_deployment_n{payload.get('nodes')}_m{dim}.png")]

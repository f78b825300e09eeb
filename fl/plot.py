"""The accuracy-per-round plot of ``secagg train`` (PNG, matplotlib's Agg renderer).

The figure is drawn on an Agg canvas directly instead of through ``pyplot``:
no global backend switch, no display needed, and nothing leaks into a caller
that uses matplotlib interactively.
"""

from __future__ import annotations

from pathlib import Path

from fl.fedavg import TrainingHistory


def plot_accuracy(history: TrainingHistory, path: Path, *, title: str = "") -> Path:
    """Test accuracy vs round, secure vs plaintext FedAvg; aborted rounds marked."""
    from secagg.extras import require

    FigureCanvasAgg = require("matplotlib.backends.backend_agg", "train",
                              "the accuracy plot").FigureCanvasAgg
    Figure = require("matplotlib.figure", "train", "the accuracy plot").Figure

    rounds = [0] + [r.round for r in history.rounds]
    secure = [history.initial_accuracy] + [r.accuracy_secure for r in history.rounds]
    fig = Figure(figsize=(7.0, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    protocol = "SecAgg+" if history.config.graph == "harary" else "SecAgg"
    # secure: wide hollow rings; plaintext: small filled squares on top, so both
    # stay visible where the curves coincide (they usually do, to 0.1 points)
    ax.plot(rounds, [100 * a for a in secure], "o-", color="tab:blue", lw=3, ms=11,
            mfc="none", mew=2, zorder=2,
            label=f"secure aggregation ({protocol}): {100 * secure[-1]:.1f}%")
    if all(r.accuracy_plaintext is not None for r in history.rounds):
        plain = [history.initial_accuracy] + [
            r.accuracy_plaintext for r in history.rounds if r.accuracy_plaintext is not None
        ]
        ax.plot(rounds, [100 * a for a in plain], "s--", color="tab:orange", lw=1.5, ms=5,
                zorder=3, label=f"plaintext FedAvg, same cohorts: {100 * plain[-1]:.1f}%")
    aborted = [r.round for r in history.rounds if r.aborted]
    for i, r in enumerate(aborted):
        ax.axvline(r, color="tab:red", alpha=0.3, lw=6,
                   label="aborted round (model kept)" if i == 0 else None)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(rounds)
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path

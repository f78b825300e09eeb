"""PNG pictures of the attacks: image grids (originals vs reconstructions) and ROC curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (imported only when a picture is drawn)."""
    from secagg.extras import require

    matplotlib = require("matplotlib", "train", "the attack pictures")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_grid(rows: Sequence[tuple[str, np.ndarray, Sequence[str] | None]], path: Path, *,
               title: str, side: int = 8, per_row: int = 20) -> Path:
    """One band per ``(label, images (k, side²), captions)``; long bands wrap at ``per_row``."""
    plt = _pyplot()
    bands: list[tuple[str, np.ndarray, list[str]]] = []
    for label, imgs, caps in rows:
        captions = list(caps) if caps is not None else [""] * imgs.shape[0]
        for start in range(0, max(imgs.shape[0], 1), per_row):
            bands.append((label if start == 0 else "", imgs[start:start + per_row],
                          captions[start:start + per_row]))
    cols = max(1, min(per_row, max(b[1].shape[0] for b in bands)))
    fig, axes = plt.subplots(len(bands), cols, figsize=(0.8 * cols + 1.6, 0.95 * len(bands) + 0.6),
                             squeeze=False)
    for r, (label, imgs, caps) in enumerate(bands):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < imgs.shape[0]:
                ax.imshow(imgs[c].reshape(side, side), cmap="gray_r", vmin=0.0, vmax=1.0)
                ax.set_xlabel(caps[c], fontsize=6)
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def roc_plot(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], path: Path, *,
             title: str) -> Path:
    """ROC curves on log-log axes (low FPR visible), one per ``(label, fpr, tpr)``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for label, fpr, tpr in curves:
        ax.plot(np.maximum(fpr, 1e-4), np.maximum(tpr, 1e-4), label=label)
    ax.plot([1e-4, 1], [1e-4, 1], "k:", lw=0.8, label="chance")
    ax.axvline(0.01, color="grey", lw=0.6, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

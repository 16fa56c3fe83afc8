"""curves.png: light vs booster GAUC and loss per epoch."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(history: list, path: str | Path) -> None:
    """Plots eval (and validation) GAUC and log loss per tower, and training loss terms, per epoch.

    Args:
        history: ``history.json`` records: ``{"epoch", "train": {...}, "eval": {tower: {...}},
            "validation": {tower: {...}}}`` (eval and validation optional).
        path: the PNG to write.
    """
    fig, (ax_gauc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [r["epoch"] for r in history]
    for split, style in (("eval", "o-"), ("validation", "s:")):
        towers = sorted({t for r in history for t in r.get(split, {})})
        for tower in towers:
            points = [(r["epoch"], r[split][tower]) for r in history if tower in r.get(split, {})]
            ax_gauc.plot([e for e, _ in points], [v["gauc"] for _, v in points], style, label=f"{tower} ({split})")
            ax_loss.plot([e for e, _ in points], [v["logloss"] for _, v in points], style,
                         label=f"{tower} {split} logloss")
    for term in ("light_ce", "booster_ce", "hint"):
        points = [(r["epoch"], r["train"][term]) for r in history if term in r.get("train", {})]
        if points:
            ax_loss.plot([e for e, _ in points], [v for _, v in points], "x--", label=f"train {term}")
    ax_gauc.set(title="GAUC per epoch", xlabel="epoch", ylabel="GAUC")
    ax_loss.set(title="loss per epoch", xlabel="epoch", ylabel="loss")
    for ax in (ax_gauc, ax_loss):
        if epochs:
            ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)

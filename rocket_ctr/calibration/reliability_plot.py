"""reliability_<tower>.png: observed click rate against mean prediction per equal-mass bin."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

FILE_PATTERN = "reliability_{tower}.png"


def plot_reliability(bins: dict, path: str | Path, title: str = "") -> None:
    """One reliability diagram: a point per bin, the diagonal = perfect calibration.

    Args:
        bins: ``{"predicted", "observed", "share"}`` from :func:`rocket_ctr.calibration.measures.reliability_bins`.
        path: the PNG to write.
        title: e.g. the tower, its PCOC and ECE.
    """
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    predicted, observed = bins["predicted"], bins["observed"]
    top = max([*predicted, *observed, 1e-3]) * 1.05
    ax.plot([0, top], [0, top], ":", color="grey", label="calibrated")
    ax.plot(predicted, observed, "o-", label="equal-mass bins")
    ax.set(title=title, xlabel="mean predicted probability", ylabel="observed click rate", xlim=(0, top), ylim=(0, top))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_towers(results: dict, folder: str | Path) -> list[Path]:
    """A diagram per tower of an evaluation result (``rocket_ctr.train.evaluation.evaluate``) into ``folder``.

    Returns:
        The PNG paths written.
    """
    written = []
    for tower, values in results.items():
        if "reliability" not in values:
            continue
        path = Path(folder) / FILE_PATTERN.format(tower=tower)
        plot_reliability(values["reliability"], path,
                         f"{tower}: PCOC {values['pcoc']:.3f}, ECE {values['ece']:.4f}")
        written.append(path)
    return written

"""Figures people would rather look at than read, saved as PNG (written atomically)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: training nodes and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def roc_with_readers(truth, prob, readers, path, title: str = "pCR: model vs readers") -> Path:
    """ROC curve of the model with each reader's operating point.

    Parameters
    ----------
    truth, prob : arrays [n] — pcr (0/1) and the model's P(pCR).
    readers : list of (name, false_positive_rate, true_positive_rate) — a reader's binary call
        as a point; positive = read as complete response.
    """
    from dlm_ml.stats import roc_auc, roc_curve_points

    curve = roc_curve_points(truth, prob)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(curve.fpr, curve.tpr, color="C0", lw=2, label=f"model (AUC {roc_auc(truth, prob):.3f})")
    for i, (name, fpr, tpr) in enumerate(readers):
        ax.plot([fpr], [tpr], marker="o", ms=8, ls="none", color=f"C{i + 1}", label=f"reader {name}")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax.set(xlabel="1 - specificity (viable tumour called complete response)",
           ylabel="sensitivity (pCR called complete response)", xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def patch_montage(patch: np.ndarray, row_labels, col_labels, path, title: str = "") -> Path:
    """Central axial slice of each channel of one lesion: rows = timepoints, columns = modalities.

    ``patch`` is [rows, cols, D, H, W] (normalised intensities).
    """
    rows, cols = patch.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    mid = patch.shape[2] // 2
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(patch[r, c, mid], cmap="gray", vmin=-1.5, vmax=1.5, origin="upper")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(col_labels[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi=80)

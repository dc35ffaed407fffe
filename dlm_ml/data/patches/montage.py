"""A picture of one lesion's patches: timepoints by modalities."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from dlm_ml.utils.figures import save_figure


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

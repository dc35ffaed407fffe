"""A picture of one lesion's patches: timepoints by modalities, with what a reader needs to judge it.

Each panel is the axial central slice of a patch (LPS grid: anterior at the top, the patient's
right on the left of the panel, as radiologists view axial images), shown in the intensity window
the patch was normalised with, stated in source units. The title gives the lesion, its outcome
(pCR, no pCR, or no outcome) and its baseline diameter; a missing image is a panel that says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from dlm_ml.utils.figures import save_figure

#: Source units of each modality's voxels.
MODALITY_UNITS = {"ct": "HU", "adc": "µm²/s"}


def outcome_text(pcr) -> str:
    """``pcr`` 1 / 0 / missing (None, NaN) as the montage states it."""
    if pcr is None or (isinstance(pcr, float) and np.isnan(pcr)):
        return "no outcome"
    return "pCR" if int(pcr) == 1 else "no pCR (viable tumour)"


def source_window(center: float, half_width: float, clip: float) -> tuple[float, float]:
    """The source-unit range that normalised values -clip .. +clip come from
    (``value_norm = clip((value - center) / half_width, -clip, clip)``)."""
    return center - clip * half_width, center + clip * half_width


def patch_montage(patch: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], path, *,
                  present: np.ndarray | None = None, clip: float | Sequence[float] = 1.5,
                  windows: Sequence[tuple[float, float, str]] | None = None, title: str = "",
                  pcr=None, diameter_mm: float | None = None, slice_z_mm: float | None = None) -> Path:
    """Write the montage of one lesion to ``path`` (PNG) and return the path.

    ``patch`` is [rows, cols, D, H, W], normalised intensities (rows = timepoints, columns =
    modalities; D is the z axis, so a slice of D is axial). ``present`` [rows, cols] says which
    images exist (default: every panel not entirely NaN); a missing one is drawn as a grey panel
    labelled "missing". Panels are displayed over the normalised range -``clip`` .. ``clip`` (one
    value, or one per column); ``windows`` gives, per column, that range in source units
    ``(low, high, unit)``. ``pcr`` (1, 0,
    or None for no outcome), ``diameter_mm`` (baseline) and ``slice_z_mm`` (the z of the central
    slice, LPS mm) are written in the title when given.
    """
    rows, cols = patch.shape[:2]
    if present is None:
        present = ~np.all(np.isnan(patch.reshape(rows, cols, -1)), axis=2)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows + 0.8), squeeze=False, layout="constrained")
    clips = np.broadcast_to(np.asarray(clip, dtype=float), (cols,))
    mid = patch.shape[2] // 2
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            if present[r, c]:
                ax.imshow(patch[r, c, mid], cmap="gray", vmin=-clips[c], vmax=clips[c], origin="upper")
            else:
                ax.set_facecolor("0.8")
                ax.text(0.5, 0.5, "missing", ha="center", va="center", fontsize=10, transform=ax.transAxes)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                label = str(col_labels[c])
                if windows is not None:
                    low, high, unit = windows[c]
                    label += f"\nwindow {low:g} to {high:g} {unit}".rstrip()
                ax.set_title(label, fontsize=8)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=9)
    plane = "axial, central slice" + (f" z = {slice_z_mm:.1f} mm" if slice_z_mm is not None else "")
    facts = [outcome_text(pcr)]
    if diameter_mm is not None and np.isfinite(diameter_mm):
        facts.append(f"baseline diameter {diameter_mm:.1f} mm")
    heading = "\n".join(part for part in (title, "; ".join(facts), plane) if part)
    fig.suptitle(heading, fontsize=9)
    return save_figure(fig, path, dpi=80)

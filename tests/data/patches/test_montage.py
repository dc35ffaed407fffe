"""Lesion montages: outcome, size, windows, plane and missing images stated on the picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dlm_ml.data.patches import PatchConfig, patch_grid
from dlm_ml.data.patches import montage as montage_module
from dlm_ml.data.patches.export import central_slice_z_mm, montage_windows

PNG = b"\x89PNG\r\n\x1a\n"


def _montage_texts(monkeypatch, tmp_path, **kwargs) -> tuple[str, list[str], list[str]]:
    """Title, column titles and panel texts of a 2 x 2 montage drawn with ``kwargs``."""
    figures = []
    monkeypatch.setattr(montage_module, "save_figure", lambda fig, path, dpi: figures.append(fig) or Path(path))
    patch = np.zeros((2, 2, 4, 4, 4), np.float32)
    montage_module.patch_montage(patch, ["baseline", "presurgery"], ["ct", "adc"], tmp_path / "m.png", **kwargs)
    fig = figures[0]
    axes = fig.axes
    return (fig._suptitle.get_text(), [ax.get_title() for ax in axes],
            [t.get_text() for ax in axes for t in ax.texts])


def test_montage_states_outcome_size_windows_plane_and_missing_images(monkeypatch, tmp_path):
    config = PatchConfig()
    windows = montage_windows(config)
    assert windows == [(-240.0, 360.0, "HU"), (0.0, 2400.0, "µm²/s")]  # centre ± clip × half-width
    present = np.array([[True, True], [True, False]])
    title, columns, panels = _montage_texts(monkeypatch, tmp_path, present=present, windows=windows, pcr=1,
                                            diameter_mm=12.0, slice_z_mm=-31.0, title="patient P1, lesion L1")
    assert "patient P1, lesion L1" in title and "pCR" in title and "baseline diameter 12.0 mm" in title
    assert "axial, central slice z = -31.0 mm" in title
    assert "window -240 to 360 HU" in columns[0] and "window 0 to 2400 µm²/s" in columns[1]
    assert panels == ["missing"]  # the presurgery ADC only
    title, _, panels = _montage_texts(monkeypatch, tmp_path, pcr=0)
    assert "no pCR" in title and panels == []
    title, _, _ = _montage_texts(monkeypatch, tmp_path, pcr=float("nan"))
    assert "no outcome" in title


@pytest.mark.parametrize("size", [11, 12])
def test_montage_slice_position_is_the_shown_slice_of_the_patch_grid(size):
    grid = patch_grid((1.0, 2.0, -30.0), size, 2.0)
    shown = grid.TransformIndexToPhysicalPoint((0, 0, size // 2))[2]
    assert central_slice_z_mm(-30.0, size, 2.0) == pytest.approx(shown)

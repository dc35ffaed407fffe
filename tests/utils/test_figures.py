"""save_figure writes a PNG atomically and closes the figure."""

from __future__ import annotations

import matplotlib.pyplot as plt

from dlm_ml.utils.figures import save_figure


def test_png_written_without_leftovers(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    path = save_figure(fig, tmp_path / "qa" / "roc.png", dpi=40)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["roc.png"]
    assert not plt.fignum_exists(fig.number)

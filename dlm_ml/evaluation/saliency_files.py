"""Write one lesion's saliency maps so a radiologist can overlay them on the source images.

Under ``out_dir/<patient_id>/<lesion_id>/``:

- ``image_<channel>.nii.gz``: the patch the networks saw (normalised intensities, not source
  units), one per present channel;
- ``<method>_<channel>.nii.gz``: a per-image map (occlusion; Grad-CAM of a shared-encoder network),
  one per present channel; ``<method>.nii.gz``: a map that is one for the whole lesion (Grad-CAM of
  a stacked-channel CNN, :attr:`~dlm_ml.models.saliency.LesionSaliency.lesion_level`);
- ``montage.png``: rows = channels, columns = the image and the image under each map, axial
  central slice.

Absent channels get no files. Every NIfTI file carries the patch grid's physical geometry
(:func:`dlm_ml.data.patches.patch_grid`: origin, 2 mm spacing, LPS axes), so it lies on the source
image in 3D Slicer or ITK-SNAP; arrays are [D, H, W] = (z, y, x), as SimpleITK's
``GetArrayFromImage`` returns them and as the patches were extracted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: prediction nodes have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from dlm_ml.data.imaging.imageio import write_image  # noqa: E402
from dlm_ml.data.patches import patch_grid  # noqa: E402
from dlm_ml.data.patches.export import central_slice_z_mm  # noqa: E402
from dlm_ml.data.patches.montage import outcome_text  # noqa: E402
from dlm_ml.models.saliency import METHODS, LesionSaliency  # noqa: E402
from dlm_ml.utils.figures import save_figure  # noqa: E402
from dlm_ml.utils.paths import safe_component  # noqa: E402

#: Column headings of the montage and the colour bar labels, per method.
METHOD_LABELS = {"gradcam": ("Grad-CAM", "Grad-CAM toward pCR (0-1)"),
                 "occlusion": ("occlusion", "drop in P(pCR) when hidden (red: supports pCR)")}


def _grid_image(array: np.ndarray, grid: sitk.Image) -> sitk.Image:
    """[D, H, W] array on the patch grid's geometry."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    image.CopyInformation(grid)
    return image


def _window_text(channel: str, windows: Mapping[str, str]) -> str:
    """The window of the channel's modality (``<timepoint>_<modality>``), or ''."""
    for modality, text in windows.items():
        if channel == modality or channel.endswith(f"_{modality}"):
            return str(text)
    return ""


def write_lesion_saliency(out_dir: str | Path, patient_id: str, lesion_id: str, image: np.ndarray,
                          present: np.ndarray, saliency: LesionSaliency, channel_names: Sequence[str],
                          centre_mm: tuple[float, float, float], spacing_mm: float, *, pcr: float | None,
                          prob_pcr: float, windows: Mapping[str, str], display_clip: float = 1.5) -> list[Path]:
    """Write a lesion's patch, saliency maps and montage; return the paths written.

    image : float32 [C, D, H, W], the normalised patch (cubic: D = H = W).
    present : bool [C]. saliency : the lesion's maps (:func:`dlm_ml.models.saliency.lesion_saliency`).
    channel_names : C names, ``<timepoint>_<modality>``. centre_mm : the lesion centre (LPS, mm),
    the patch's centre. spacing_mm : the patch grid's spacing.
    pcr : the outcome (1, 0, None/NaN: unknown). prob_pcr : the prediction shown in the title.
    windows : modality → the intensity window as text (e.g. ``{"ct": "CT 60 ± 200 HU"}``).
    display_clip : the montage shows normalised intensities -display_clip .. display_clip (the
    normalisation's clip, so the window text describes what is shown).
    """
    image = np.asarray(image, dtype=np.float32)
    present = np.asarray(present, dtype=bool)
    names = [safe_component(name, "channel name") for name in channel_names]
    if image.ndim != 4 or len(set(image.shape[1:])) != 1 or present.shape != image.shape[:1] \
            or len(names) != image.shape[0]:
        raise ValueError(f"patient {patient_id!r}, lesion {lesion_id!r}: expected a cubic patch [C, D, D, D], "
                         f"present [C] and C channel names; got {image.shape}, {present.shape}, {len(names)} names")
    if tuple(saliency.channel_names) != tuple(names):
        raise ValueError(f"patient {patient_id!r}, lesion {lesion_id!r}: the maps are of channels "
                         f"{list(saliency.channel_names)}, the patch of {names}")
    for method, array in saliency.maps.items():
        if array.shape != image.shape:
            raise ValueError(f"patient {patient_id!r}, lesion {lesion_id!r}: {method} map {array.shape}, "
                             f"patch {image.shape}")
    out_dir = Path(out_dir)
    lesion_dir = out_dir / safe_component(patient_id, "patient id") / safe_component(lesion_id, "lesion id")
    grid = patch_grid(tuple(float(c) for c in centre_mm), image.shape[1], float(spacing_mm))
    index = np.flatnonzero(present)
    written: list[Path] = []

    def write(array: np.ndarray, name: str) -> None:
        path = lesion_dir / f"{name}.nii.gz"
        write_image(_grid_image(array, grid), path)
        written.append(path)

    for c in index:
        write(image[c], f"image_{names[c]}")
    methods = [m for m in METHODS if m in saliency.maps] + [m for m in saliency.maps if m not in METHODS]
    for method in methods:
        safe_component(method, "saliency method")
        if method in saliency.lesion_level and index.size:
            write(saliency.maps[method][index[0]], method)
            continue
        for c in index:
            write(saliency.maps[method][c], f"{method}_{names[c]}")
    title = (f"patient {patient_id}, lesion {lesion_id}\n{outcome_text(pcr)}; P(pCR) = {prob_pcr:.2f}\n"
             f"axial, central slice z = {central_slice_z_mm(float(centre_mm[2]), image.shape[1], spacing_mm):.1f} mm"
             " (anterior up, patient's right on the left)")
    written.append(saliency_montage(image, present, saliency, names, lesion_dir / "montage.png", title=title,
                                    windows=windows, display_clip=display_clip, methods=methods))
    return written


def saliency_montage(image: np.ndarray, present: np.ndarray, saliency: LesionSaliency, channel_names: Sequence[str],
                     path: Path, *, title: str, windows: Mapping[str, str], display_clip: float,
                     methods: Sequence[str]) -> Path:
    """PNG: a row per channel (its window in the row label), columns = the image, then the image
    under each method's map (Grad-CAM 0-1; occlusion on a diverging scale symmetric about 0),
    on the axial central slice ``D // 2`` shown as radiologists view axial images (LPS array rows
    run anterior → posterior, columns right → left)."""
    rows, cols = image.shape[0], 1 + len(methods)
    mid = image.shape[1] // 2
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.3 * rows + 1.6), squeeze=False,
                             layout="constrained")
    scales = {}
    for method in methods:
        values = saliency.maps[method][present]
        peak = float(np.nanmax(np.abs(values))) if values.size and np.isfinite(values).any() else 0.0
        scales[method] = (0.0, 1.0, "inferno") if method == "gradcam" else (-max(peak, 1e-6), max(peak, 1e-6),
                                                                            "RdBu_r")
    overlays = {}
    for r in range(rows):
        for col in range(cols):
            ax = axes[r, col]
            ax.set_xticks([]), ax.set_yticks([])
            if not present[r]:
                ax.set_facecolor("0.8")
                ax.text(0.5, 0.5, "missing", ha="center", va="center", fontsize=9, transform=ax.transAxes)
            else:
                ax.imshow(image[r, mid], cmap="gray", vmin=-display_clip, vmax=display_clip, origin="upper")
                if col:
                    method = methods[col - 1]
                    low, high, cmap = scales[method]
                    overlays[method] = ax.imshow(saliency.maps[method][r, mid], cmap=cmap, vmin=low, vmax=high,
                                                 alpha=0.5, origin="upper")
            if r == 0:
                ax.set_title("image" if col == 0 else METHOD_LABELS.get(methods[col - 1], (methods[col - 1],))[0],
                             fontsize=9)
            if col == 0:
                window = _window_text(channel_names[r], windows)
                ax.set_ylabel(channel_names[r] + (f"\n{window}" if window else ""), fontsize=8)
    for col, method in enumerate(methods, start=1):
        if method in overlays:
            bar = fig.colorbar(overlays[method], ax=axes[:, col], location="bottom", shrink=0.9)
            bar.set_label(METHOD_LABELS.get(method, (method, method))[1], fontsize=7)
            bar.ax.tick_params(labelsize=7)
            bar.ax.locator_params(nbins=5)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi=80)

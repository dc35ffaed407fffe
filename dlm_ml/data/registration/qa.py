"""Quality-assurance pictures of registrations: what a reader checks before trusting patches.

Per patient and registered image, a checkerboard of the image (through its composed
transform) against the baseline CT on axial planes through the lesions, before and after
registration; per lesion, a montage of the lesion across timepoints and modalities, each
sampled through its image's transform, a cross at the lesion's baseline position. A
disappeared lesion leaves nothing to see at presurgery: the anatomy around the cross is
what shows whether it is in the right place.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from dlm_ml.data.cohort import schema  # noqa: E402
from dlm_ml.data.imaging.imageio import read_image  # noqa: E402
from dlm_ml.data.registration.cohort import read_transform  # noqa: E402
from dlm_ml.utils.figures import save_figure  # noqa: E402
from dlm_ml.utils.parallel import parallel_map  # noqa: E402
from dlm_ml.utils.paths import confined_path  # noqa: E402

# Display windows: CT soft tissue (HU), ADC (µm²/s).
WINDOWS = {"ct": (-160.0, 240.0), "adc": (0.0, 2500.0)}
PAD = {"ct": -1000.0, "adc": 0.0}


def axial_plane(image: sitk.Image, centre_mm, transform: sitk.Transform | None, modality: str,
                size_mm: float = 120.0, spacing_mm: float = 1.0) -> np.ndarray:
    """Axial plane (LPS rows = y, columns = x) of ``size_mm`` through ``centre_mm`` (baseline CT
    space), sampled from ``image`` through ``transform`` in one interpolation, scaled to [0, 1]
    by the modality's window. Shape (n, n), n = size_mm / spacing_mm."""
    n = int(round(size_mm / spacing_mm))
    ref = sitk.Image([n, n, 1], sitk.sitkFloat32)
    ref.SetSpacing([spacing_mm] * 3)
    half = (n - 1) / 2 * spacing_mm
    ref.SetOrigin((centre_mm[0] - half, centre_mm[1] - half, centre_mm[2]))
    plane = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), ref, transform or sitk.Transform(), sitk.sitkLinear,
                          PAD[modality], sitk.sitkFloat32)
    lo, hi = WINDOWS[modality]
    return np.clip((sitk.GetArrayFromImage(plane)[0] - lo) / (hi - lo), 0, 1)


def checkerboard(a: np.ndarray, b: np.ndarray, squares: int = 6) -> np.ndarray:
    """``a`` on the white squares, ``b`` on the black ones (2-D arrays of equal shape)."""
    n = a.shape[0]
    idx = (np.arange(n) * squares // n)
    board = (idx[:, None] + idx[None, :]) % 2 == 0
    return np.where(board, a, b)


def _cross(ax, n: int) -> None:
    c = (n - 1) / 2
    ax.plot([c - 8, c - 3], [c, c], "r-", lw=1)
    ax.plot([c + 3, c + 8], [c, c], "r-", lw=1)
    ax.plot([c, c], [c - 8, c - 3], "r-", lw=1)
    ax.plot([c, c], [c + 3, c + 8], "r-", lw=1)


def checkerboard_figure(patient_id: str, timepoint: str, modality: str, baseline_ct: sitk.Image, image: sitk.Image,
                        transform: sitk.Transform, lesions: list[tuple[str, tuple[float, float, float]]], path,
                        flag: str = "", max_lesions: int = 4) -> Path:
    """One row per lesion (up to ``max_lesions``): the image without registration and after it,
    each as a checkerboard against the baseline CT on the axial plane through the lesion."""
    rows = lesions[:max_lesions]
    fig, axes = plt.subplots(len(rows), 2, figsize=(6.4, 3.2 * len(rows)), squeeze=False)
    for r, (lesion_id, centre) in enumerate(rows):
        base = axial_plane(baseline_ct, centre, None, "ct")
        for c, (label, tx) in enumerate((("without registration", None), ("registered", transform))):
            ax = axes[r, c]
            ax.imshow(checkerboard(base, axial_plane(image, centre, tx, modality)), cmap="gray", vmin=0, vmax=1)
            _cross(ax, base.shape[0])
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"lesion {lesion_id}\nz = {centre[2]:.0f} mm", fontsize=8)
    title = f"patient {patient_id}: {timepoint} {modality.upper()} vs baseline CT"
    fig.suptitle(title + (f"\nFLAGGED: {flag}" if flag else ""), fontsize=9, color="red" if flag else "black")
    return save_figure(fig, path, dpi=80)


def lesion_montage_figure(patient_id: str, lesion_id: str, centre, images: dict, transforms: dict,
                          timepoints, modalities, path, size_mm: float = 60.0) -> Path:
    """Rows = timepoints, columns = modalities: the axial plane through the lesion's baseline
    position in each image (through its transform); blank where the image is missing."""
    fig, axes = plt.subplots(len(timepoints), len(modalities), figsize=(2.4 * len(modalities), 2.4 * len(timepoints)),
                             squeeze=False)
    for r, tp in enumerate(timepoints):
        for c, mod in enumerate(modalities):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if (tp, mod) in images:
                plane = axial_plane(images[(tp, mod)], centre, transforms.get((tp, mod)), mod, size_mm, 0.5)
                ax.imshow(plane, cmap="gray", vmin=0, vmax=1)
                _cross(ax, plane.shape[0])
            else:
                ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            if r == 0:
                ax.set_title(mod.upper(), fontsize=9)
            if c == 0:
                ax.set_ylabel(tp, fontsize=9)
    fig.suptitle(f"patient {patient_id}, lesion {lesion_id}", fontsize=9)
    return save_figure(fig, path, dpi=80)


def _patient_qa(args) -> list[str]:
    patient_id, image_paths, rows, lesions, timepoints, modalities, out_dir = args
    out = confined_path(out_dir, patient_id, about=f"patient {patient_id}")
    images = {k: read_image(p) for k, p in image_paths.items()}
    transforms = {(r["timepoint"], r["modality"]): read_transform(r["transform_path"]) for r in rows}
    base = images[(schema.REFERENCE_TIMEPOINT, schema.REFERENCE_MODALITY)]
    written = []
    for r in rows:
        key = (r["timepoint"], r["modality"])
        written.append(str(checkerboard_figure(patient_id, *key, base, images[key], transforms[key], lesions,
                                               confined_path(out, f"checkerboard_{key[0]}_{key[1]}.png",
                                                             about=f"patient {patient_id}"),
                                               flag=r["reasons"] if r["flagged"] else "")))
    for lesion_id, centre in lesions:
        written.append(str(lesion_montage_figure(patient_id, lesion_id, centre, images, transforms, timepoints,
                                                 modalities, confined_path(
                                                     out, f"lesion_{lesion_id}.png",
                                                     about=f"patient {patient_id}, lesion {lesion_id}"))))
    return written


def write_registration_qa(cohort, registration, out_dir, *, timepoints=None, modalities=None, patients=None,
                          workers: int = 1, progress: bool = True) -> list[Path]:
    """Write the QA pictures of ``registration`` (a RegistrationSet) under ``out_dir/<patient>/``:
    ``checkerboard_<timepoint>_<modality>.png`` per registered image and ``lesion_<id>.png`` per
    lesion. ``patients`` limits them (default: every registered patient). Returns the files."""
    timepoints = list(timepoints or cohort.timepoints)
    modalities = list(modalities or cohort.modalities)
    table = registration.table
    ids = sorted(table["patient_id"].unique()) if patients is None else list(patients)
    jobs = []
    for pid in ids:
        image_paths = {}
        for tp in timepoints:
            for mod in modalities:
                p = cohort.image_path(pid, tp, mod)
                if p is not None:
                    image_paths[(tp, mod)] = str(p)
        if (schema.REFERENCE_TIMEPOINT, schema.REFERENCE_MODALITY) not in image_paths:
            continue
        rows = [r for r in table[table["patient_id"] == pid].to_dict("records")
                if (r["timepoint"], r["modality"]) in image_paths]
        pl = cohort.lesions[cohort.lesions["patient_id"] == pid]
        lesions = [(str(r.lesion_id), (float(r.x_mm), float(r.y_mm), float(r.z_mm))) for r in pl.itertuples()]
        jobs.append((pid, image_paths, rows, lesions, timepoints, modalities, str(out_dir)))
    per_patient = parallel_map(_patient_qa, jobs, workers=workers, desc="registration QA", unit="patient",
                               progress=progress)
    return sorted(Path(p) for files in per_patient for p in files)

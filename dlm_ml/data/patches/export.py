"""Export a patch set for inspection: every patch as NIfTI in source units, a montage per lesion.

The NIfTI patches carry the patch grid's physical geometry (LPS, mm), so they overlay on the
source images in 3D Slicer or ITK-SNAP. They are sampled again from the source images through
the registration the patch set was built with, in source units (HU, µm²/s), not normalised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlm_ml.data.cohort import Cohort
from dlm_ml.data.imaging.imageio import read_image, write_image
from dlm_ml.data.patches.extract import PatchConfig, PatchSet, resample_patch
from dlm_ml.data.patches.montage import MODALITY_UNITS, patch_montage, source_window
from dlm_ml.data.registration.cohort import read_transform
from dlm_ml.utils.paths import confined_path
from dlm_ml.utils.progress import progress_bar


def montage_windows(config: PatchConfig) -> list[tuple[float, float, str]]:
    """Per modality of ``config``: the source-unit window the montage shows, ``(low, high, unit)``."""
    windows = []
    for m in config.modalities:
        norm = config.normaliser(m)
        windows.append((*source_window(norm.center, norm.half_width, norm.clip), MODALITY_UNITS.get(m, "")))
    return windows


def central_slice_z_mm(centre_z_mm: float, size_voxels: int, spacing_mm: float) -> float:
    """z (LPS, mm) of slice ``size_voxels // 2`` of a patch grid centred on ``centre_z_mm``
    (:func:`~dlm_ml.data.patches.patch_grid`), the slice a montage shows."""
    return centre_z_mm + (size_voxels // 2 - (size_voxels - 1) / 2.0) * spacing_mm


def export_patches(cohort: Cohort, patches: PatchSet, config: PatchConfig, export_dir: str | Path,
                   progress: bool = True) -> int:
    """Write ``export_dir/<patient>/<lesion>/<timepoint>_<modality>.nii.gz`` for every image of
    every lesion of ``patches`` and one ``export_dir/<patient>_<lesion>.png`` montage per lesion
    (rows = timepoints, columns = modalities; outcome, baseline diameter, windows, slice position).
    Returns the number of files written."""
    export_dir = Path(export_dir)
    lesions = cohort.labelled_lesions().set_index(["patient_id", "lesion_id"])
    by_patient = patches.lesions.groupby("patient_id", sort=True)
    n_written = 0
    for patient_id, group in progress_bar(by_patient, enabled=progress, total=by_patient.ngroups,
                                          desc="export", unit="patient"):
        n_written += _export_patient(cohort, patches, config, export_dir, lesions.loc[patient_id], str(patient_id),
                                     group)
    return n_written


def _export_patient(cohort: Cohort, patches: PatchSet, config: PatchConfig, export_dir: Path, lesions,
                    patient_id: str, group) -> int:
    """One patient's NIfTI patches and montages; ``group`` holds its rows of ``patches.lesions``."""
    regs = patches.registration
    images, transforms = {}, {}
    for t, m in config.channels:
        path = cohort.image_path(patient_id, t, m)
        if path is not None:
            images[(t, m)] = read_image(path)
            tfm = regs.transform_path(patient_id, t, m) if regs is not None else None
            transforms[(t, m)] = read_transform(tfm) if tfm else None
    shape = (len(config.timepoints), len(config.modalities))
    windows = montage_windows(config)
    clips = [config.normaliser(m).clip for m in config.modalities]
    n_written = 0
    for row_index, lesion in group.iterrows():
        facts = lesions.loc[lesion.lesion_id]
        centre = tuple(float(facts[k]) for k in ("x_mm", "y_mm", "z_mm"))
        # ids and modality names become file names: refused, naming them, if one would leave export_dir
        about = f"patient {patient_id}, lesion {lesion.lesion_id}"
        lesion_dir = confined_path(export_dir, patient_id, lesion.lesion_id, about=about)
        montage_path = confined_path(export_dir, f"{patient_id}_{lesion.lesion_id}.png", about=about)
        for (t, m), image in images.items():
            patch = resample_patch(image, centre, config.size_voxels, config.spacing_mm,
                                   config.normaliser(m).pad_value, transforms[(t, m)])
            write_image(patch, confined_path(lesion_dir, f"{t}_{m}.nii.gz", about=about))
            n_written += 1
        grid = patches.image[row_index].reshape(*shape, *patches.image.shape[2:])
        present = patches.present[row_index].reshape(shape)
        patch_montage(np.where(present[:, :, None, None, None], grid, np.nan), list(config.timepoints),
                      list(config.modalities), montage_path,
                      present=present, clip=clips, windows=windows,
                      title=f"patient {patient_id}, lesion {lesion.lesion_id}", pcr=facts.get("pcr"),
                      diameter_mm=float(facts["diameter_mm"]),
                      slice_z_mm=central_slice_z_mm(centre[2], config.size_voxels, config.spacing_mm))
        n_written += 1
    return n_written

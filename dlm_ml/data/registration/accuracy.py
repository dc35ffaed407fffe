"""Registration accuracy against a known truth: target registration error (TRE) at the lesion
centres, and cohorts whose images are moved by a known rigid motion.

The truth is a cohort's ``truth/lesion_positions.csv`` (each lesion centre in each image's own
physical space, mm), which the synthetic generator writes. :func:`move_images` adds a further
rigid motion of chosen size to some images of such a cohort and updates that table, so a
motion the generator does not draw (e.g. a patient lying differently while the scanner's field
of view stays where it was) can be measured. Used by ``benchmarks/registration_tre.py`` and the
tests; nothing in the pipeline reads the truth.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from dlm_ml.data.cohort import schema
from dlm_ml.data.registration.cohort import read_transform

POSITIONS_CSV = "lesion_positions.csv"
# Value of voxels the moved image has no data for: air (HU), no signal (µm²/s).
BACKGROUND = {"ct": -1000.0, "adc": 0.0}


def _positions(root: Path) -> dict:
    path = Path(root) / schema.TRUTH_DIR / POSITIONS_CSV
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no true lesion positions (a synthetic cohort writes them)")
    lp = pd.read_csv(path, dtype={"patient_id": str, "lesion_id": str})
    return {k: g.set_index("lesion_id")[["x_mm", "y_mm", "z_mm"]].astype(float)
            for k, g in lp.groupby(["patient_id", "timepoint", "modality"])}


def tre_table(cohort, regs) -> pd.DataFrame:
    """TRE per (registered image, lesion), mm, against ``cohort``'s truth.

    Columns: patient_id, lesion_id, timepoint, modality, fixed, flagged, reasons, and
    ``composed_before/after`` (baseline CT → image, without / with registration),
    ``direct_before/after`` (the image's own registration against its fixed image). "Before"
    is each image used in its own physical space."""
    truth = _positions(cohort.root)
    rows = []
    for r in regs.table.itertuples():
        pid = r.patient_id
        q = truth[(pid, schema.REFERENCE_TIMEPOINT, schema.REFERENCE_MODALITY)]
        p = truth[(pid, r.timepoint, r.modality)]
        composed = read_transform(r.transform_path)
        fixed_tp, fixed_mod = r.fixed.split("/")
        f = truth[(pid, fixed_tp, fixed_mod)]
        direct = read_transform(r.pair_transform_path)
        for lid in p.index:
            qb, pt, fp = q.loc[lid].to_numpy(), p.loc[lid].to_numpy(), f.loc[lid].to_numpy()
            rows.append({
                "patient_id": pid, "lesion_id": lid, "timepoint": r.timepoint, "modality": r.modality,
                "fixed": r.fixed, "flagged": bool(r.flagged), "reasons": r.reasons,
                "composed_before": float(np.linalg.norm(qb - pt)),
                "composed_after": float(np.linalg.norm(np.array(composed.TransformPoint(tuple(qb))) - pt)),
                "direct_before": float(np.linalg.norm(fp - pt)),
                "direct_after": float(np.linalg.norm(np.array(direct.TransformPoint(tuple(fp))) - pt)),
            })
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class RigidMotion:
    """A patient's rigid motion in the scanner: rotations (degrees, about the x, y, z axes of
    physical space, ITK Euler order) about ``centre_mm`` (``None``: the moved image's centre),
    then a shift (mm)."""

    rotation_deg: tuple[float, float, float]
    shift_mm: tuple[float, float, float]
    centre_mm: tuple[float, float, float] | None = None

    def anatomy_to_scanner(self, centre) -> sitk.Euler3DTransform:
        """Where a point of the anatomy lies after the motion (physical mm → physical mm)."""
        tx = sitk.Euler3DTransform()
        tx.SetCenter(tuple(float(v) for v in centre))
        tx.SetRotation(*(float(np.radians(a)) for a in self.rotation_deg))
        tx.SetTranslation(tuple(float(v) for v in self.shift_mm))
        return tx


def image_centre(image: sitk.Image) -> np.ndarray:
    return np.array(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()]))


def inner_grid(image: sitk.Image, margin_mm: float) -> sitk.Image:
    """``image``'s grid with ``margin_mm`` taken off every side (same spacing, direction and
    voxel positions); ``image`` itself for a margin of 0."""
    if margin_mm <= 0:
        return image
    spacing, size = np.array(image.GetSpacing()), np.array(image.GetSize())
    cut = np.ceil(margin_mm / spacing).astype(int)
    if np.any(size - 2 * cut < 2):
        raise ValueError(f"a margin of {margin_mm} mm leaves nothing of a {tuple(size)} image "
                         f"(spacing {tuple(spacing)} mm)")
    return sitk.RegionOfInterest(image, [int(v) for v in size - 2 * cut], [int(v) for v in cut])


def move_image(image: sitk.Image, motion: RigidMotion | None, modality: str, centre=None,
               margin_mm: float = 30.0) -> tuple[sitk.Image, sitk.Transform]:
    """What a scanner whose field of view is ``image``'s less ``margin_mm`` on every side sees
    after the patient moved by ``motion`` (``None``: did not move): ``image`` resampled
    (linear) through the motion onto that inner grid. The field of view stays where it was,
    so the anatomy slides and turns through it; the margin supplies what comes into view, and
    a motion that would need more than the margin is refused. With ``margin_mm=0`` the image
    keeps its grid and what moves out of the original field of view is filled with the
    modality's background (air, no signal), as a series resampled onto a fixed grid holds: the
    body is then cut by flat walls of background it never had. Returns the image and the
    anatomy → scanner transform (a lesion at p in ``image`` lies at ``transform(p)``)."""
    grid = inner_grid(image, margin_mm)
    if motion is None:
        return grid, sitk.Euler3DTransform()
    forward = motion.anatomy_to_scanner(image_centre(image) if centre is None else centre)
    inverse = forward.GetInverse()  # resampling pulls: scanner point -> where it was in the anatomy
    ones = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(image)
    covered = sitk.GetArrayFromImage(sitk.Resample(ones, grid, inverse, sitk.sitkNearestNeighbor, 0))
    if margin_mm > 0 and covered.mean() < 1:
        raise ValueError(f"motion {motion} moves {1 - covered.mean():.1%} of the field of view beyond the "
                         f"{margin_mm} mm margin of a {image.GetSize()} image: generate a wider one")
    moved = sitk.Resample(image, grid, inverse, sitk.sitkLinear, BACKGROUND[modality], image.GetPixelID())
    return moved, sitk.Euler3DTransform(forward)


def move_images(src: str | Path, dst: str | Path, motions: dict[str, RigidMotion],
                timepoints: tuple[str, ...] = ("presurgery",), margin_mm: float = 30.0) -> Path:
    """A copy of the cohort ``src`` at ``dst`` in which every image has lost ``margin_mm`` of its
    field of view on every side, and every image of ``timepoints`` of each patient in
    ``motions`` shows the anatomy after that patient's motion (:func:`move_image`; about the
    centre of the patient's CT of the visit, so the visit's CT and ADC move together).
    ``truth/lesion_positions.csv`` holds the lesions' new positions. Generate ``src`` with
    fields of view ``2 * margin_mm`` wider than wanted."""
    src, dst = Path(src), Path(dst)
    shutil.copytree(src, dst)
    images = pd.read_csv(dst / schema.IMAGES_CSV, dtype={"patient_id": str})
    unknown = sorted(set(motions) - set(images.patient_id))
    if unknown:
        raise ValueError(f"patients {unknown} of the motions are not in {src / schema.IMAGES_CSV}")
    positions_path = dst / schema.TRUTH_DIR / POSITIONS_CSV
    positions = pd.read_csv(positions_path, dtype={"patient_id": str, "lesion_id": str})
    for r in images.itertuples():
        motion = motions.get(r.patient_id) if r.timepoint in timepoints else None
        centre = None if motion is None else motion.centre_mm
        if motion is not None and centre is None:
            ct = images[(images.patient_id == r.patient_id) & (images.timepoint == r.timepoint)
                        & (images.modality == schema.REFERENCE_MODALITY)]
            if len(ct):
                centre = image_centre(sitk.ReadImage(str(src / ct.path.iloc[0])))
        path = dst / r.path
        moved, forward = move_image(sitk.ReadImage(str(src / r.path)), motion, r.modality, centre, margin_mm)
        sitk.WriteImage(moved, str(path))
        at = ((positions.patient_id == r.patient_id) & (positions.timepoint == r.timepoint)
              & (positions.modality == r.modality))
        xyz = positions.loc[at, ["x_mm", "y_mm", "z_mm"]].to_numpy(float)
        positions.loc[at, ["x_mm", "y_mm", "z_mm"]] = [forward.TransformPoint(tuple(p)) for p in xyz]
    positions.to_csv(positions_path, index=False)
    return dst

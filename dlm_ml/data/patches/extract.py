"""Crop lesion patches from every (timepoint, modality) image, with an on-disk cache.

Each patch is one resampling from the source image onto a fixed isotropic grid
centred on the lesion's baseline position (physical LPS, mm). The grid's axes are
the LPS axes, so patches of one lesion line up across timepoints and modalities
whatever each source image's spacing, origin or direction. With a registration
config, every image except the baseline CT is sampled through its composed
transform into baseline CT space (:mod:`dlm_ml.data.registration`): still one
interpolation from the source voxels, never a resampled copy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from dlm_ml.data.cohort import Cohort, schema
from dlm_ml.data.cohort.fingerprint import cohort_fingerprint
from dlm_ml.data.imaging.imageio import read_image
from dlm_ml.data.imaging.integrity import ImageIntegrityError
from dlm_ml.data.registration.cohort import read_transform, register_cohort
from dlm_ml.utils.atomic import atomic_path, atomic_write_json
from dlm_ml.utils.hashing import payload_digest
from dlm_ml.utils.parallel import parallel_map
from dlm_ml.utils.timing import stage

# Bump when the extraction algorithm changes, so old caches are never reused.
PATCH_ALGORITHM_VERSION = 2


@dataclass(frozen=True)
class Normalisation:
    """Map source intensities to roughly [-1, 1].

    ``value_norm = clip((value - center) / half_width, -clip, clip)``. CT uses a soft-tissue
    window in HU; ADC is centred near liver ADC in µm²/s.
    """

    center: float
    half_width: float
    clip: float = 1.5
    pad_value: float = 0.0  # source-unit value beyond the image's field of view

    def apply(self, values: np.ndarray) -> np.ndarray:
        return np.clip((values - self.center) / self.half_width, -self.clip, self.clip).astype(np.float32)


DEFAULT_NORMALISATION = {
    "ct": Normalisation(center=60.0, half_width=200.0, pad_value=-1000.0),
    "adc": Normalisation(center=1200.0, half_width=800.0, pad_value=0.0),
}


def patch_voxels(patch_size_mm: float, spacing_mm: float) -> int:
    """Voxels per edge of a cubic patch of ``patch_size_mm`` sampled every ``spacing_mm``."""
    return max(1, int(round(float(patch_size_mm) / float(spacing_mm))))


@dataclass(frozen=True)
class PatchConfig:
    """What to crop and how.

    Attributes
    ----------
    timepoints, modalities : tuple of str
        Channels are ordered (timepoint, modality) in this order, timepoint-major.
    patch_size_mm : float
        Edge of the cubic patch in mm.
    spacing_mm : float
        Isotropic voxel spacing of the patch grid in mm; the patch has
        ``round(patch_size_mm / spacing_mm)`` voxels per edge.
    normalisation : dict
        Modality → :class:`Normalisation` parameters.
    allow_post_decision : bool
        Timepoints after the surgical decision (``followup``) belong to the reference
        standard; using them as input is refused unless this is set explicitly.
    """

    timepoints: tuple[str, ...] = ("baseline", "presurgery")
    modalities: tuple[str, ...] = ("ct", "adc")
    patch_size_mm: float = 40.0
    spacing_mm: float = 2.0
    normalisation: dict = field(default_factory=lambda: {k: asdict(v) for k, v in DEFAULT_NORMALISATION.items()})
    allow_post_decision: bool = False

    def __post_init__(self):
        object.__setattr__(self, "timepoints", tuple(self.timepoints))
        object.__setattr__(self, "modalities", tuple(self.modalities))
        schema.check_input_timepoints(self.timepoints, self.allow_post_decision)
        missing = [m for m in self.modalities if m not in self.normalisation]
        if missing:
            raise ValueError(f"no normalisation configured for modality(ies) {missing}")
        if self.patch_size_mm <= 0 or self.spacing_mm <= 0:
            raise ValueError("patch_size_mm and spacing_mm must be positive")
        norm = {m: dict(v) if not isinstance(v, Normalisation) else asdict(v) for m, v in self.normalisation.items()}
        object.__setattr__(self, "normalisation", norm)

    @property
    def size_voxels(self) -> int:
        return patch_voxels(self.patch_size_mm, self.spacing_mm)

    @property
    def channels(self) -> list[tuple[str, str]]:
        return [(t, m) for t in self.timepoints for m in self.modalities]

    def channel_names(self) -> list[str]:
        return [f"{t}_{m}" for t, m in self.channels]

    def normaliser(self, modality: str) -> Normalisation:
        return Normalisation(**self.normalisation[modality])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["timepoints"], d["modalities"] = list(self.timepoints), list(self.modalities)
        return d


def patch_grid(center_mm: tuple[float, float, float], size_voxels: int, spacing_mm: float) -> sitk.Image:
    """Reference image of the patch grid: ``size_voxels``³ voxels of ``spacing_mm``, LPS axes,
    centred so that the middle of the cube is ``center_mm``."""
    grid = sitk.Image([size_voxels] * 3, sitk.sitkFloat32)
    grid.SetSpacing([spacing_mm] * 3)
    half = (size_voxels - 1) / 2.0 * spacing_mm
    grid.SetOrigin([c - half for c in center_mm])
    grid.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    return grid


def resample_patch(image: sitk.Image, center_mm, size_voxels: int, spacing_mm: float, pad_value: float,
                   transform: sitk.Transform | None = None) -> sitk.Image:
    """Resample ``image`` onto the patch grid in one interpolation (linear).

    ``transform`` maps patch (baseline CT) physical points to ``image`` physical points;
    identity when the image already shares the baseline space.
    """
    grid = patch_grid(center_mm, size_voxels, spacing_mm)
    return sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), grid, transform or sitk.Transform(),
                         sitk.sitkLinear, float(pad_value), sitk.sitkFloat32)


@dataclass
class PatchSet:
    """All lesion patches of a cohort.

    Attributes
    ----------
    image : float32 array [N, C, D, H, W]
        Normalised patches; channels as ``channel_names``; zero where an image is missing.
    present : bool array [N, C]
        Whether the channel's source image exists.
    lesions : DataFrame
        One row per lesion (``patient_id``, ``lesion_id``, ``pcr``), aligned with ``image``.
    registration : RegistrationSet or None
        The registrations the patches were sampled through (``summary()`` gives n flagged /
        n excluded); ``None`` when images were used in their own physical space.
    excluded_images : DataFrame or None
        (patient_id, timepoint, modality, reason) of images left out of the patches because
        their registration was flagged and ``exclude_flagged`` is set.
    """

    image: np.ndarray
    present: np.ndarray
    lesions: pd.DataFrame
    channel_names: list[str]
    spacing_mm: float
    cache_key: str
    registration: Any = None
    excluded_images: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.lesions)


def open_channel(image_paths: dict, transform_paths: dict, timepoint: str, modality: str,
                 patient_id: str | None = None):
    """The image of one (timepoint, modality) and the transform taking baseline CT points to it
    (None: the image is already in baseline space), from the ``"timepoint/modality"``-keyed path
    maps a patient's job carries; None when the patient has no such image. An image refused on
    reading (damaged, non-finite voxels) raises ``ValueError`` naming patient, timepoint and
    modality as well as the file."""
    key = f"{timepoint}/{modality}"
    path = image_paths.get(key)
    if path is None:
        return None
    tfm = transform_paths.get(key)
    where = (f"patient {patient_id}, " if patient_id is not None else "") + f"{timepoint} {modality}"
    try:
        image = read_image(path)
    except ImageIntegrityError as err:
        raise ImageIntegrityError(err.path, err.problems, where) from err
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err
    return image, (read_transform(tfm) if tfm else None)


def _extract_patient(args) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Worker: all patches of one patient. Returns lesion row indices, patches and presence.

    ``transform_paths`` maps a channel to the ITK transform file taking baseline CT points
    to that image's points (absent: the image is already in baseline space)."""
    rows, centres, image_paths, config_dict, *rest = args
    transform_paths = rest[0] if rest else {}
    patient_id = rest[1] if len(rest) > 1 else None
    config = PatchConfig(**config_dict)
    n, c, s = len(rows), len(config.channels), config.size_voxels
    out = np.zeros((n, c, s, s, s), dtype=np.float32)
    present = np.zeros((n, c), dtype=bool)
    for ci, (timepoint, modality) in enumerate(config.channels):
        opened = open_channel(image_paths, transform_paths, timepoint, modality, patient_id)
        if opened is None:
            continue
        image, transform = opened
        norm = config.normaliser(modality)
        for li, centre in enumerate(centres):
            patch = resample_patch(image, centre, s, config.spacing_mm, norm.pad_value, transform)
            out[li, ci] = norm.apply(sitk.GetArrayViewFromImage(patch))
            present[li, ci] = True
    return rows, out, present


def patch_cache_key(cohort: Cohort, config: PatchConfig, fingerprint: str | None = None,
                    registration=None, *, all_lesions: bool = False) -> str:
    """Hash of everything the patches depend on: cohort content, every parameter, (with a
    :class:`~dlm_ml.data.registration.RegistrationSet`) the registration settings and the
    content hashes of the composed transforms the patches are sampled through, and which lesions
    (``all_lesions``: every lesion of ``lesions.csv``, not only the labelled ones)."""
    payload = {
        "algorithm": PATCH_ALGORITHM_VERSION,
        "cohort": fingerprint or cohort_fingerprint(cohort.root),
        "config": config.to_dict(),
        "registration": None if registration is None else {
            "config": {k: v for k, v in registration.config.to_dict().items()
                       if k not in ("workers", "threads_per_worker")},
            "transforms": registration.content_hashes(),
        },
    }
    if all_lesions:
        # Only added when set, so the key of the labelled-only selection (recorded by earlier
        # runs) is exactly what it always was.
        payload["lesions"] = "all"
    return payload_digest(payload)


def _selected_lesions(cohort: Cohort, all_lesions: bool) -> pd.DataFrame:
    """The lesions to crop, sorted by (patient_id, lesion_id): ``patient_id, lesion_id, pcr`` and
    the centre ``x_mm, y_mm, z_mm`` (LPS mm). Labelled lesions only (``pcr`` int), or with
    ``all_lesions`` every lesion of ``lesions.csv`` (``pcr`` float, NaN where there is no outcome)."""
    if all_lesions:
        key = list(schema.LESION_KEY)
        lesions = cohort.lesions.merge(cohort.outcomes[[*key, "pcr"]], on=key, how="left", validate="1:1")
        lesions["pcr"] = lesions["pcr"].astype(float)
    else:
        lesions = cohort.labelled_lesions()
    lesions = lesions[["patient_id", "lesion_id", "pcr", "x_mm", "y_mm", "z_mm"]]
    return lesions.sort_values(list(schema.LESION_KEY), kind="stable").reset_index(drop=True)


def _excluded_images(registration, lesions: pd.DataFrame, config: PatchConfig) -> pd.DataFrame:
    """Images whose flagged registration keeps them out of the patches (``exclude_flagged``)."""
    rows = []
    if registration is not None and registration.config.exclude_flagged:
        wanted = set(config.channels)
        for r in registration.table[registration.table["flagged"]].itertuples():
            if (r.timepoint, r.modality) in wanted and r.patient_id in set(lesions.patient_id):
                rows.append({"patient_id": r.patient_id, "timepoint": r.timepoint, "modality": r.modality,
                             "reason": f"registration flagged: {r.reasons}"})
    return pd.DataFrame(rows, columns=["patient_id", "timepoint", "modality", "reason"])


def build_patches(cohort: Cohort, config: PatchConfig, cache_dir: str | Path, *, num_workers: int = 1,
                  progress: bool = True, log=print, registration=None, all_lesions: bool = False) -> PatchSet:
    """Return the cohort's patches, from the cache when its key matches, else extract and cache.

    Every lesion with an outcome gets a row; lesions without outcome are listed in
    ``cohort.exclusions`` and not extracted. With ``all_lesions`` (prediction) every lesion of
    ``lesions.csv`` gets a row, its ``pcr`` a float, NaN where the lesion has no outcome; these
    patches are cached under their own key.

    ``registration`` (a :class:`~dlm_ml.data.registration.RegistrationConfig`, or ``None`` /
    disabled to use every image in its own physical space): the images of ``config.channels``
    are first registered into baseline CT space (cached by content under ``cache_dir``), and
    each patch is sampled through its image's composed transform. Flagged registrations are
    reported; with ``exclude_flagged`` their images are treated as missing and listed in
    ``PatchSet.excluded_images``.
    """
    missing_channels = [m for m in config.modalities if m not in cohort.modalities]
    if missing_channels:
        raise ValueError(f"modality(ies) {missing_channels} not in cohort {cohort.root} ({cohort.modalities})")
    lesions = _selected_lesions(cohort, all_lesions)
    regs = None
    if registration is not None and registration.enabled:
        with stage("registration"):
            regs = register_cohort(cohort, registration, cache_dir, channels=config.channels,
                                   patients=sorted(lesions.patient_id.unique()), progress=progress, log=log)
        for line in regs.summary_text().splitlines()[1:]:
            log(line)
    excluded = _excluded_images(regs, lesions, config)
    if len(excluded):
        log(f"registration: {len(excluded)} flagged image(s) excluded from the patches (exclude_flagged)")
    with stage("patch extraction"):
        return _cached_or_extracted(cohort, config, lesions, regs, excluded, Path(cache_dir),
                                    num_workers=num_workers, progress=progress, log=log, all_lesions=all_lesions)


def _cached_or_extracted(cohort: Cohort, config: PatchConfig, lesions: pd.DataFrame, regs, excluded: pd.DataFrame,
                         cache_dir: Path, *, num_workers: int, progress: bool, log, all_lesions: bool) -> PatchSet:
    """The patches of ``lesions`` from the cache when its key matches, else extracted per patient
    over ``num_workers`` processes and cached (see :func:`build_patches`)."""
    key = patch_cache_key(cohort, config, registration=regs, all_lesions=all_lesions)
    path = cache_dir / f"patches-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            cached_ids = list(zip(data["patient_id"].tolist(), data["lesion_id"].tolist()))
            if cached_ids == list(zip(lesions.patient_id, lesions.lesion_id)):
                log(f"patch cache hit: reusing {path} ({len(lesions)} lesions, key {key})")
                return PatchSet(data["image"], data["present"], lesions[["patient_id", "lesion_id", "pcr"]],
                                config.channel_names(), config.spacing_mm, key, regs, excluded)
    log(f"patch cache miss: extracting {len(lesions)} lesions into {path}")

    dropped = set(zip(excluded.patient_id, excluded.timepoint, excluded.modality))
    jobs = []
    for patient_id, group in lesions.groupby("patient_id", sort=True):
        image_paths, transform_paths = {}, {}
        for t, m in config.channels:
            p = cohort.image_path(patient_id, t, m)
            if p is None or (patient_id, t, m) in dropped:
                continue
            image_paths[f"{t}/{m}"] = str(p)
            if regs is not None:
                tfm = regs.transform_path(patient_id, t, m)
                if tfm is not None:
                    transform_paths[f"{t}/{m}"] = tfm
        centres = [tuple(r) for r in group[["x_mm", "y_mm", "z_mm"]].to_numpy(float)]
        jobs.append((group.index.tolist(), centres, image_paths, config.to_dict(), transform_paths, patient_id))

    s = config.size_voxels
    image = np.zeros((len(lesions), len(config.channels), s, s, s), dtype=np.float32)
    present = np.zeros((len(lesions), len(config.channels)), dtype=bool)
    results = parallel_map(_extract_patient, jobs, workers=num_workers, desc="patches", unit="patient",
                           progress=progress)
    for rows, out, pres in results:
        image[rows], present[rows] = out, pres

    with atomic_path(path) as tmp:
        np.savez(tmp, image=image, present=present, patient_id=lesions.patient_id.to_numpy(str),
                 lesion_id=lesions.lesion_id.to_numpy(str))
    manifest = {"key": key, "config": config.to_dict(), "n_lesions": len(lesions),
                "channels": config.channel_names(), "cohort": str(cohort.root),
                "registration": None if regs is None else {"config": regs.config.to_dict(), **regs.summary()},
                "excluded_images": excluded.to_dict("records")}
    if all_lesions:
        manifest["lesions"] = "all"
    atomic_write_json(path.with_suffix(".json"), manifest)
    return PatchSet(image, present, lesions[["patient_id", "lesion_id", "pcr"]], config.channel_names(),
                    config.spacing_mm, key, regs, excluded)

"""Patches per second: the patch cache against the naive MONAI loading pipeline, on one cohort.

The naive pipeline is what a user would write without the cache: for every lesion and every
(timepoint, modality) image, every epoch, a MONAI dictionary-transform chain ``LoadImaged`` →
``EnsureChannelFirstd`` → ``Orientationd(axcodes="RAS")`` → ``Spacingd(pixdim=patch spacing)``
→ a crop of the patch size around the lesion centre (``SpatialCropd``, then ``BorderPadd`` where
the patch leaves the image) → ``ScaleIntensityRanged`` (the cache's intensity window). Same
patch size, spacing and window as the cache. It applies the registration as cheaply as it can:
the lesion's baseline-CT centre is mapped through the image's composed transform (read from the
registration cache) and the crop is centred there; the patch itself is not resampled through the
transform, so rotation and deformation within the patch are ignored — that flatters its speed.

The cache is read as training reads it: the patch set loaded from ``patches-<key>.npz`` (a cache
hit; extracted first on a miss), then one epoch of fold 0's ``PCRDataModule`` loaders: the fit
lesions through the training transforms (augmentation), the validation and test lesions through
the evaluation transforms — every lesion once. A second figure reads every lesion through the
evaluation transforms only (no augmentation), like for like with the naive chain.

A patch is one (lesion, present image) cube in both. The naive chain runs on an evenly spaced
subset of ``--naive-lesions`` lesions (it takes seconds per patch) and is extrapolated per patch.

Usage::

    python benchmarks/patch_loading.py [--cohort DIR] [--cache-dir DIR] [--naive-lesions 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import statistics
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from monai.data import DataLoader, Dataset, MetaTensor
from monai.transforms import (
    BorderPadd,
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    Orientationd,
    ScaleIntensityRanged,
    Spacingd,
    SpatialCropd,
)

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.data.cohort import load_cohort
from dlm_ml.data.folds import make_folds
from dlm_ml.data.patches import PatchConfig, build_patches
from dlm_ml.data.registration import registration_config_from_cfg
from dlm_ml.data.registration.cohort import read_transform
from dlm_ml.data.synthetic import cohort_folder_name, generate_cohort, make_config
from dlm_ml.data.transforms import evaluation_transforms

# the demo's cohort (dlm-train's default data.cohort_dir at seed 42)
DEFAULT_COHORT = Path("outputs/data") / cohort_folder_name("default", None, 42)
TARGET_RATIO = 200.0
# MONAI's Orientationd needs nibabel (installed with the test extra); without it orient_ras does the same.
HAVE_NIBABEL = importlib.util.find_spec("nibabel") is not None


def orient_ras(data: dict) -> dict:
    """``Orientationd(axcodes="RAS")`` without nibabel (which MONAI's needs): permute and flip the
    axes of ``data["image"]`` [1, X, Y, Z] so that they point to R, A, S, updating its affine."""
    image = data["image"]
    affine = np.asarray(image.affine, float).copy()
    world_axis = np.argmax(np.abs(affine[:3, :3]), axis=0)  # the world axis each array axis runs along
    if sorted(world_axis) != [0, 1, 2]:
        raise ValueError(f"image axes too oblique to orient: affine {affine.tolist()}")
    order = np.argsort(world_axis)
    array = image.as_tensor().permute(0, *(order + 1).tolist())
    affine[:, :3] = affine[:, order]
    flips = [axis for axis in range(3) if affine[axis, axis] < 0]
    for axis in flips:  # index i becomes n - 1 - i: the origin moves to the far end of the axis
        affine[:, 3] += affine[:, axis] * (array.shape[axis + 1] - 1)
        affine[:, axis] *= -1
    if flips:
        array = torch.flip(array, dims=[axis + 1 for axis in flips])
    return {**data, "image": MetaTensor(array.contiguous(), affine=torch.as_tensor(affine))}


def naive_load_chain(spacing_mm: float, orientation: bool = True) -> Compose:
    """Load one image file as a [1, X, Y, Z] MetaTensor in RAS orientation at ``spacing_mm`` (its
    ``affine`` maps voxel indices to RAS mm). ``orientation=False`` leaves the file's axis order
    (only to show that a check catches it)."""
    orient = Orientationd(keys="image", axcodes="RAS") if HAVE_NIBABEL else orient_ras
    return Compose([
        LoadImaged(keys="image", reader="ITKReader", image_only=True),
        EnsureChannelFirstd(keys="image"),
        *([orient] if orientation else []),
        Spacingd(keys="image", pixdim=(spacing_mm,) * 3, mode="bilinear", padding_mode="border"),
    ])


def lps_to_voxel(affine: np.ndarray, point_lps_mm) -> np.ndarray:
    """Continuous voxel index (3,) of a physical LPS point (mm) in an image whose 4×4 ``affine`` maps
    voxel indices to RAS mm (MONAI's convention)."""
    x, y, z = (float(v) for v in point_lps_mm)
    return (np.linalg.inv(np.asarray(affine, float)) @ np.array([-x, -y, z, 1.0]))[:3]


def crop_around(data: dict, centre_voxel: np.ndarray, size_voxels: int, pad_value: float) -> dict:
    """Crop ``data["image"]`` [1, X, Y, Z] to ``size_voxels``³ voxels whose middle is the voxel
    nearest ``centre_voxel``, padding with ``pad_value`` (source units) where the cube leaves the image."""
    shape = np.array(data["image"].shape[1:])
    start = np.rint(np.asarray(centre_voxel) - (size_voxels - 1) / 2.0).astype(int)
    end = start + size_voxels
    lo = np.clip(start, 0, shape)
    hi = np.maximum(np.clip(end, 0, shape), lo)
    data = SpatialCropd(keys="image", roi_start=lo.tolist(), roi_end=hi.tolist())(data)
    border = [int(v) for before, after in zip(lo - start, end - hi) for v in (before, after)]
    if any(border):
        data = BorderPadd(keys="image", spatial_border=border, mode="constant", value=float(pad_value))(data)
    return data


def naive_patch(chain: Compose, image_path: str | Path, centre_lps_mm, config: PatchConfig, modality: str,
                transform_path: str | Path | None = None) -> torch.Tensor:
    """One patch [1, S, S, S] (RAS axes, normalised) the naive way: load, orient, resample the whole
    image, crop around the lesion centre (mapped through ``transform_path`` when given: baseline CT
    points → this image's points), window the intensities."""
    centre = tuple(float(v) for v in centre_lps_mm)
    if transform_path is not None:
        centre = read_transform(transform_path).TransformPoint(centre)
    data = chain({"image": str(image_path)})
    voxel = lps_to_voxel(data["image"].affine, centre)
    norm = config.normaliser(modality)
    data = crop_around(data, voxel, config.size_voxels, norm.pad_value)
    window = norm.clip * norm.half_width
    data = ScaleIntensityRanged(keys="image", a_min=norm.center - window, a_max=norm.center + window,
                                b_min=-norm.clip, b_max=norm.clip, clip=True)(data)
    return data["image"]


def ras_patch_to_cache_layout(patch) -> np.ndarray:
    """A naive patch [1, R, A, S] as the cache lays a patch out: [D, H, W] = LPS (z, y, x)."""
    array = np.asarray(patch)[0]
    return np.ascontiguousarray(np.flip(array, axis=(0, 1)).transpose(2, 1, 0))


def time_naive(cohort, lesions, config: PatchConfig, registration) -> tuple[int, float]:
    """Patches cut the naive way from every present image of ``lesions``, and the seconds taken."""
    chain = naive_load_chain(config.spacing_mm)
    jobs = []
    for lesion in lesions.itertuples():
        for timepoint, modality in config.channels:
            path = cohort.image_path(lesion.patient_id, timepoint, modality)
            if path is None:
                continue
            tfm = None if registration is None else registration.transform_path(lesion.patient_id, timepoint, modality)
            jobs.append((path, (lesion.x_mm, lesion.y_mm, lesion.z_mm), modality, tfm))
    if not jobs:
        raise ValueError("no image of the chosen lesions to cut a naive patch from")
    naive_patch(chain, jobs[0][0], jobs[0][1], config, jobs[0][2], jobs[0][3])  # warm-up: readers, imports
    started = time.perf_counter()
    for path, centre, modality, tfm in jobs:
        naive_patch(chain, path, centre, config, modality, tfm)
    return len(jobs), time.perf_counter() - started


def read_epoch(loaders, present: np.ndarray) -> tuple[int, float]:
    """Present patches delivered by one pass over ``loaders``, and the seconds taken."""
    n = 0
    started = time.perf_counter()
    for loader in loaders:
        for batch in loader:
            n += int(present[batch["index"].numpy()].sum())
    return n, time.perf_counter() - started


def demo_config(cohort_dir: Path, cache_dir: Path, registration: bool = True):
    """The demo's training config (``experiment=demo``) on ``cohort_dir`` with ``cache_dir``
    (``registration=False``: images used in their own physical space, by both pipelines)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=["experiment=demo", f"data.cohort_dir={cohort_dir}",
                                           "data.synthetic.enabled=false", f"paths.cache_dir={cache_dir}",
                                           f"data.registration.enabled={str(registration).lower()}"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", type=Path, default=None, help="cohort folder (default: the demo's, written if absent)")
    ap.add_argument("--cache-dir", type=Path, default=Path("outputs/cache"),
                    help="registration and patch cache (filled first on a miss)")
    ap.add_argument("--naive-lesions", type=int, default=20, help="lesions cut the naive way (evenly spaced)")
    ap.add_argument("--no-registration", action="store_true",
                    help="both pipelines without registration (no transforms to compute or read: the naive chain "
                         "is then faster, the ratio lower)")
    ap.add_argument("--repeats", type=int, default=3, help="cache epochs timed (the median is reported)")
    args = ap.parse_args()

    cohort_dir = (args.cohort or DEFAULT_COHORT).resolve()
    if args.cohort is None and not cohort_dir.is_dir():
        print(f"writing the demo's synthetic cohort to {cohort_dir}")
        generate_cohort(cohort_dir, make_config("default", seed=42), progress=False)
    cfg = demo_config(cohort_dir, args.cache_dir.resolve(), registration=not args.no_registration)
    config = hydra.utils.instantiate(cfg.data.patches)
    cohort = load_cohort(cohort_dir)
    messages: list[str] = []
    started = time.perf_counter()
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        patches = build_patches(cohort, config, cfg.paths.cache_dir, num_workers=int(cfg.data.preprocess_workers),
                                progress=False, log=messages.append,
                                registration=registration_config_from_cfg(cfg.data))
    load_s = time.perf_counter() - started
    hit = any(m.startswith("patch cache hit") for m in messages)

    folds = make_folds(patches.lesions, int(cfg.data.n_folds), int(cfg.seed))
    datamodule = hydra.utils.instantiate(cfg.data.datamodule)(patches=patches, folds=folds, fold=0)
    datamodule.setup("fit")
    training = [datamodule.train_dataloader(), datamodule.val_dataloader(), datamodule.test_dataloader()]
    read_epoch(training[1:], patches.present)  # warm-up
    train_runs = [read_epoch(training, patches.present) for _ in range(args.repeats)]
    # the fit lesions through the evaluation transforms, beside the validation and test lesions
    plain = [DataLoader(Dataset(datamodule.fit_set.data, transform=evaluation_transforms()),
                        batch_size=datamodule.batch_size),
             *datamodule.predict_dataloader()]
    eval_runs = [read_epoch(plain, patches.present) for _ in range(args.repeats)]

    all_lesions = cohort.labelled_lesions().sort_values(["patient_id", "lesion_id"]).reset_index(drop=True)
    pick = np.unique(np.linspace(0, len(all_lesions) - 1, min(args.naive_lesions, len(all_lesions))).astype(int))
    naive_n, naive_s = time_naive(cohort, all_lesions.iloc[pick], config, patches.registration)

    naive_rate = naive_n / naive_s
    epoch_patches = int(patches.present.sum())
    print(f"cohort {cohort_dir}: {len(patches)} lesions × {len(config.channels)} channels, {epoch_patches} present "
          f"patches per epoch, {config.size_voxels}³ voxels at {config.spacing_mm:g} mm "
          f"({config.patch_size_mm:g} mm); torch threads {torch.get_num_threads()}")
    print(f"naive MONAI chain: {naive_n} patches of {len(pick)} lesions in {naive_s:.1f} s = "
          f"{naive_rate:.2f} patches/s, {1000 / naive_rate:.0f} ms per patch; one epoch extrapolated: "
          f"{epoch_patches / naive_rate:.0f} s")
    orientation = "MONAI Orientationd" if HAVE_NIBABEL else "flip/permute to RAS (Orientationd needs nibabel)"
    print(f"  orientation: {orientation}")
    if patches.registration is None:
        print("  registration: none (--no-registration): neither pipeline reads a transform; the naive chain skips "
              "what a real user would need, which flatters it")
    else:
        print("  registration: lesion centre mapped through each image's composed transform; the patch is not "
              "resampled through it (rotation and deformation within the patch ignored: flatters the naive chain)")
    print(f"patch cache: {'loaded (hit)' if hit else 'registered and extracted (miss; a later run loads it)'} in "
          f"{load_s:.2f} s, once per run ({patches.image.nbytes / 2**20:.0f} MiB, key {patches.cache_key})")
    plain_n, plain_s = eval_runs[0][0], statistics.median(s for _, s in eval_runs)
    ratio = plain_n / plain_s / naive_rate
    print(f"  loading, every lesion through the evaluation transforms: {plain_n} patches in {plain_s:.3f} s (median "
          f"of {len(eval_runs)}) = {plain_n / plain_s:,.0f} patches/s; {ratio:,.0f}× the naive chain "
          f"(target {TARGET_RATIO:.0f}×: {'met' if ratio >= TARGET_RATIO else 'NOT met'})")
    train_n, train_s = train_runs[0][0], statistics.median(s for _, s in train_runs)
    augmentation_s = max(train_s - plain_s, 0.0)
    print(f"  training epoch as the DataModule reads it (fit lesions augmented): {train_n} patches in {train_s:.3f} s "
          f"= {train_n / train_s:,.0f} patches/s, of which augmentation ≈ {augmentation_s:.2f} s; the naive chain "
          f"followed by the same augmentation: {(epoch_patches / naive_rate + augmentation_s) / train_s:,.0f}× slower")


if __name__ == "__main__":
    main()

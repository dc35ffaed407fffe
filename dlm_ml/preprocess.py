"""dlm-preprocess: validate a cohort, build its patch cache, optionally export patches for QA."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig
from tqdm.auto import tqdm

from dlm_ml import config_resolvers  # noqa: F401

log = logging.getLogger("dlm_ml.preprocess")
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def export_patches(cohort, patches, config, export_dir: str | Path, progress: bool = True) -> int:
    """Write each lesion's patches as NIfTI in source units (HU, µm²/s) with the patch grid's
    physical geometry, so they overlay on the source images in 3D Slicer or ITK-SNAP, plus one
    PNG montage per lesion (rows = timepoints, columns = modalities). Returns files written."""
    from dlm_ml.data.imageio import read_image, write_image
    from dlm_ml.data.patches import resample_patch
    from dlm_ml.plots import patch_montage

    export_dir = Path(export_dir)
    lesions = cohort.labelled_lesions().set_index(["patient_id", "lesion_id"])
    n_written = 0
    by_patient = patches.lesions.groupby("patient_id", sort=True)
    for patient_id, group in tqdm(by_patient, total=by_patient.ngroups, desc="export", unit="patient",
                                  disable=not progress):
        images = {}
        for t, m in config.channels:
            path = cohort.image_path(patient_id, t, m)
            if path is not None:
                images[(t, m)] = read_image(path)
        for row_index, lesion in group.iterrows():
            centre = tuple(lesions.loc[(patient_id, lesion.lesion_id), ["x_mm", "y_mm", "z_mm"]].astype(float))
            lesion_dir = export_dir / str(patient_id) / str(lesion.lesion_id)
            for (t, m), image in images.items():
                patch = resample_patch(image, centre, config.size_voxels, config.spacing_mm,
                                       config.normaliser(m).pad_value)
                write_image(patch, lesion_dir / f"{t}_{m}.nii.gz")
                n_written += 1
            grid = patches.image[row_index].reshape(len(config.timepoints), len(config.modalities),
                                                    *patches.image.shape[2:])
            present = patches.present[row_index].reshape(len(config.timepoints), len(config.modalities))
            grid = np.where(present[:, :, None, None, None], grid, np.nan)
            patch_montage(grid, list(config.timepoints), list(config.modalities),
                          export_dir / f"{patient_id}_{lesion.lesion_id}.png",
                          title=f"patient {patient_id}, lesion {lesion.lesion_id}")
            n_written += 1
    return n_written


def preprocess(cfg: DictConfig):
    from dlm_ml.data.patches import build_patches
    from dlm_ml.data.prepare import prepare_cohort

    config = hydra.utils.instantiate(cfg.data.patches)
    cohort, report = prepare_cohort(cfg.data)
    print(report.summary())
    patches = build_patches(cohort, config, cfg.paths.cache_dir, num_workers=int(cfg.data.preprocess_workers),
                            log=print)
    missing = (~patches.present).sum(axis=0)
    print(f"{len(patches)} lesion patches of {config.size_voxels}^3 voxels at {config.spacing_mm} mm, "
          f"channels {patches.channel_names}; missing images per channel: {missing.tolist()}")
    if cfg.export:
        n = export_patches(cohort, patches, config, cfg.export_dir)
        print(f"exported {n} files to {cfg.export_dir}")
    return patches


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="preprocess")
def main(cfg: DictConfig) -> None:
    preprocess(cfg)


if __name__ == "__main__":
    main()

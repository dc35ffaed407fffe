"""dlm-preprocess: validate a cohort, register every image into its patient's baseline CT space,
build the patch cache, write registration QA pictures, optionally export patches for QA.

With a logger (``logger=mlflow``) the registration summary, the per-image registration table
(flags included) and the QA pictures are logged to an MLflow run; without one, they are only
written under the output folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from dlm_ml.cli.config import CONF_DIR

log = logging.getLogger("dlm_ml.cli.preprocess")


def export_patches(cohort, patches, config, export_dir: str | Path, progress: bool = True) -> int:
    """Write each lesion's patches as NIfTI in source units (HU, µm²/s) with the patch grid's
    physical geometry, so they overlay on the source images in 3D Slicer or ITK-SNAP, plus one
    PNG montage per lesion (rows = timepoints, columns = modalities). Patches are sampled through
    the registration the patch set was built with. Returns files written."""
    from dlm_ml.data.imaging.imageio import read_image, write_image
    from dlm_ml.data.patches import resample_patch
    from dlm_ml.data.patches.montage import patch_montage
    from dlm_ml.data.registration import read_transform

    export_dir = Path(export_dir)
    lesions = cohort.labelled_lesions().set_index(["patient_id", "lesion_id"])
    regs = patches.registration
    n_written = 0
    by_patient = patches.lesions.groupby("patient_id", sort=True)
    for patient_id, group in tqdm(by_patient, total=by_patient.ngroups, desc="export", unit="patient",
                                  disable=not progress):
        images, transforms = {}, {}
        for t, m in config.channels:
            path = cohort.image_path(patient_id, t, m)
            if path is not None:
                images[(t, m)] = read_image(path)
                tfm = regs.transform_path(patient_id, t, m) if regs is not None else None
                transforms[(t, m)] = read_transform(tfm) if tfm else None
        for row_index, lesion in group.iterrows():
            centre = tuple(lesions.loc[(patient_id, lesion.lesion_id), ["x_mm", "y_mm", "z_mm"]].astype(float))
            lesion_dir = export_dir / str(patient_id) / str(lesion.lesion_id)
            for (t, m), image in images.items():
                patch = resample_patch(image, centre, config.size_voxels, config.spacing_mm,
                                       config.normaliser(m).pad_value, transforms[(t, m)])
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


def _log_to_mlflow(cfg: DictConfig, patches, registration_csv: Path | None, qa_dir: Path | None) -> str | None:
    """Log the preprocessing run (registration summary, table, QA pictures); returns the run id."""
    from dlm_ml import tracking

    client = tracking.open_client(cfg.logger.tracking_uri)
    experiment_id = tracking.get_experiment_id(client, cfg.logger.experiment_name, cfg.logger.get("artifact_location"))
    run = client.create_run(experiment_id, run_name=cfg.logger.get("run_name") or cfg.task_name,
                            tags={"dlm_ml.role": "preprocess"})
    run_id = run.info.run_id
    status = "FAILED"
    try:
        tracking.log_params(client, run_id, tracking.flatten(OmegaConf.to_container(cfg.data, resolve=True), "data."))
        tracking.set_tags(client, run_id, {"patch_cache_key": patches.cache_key, **tracking.git_state()})
        regs = patches.registration
        if regs is not None:
            summary = regs.summary()
            tracking.log_metrics(client, run_id, {f"registration.{k}": v for k, v in summary.items()})
            tracking.set_tags(client, run_id, {"registration.n_flagged": summary["n_flagged"],
                                               "registration.n_excluded": summary["n_excluded"]})
            tracking.log_text(client, run_id, regs.summary_text(), "registration/summary.txt")
            if registration_csv is not None:
                tracking.log_file(client, run_id, registration_csv, "registration")
            if qa_dir is not None and qa_dir.is_dir():
                client.log_artifacts(run_id, str(qa_dir), "registration/qa")
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status)
    return run_id


def preprocess(cfg: DictConfig):
    from dlm_ml.data.patches import build_patches
    from dlm_ml.data.prepare import prepare_cohort
    from dlm_ml.data.registration import registration_config_from_cfg
    from dlm_ml.data.registration.qa import write_registration_qa

    config = hydra.utils.instantiate(cfg.data.patches)
    registration = registration_config_from_cfg(cfg.data)
    cohort, report = prepare_cohort(cfg.data)
    print(report.summary())
    patches = build_patches(cohort, config, cfg.paths.cache_dir, num_workers=int(cfg.data.preprocess_workers),
                            log=print, registration=registration)
    missing = (~patches.present).sum(axis=0)
    print(f"{len(patches)} lesion patches of {config.size_voxels}^3 voxels at {config.spacing_mm} mm, "
          f"channels {patches.channel_names}; missing images per channel: {missing.tolist()}")
    registration_csv = qa_dir = None
    if patches.registration is not None:
        regs = patches.registration
        out_dir = Path(cfg.paths.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        registration_csv = out_dir / "registration.csv"
        regs.table.to_csv(registration_csv, index=False)
        qa = cfg.get("registration_qa")
        if qa is not None and qa.enabled:
            qa_dir = Path(qa.dir)
            ids = sorted(patches.lesions.patient_id.unique())
            if qa.get("max_patients"):
                ids = ids[: int(qa.max_patients)]
            files = write_registration_qa(cohort, regs, qa_dir, timepoints=config.timepoints,
                                          modalities=config.modalities, patients=ids, workers=regs.config.workers)
            print(f"registration QA: {len(files)} pictures under {qa_dir}")
    if cfg.export:
        n = export_patches(cohort, patches, config, cfg.export_dir)
        print(f"exported {n} files to {cfg.export_dir}")
    if cfg.get("logger") is not None and cfg.logger.get("tracking_uri"):
        run_id = _log_to_mlflow(cfg, patches, registration_csv, qa_dir)
        print(f"logged to MLflow run {run_id} ({cfg.logger.tracking_uri})")
    return patches


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="preprocess")
def main(cfg: DictConfig) -> None:
    preprocess(cfg)


if __name__ == "__main__":
    main()

"""dlm-predict ``explain=true``: saliency maps of the fold ensemble for the predicted lesions, written
in each patch's physical space (NIfTI) with a PNG montage per lesion."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from tqdm import tqdm

from dlm_ml.data.cohort import schema
from dlm_ml.data.patches import PatchSet
from dlm_ml.data.patches.montage import MODALITY_UNITS
from dlm_ml.evaluation.saliency_files import write_lesion_saliency
from dlm_ml.models.ensemble import FoldEnsemble
from dlm_ml.models.saliency import SaliencyExplainer

log = logging.getLogger("dlm_ml.predict")


def intensity_windows(patch_config: dict) -> dict[str, str]:
    """Modality → the normalisation window patches were made with, as the montage states it."""
    return {m: f"{m.upper()} {n['center']:g} ± {n['half_width']:g} {MODALITY_UNITS.get(m, '')}".rstrip()
            for m, n in patch_config["normalisation"].items()}


def explain_lesions(ensemble: FoldEnsemble, patches: PatchSet, cohort, covariates: pd.DataFrame | None,
                    predictions: pd.DataFrame, out_dir: Path, settings: DictConfig, patch_config: dict) -> list[Path]:
    """Grad-CAM and occlusion maps of every predicted lesion (or the first ``settings.max_lesions``),
    averaged over the fold models that predicted; returns the files written."""
    folds = set(int(k) for k in str(predictions.folds.iloc[0]).split(";")) if len(predictions) else set()
    models = [m for m in ensemble.models if m.fold in folds]
    encoded = [None if m.encoder is None else m.encoder.transform(covariates) for m in models]
    explainer = SaliencyExplainer([m.net for m in models], methods=list(settings.methods),
                                  gradcam_layer=settings.gradcam_layer,
                                  occlusion_mask_voxels=int(settings.occlusion_mask_voxels))
    centres = cohort.lesions.set_index(list(schema.LESION_KEY))[["x_mm", "y_mm", "z_mm"]]
    rows = range(len(patches)) if settings.max_lesions is None else range(min(int(settings.max_lesions), len(patches)))
    windows = intensity_windows(patch_config)
    written: list[Path] = []
    for i in tqdm(rows, desc="saliency", unit="lesion"):
        lesion = patches.lesions.iloc[i]
        row = predictions.iloc[i]
        covariate_rows = [np.zeros(0, np.float32) if e is None else e[i] for e in encoded]
        try:
            saliency = explainer(patches.image[i], patches.present[i], covariate_rows, ensemble.channel_names)
        except ValueError as err:
            raise ValueError(f"saliency of patient {lesion.patient_id} lesion {lesion.lesion_id}: {err}") from err
        centre = tuple(float(v) for v in centres.loc[(str(lesion.patient_id), str(lesion.lesion_id))])
        pcr = None if pd.isna(row.pcr) else float(row.pcr)
        written += write_lesion_saliency(out_dir, str(lesion.patient_id), str(lesion.lesion_id), patches.image[i],
                                         patches.present[i], saliency, ensemble.channel_names, centre,
                                         patches.spacing_mm, pcr=pcr,
                                         prob_pcr=float(row.prob_pcr), windows=windows)
    log.info("saliency maps of %d lesion(s) written under %s", len(rows), out_dir)
    return written

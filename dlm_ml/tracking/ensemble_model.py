"""A run's fold ensemble as a standard MLflow model: ``mlflow.pyfunc.load_model("runs:/RUN/model")``.

The pyfunc takes a dict of arrays (its signature says which): ``image`` float32 [N, C, D, H, W]
(normalised patches, channels timepoint-major), ``present`` bool [N, C], and where the models read
covariates, ``covariates_numeric`` float64 [N, n_numeric] (NaN: missing) and
``covariates_categorical`` str [N, n_categorical] ("": missing), columns in the order the model's
metadata (``metadata.covariates``) lists them. It returns one row per lesion: ``prob_pcr`` (the mean
of the folds' calibrated probabilities), ``prob_pcr_uncalibrated``, ``prob_pcr_sd`` and
``prob_pcr_fold_<k>``. Parameter ``flip_tta`` (default false) averages each fold over flips.
The weights stay tensor files read with ``weights_only=True``; only this small class is pickled,
by reference, so loading needs the dlm_ml package installed and nothing else of a run.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.models.signature import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

from dlm_ml import __version__
from dlm_ml.models.ensemble import FoldEnsemble
from dlm_ml.tracking.client import download_artifact, set_tags

log = logging.getLogger("dlm_ml.tracking")

#: The run's artifact folder of the model.
MODEL_ARTIFACT = "model"
REGISTERED_TAG = "dlm_ml.registered_model"
NUMERIC, CATEGORICAL = "covariates_numeric", "covariates_categorical"


def covariate_frame(ensemble: FoldEnsemble, numeric: np.ndarray | None, categorical: np.ndarray | None
                    ) -> pd.DataFrame | None:
    """The raw covariate table the fold encoders read, from the pyfunc's covariate arrays."""
    config = ensemble.covariates
    if not config:
        return None
    n = len(numeric) if numeric is not None else len(categorical)
    table = pd.DataFrame(index=range(n))
    for j, col in enumerate(config.numeric):
        table[col] = np.asarray(numeric[:, j], dtype=float)
    for j, col in enumerate(config.categorical):
        values = np.asarray(categorical[:, j]).astype(str)
        table[col] = pd.Series(values, dtype=object).where(values != "", np.nan)
    return table


class FoldEnsembleModel(mlflow.pyfunc.PythonModel):
    """The pyfunc over a :class:`~dlm_ml.models.ensemble.FoldEnsemble` folder (artifact ``fold_ensemble``)."""

    # MLflow would otherwise wrap predict() for type-hint validation and warn, in every process
    # importing this module, that it has none: the logged signature states the tensors instead.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        self.ensemble = FoldEnsemble.load(context.artifacts["fold_ensemble"])

    def predict(self, context, model_input, params=None):
        ensemble = self.ensemble
        config = ensemble.covariates
        missing = [k for k in ("image", "present") + ((NUMERIC,) if config and config.numeric else ())
                   + ((CATEGORICAL,) if config and config.categorical else ()) if k not in model_input]
        if missing:
            raise ValueError(f"model input lacks {missing}")
        covariates = covariate_frame(ensemble, model_input.get(NUMERIC), model_input.get(CATEGORICAL))
        flip_tta = bool((params or {}).get("flip_tta", False))
        image, present = np.asarray(model_input["image"], np.float32), np.asarray(model_input["present"], bool)
        prediction = ensemble.predict(image, present, covariates, flip_tta=flip_tta)
        return pd.DataFrame(prediction.columns())


def ensemble_signature(ensemble: FoldEnsemble) -> ModelSignature:
    c, s = len(ensemble.channel_names), ensemble.patch_voxels
    inputs = [TensorSpec(np.dtype(np.float32), (-1, c, s, s, s), "image"),
              TensorSpec(np.dtype(bool), (-1, c), "present")]
    if ensemble.covariates and ensemble.covariates.numeric:
        inputs.append(TensorSpec(np.dtype(np.float64), (-1, len(ensemble.covariates.numeric)), NUMERIC))
    if ensemble.covariates and ensemble.covariates.categorical:
        inputs.append(TensorSpec(np.dtype(str), (-1, len(ensemble.covariates.categorical)), CATEGORICAL))
    outputs = [ColSpec("double", name) for name in ("prob_pcr", "prob_pcr_uncalibrated", "prob_pcr_sd")]
    outputs += [ColSpec("double", f"prob_pcr_fold_{k}") for k in ensemble.folds]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs),
                          params=ParamSchema([ParamSpec("flip_tta", "boolean", False)]))


def log_fold_ensemble(client: MlflowClient, run_id: str, ensemble_dir: str | Path, registered_name: str | None) -> str:
    """Log the ensemble folder as the run's MLflow model (artifact ``model``) and, when
    ``registered_name`` is given and the store has a model registry, register a version of it.
    Returns the registered ``name/version``, or why it was not registered (also tagged)."""
    ensemble = FoldEnsemble.load(ensemble_dir)
    metadata = {"channel_names": ensemble.channel_names, "patch_voxels": ensemble.patch_voxels,
                "spacing_mm": ensemble.spacing_mm, "folds": ensemble.folds, "model_name": ensemble.model_name,
                "handles_missing_images": ensemble.handles_missing_images,
                "covariates": None if not ensemble.covariates else {
                    "numeric": list(ensemble.covariates.numeric), "categorical": list(ensemble.covariates.categorical)}}
    with tempfile.TemporaryDirectory(prefix="dlm_ml-model-") as tmp, warnings.catch_warnings():
        # MLflow suggests type hints instead of a signature; the signature is what holds the tensor shapes
        warnings.filterwarnings("ignore", message=".*type hint.*", category=UserWarning)
        # an example would be a patch tensor of every channel; the signature states the shapes
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        path = Path(tmp) / MODEL_ARTIFACT
        mlflow.pyfunc.save_model(str(path), python_model=FoldEnsembleModel(),
                                 artifacts={"fold_ensemble": str(ensemble_dir)}, signature=ensemble_signature(ensemble),
                                 metadata=metadata, pip_requirements=[f"dlm_ml=={__version__}"])
        client.log_artifacts(run_id, str(path), MODEL_ARTIFACT)
    registered = "not registered (no name given)"
    if registered_name:
        try:
            try:
                client.create_registered_model(registered_name)
            except MlflowException as err:
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            source = f"{client.get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT}"
            version = client.create_model_version(registered_name, source, run_id=run_id)
            registered = f"{registered_name}/{version.version}"
        except MlflowException as err:  # a store without a registry: the run's model is still there
            registered = f"not registered: {err.message.splitlines()[0][:200]}"
            log.warning("the fold ensemble of run %s is logged but %s", run_id, registered)
    set_tags(client, run_id, {REGISTERED_TAG: registered})
    return registered


def trained_run(client: MlflowClient, run_id: str) -> tuple[Run, dict]:
    """The finished ``dlm-train`` run ``run_id`` and its resolved configuration (the YAML its
    provenance recorded, parsed safely); refuses any other run with the reason."""
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise ValueError(f"no run {run_id!r} in the tracking store {client.tracking_uri}") from err
    role = run.data.tags.get("dlm_ml.role")
    if role != "train":
        raise ValueError(f"run {run_id} is a {role or 'non-dlm_ml'} run, not a dlm-train run")
    if run.info.status != "FINISHED":
        raise ValueError(f"run {run_id} is {run.info.status}: only a finished training run has all its fold models")
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    if MODEL_ARTIFACT not in artifacts:
        raise ValueError(f"run {run_id} ({run.data.tags.get('dlm_ml.model', 'model')}) has no fold ensemble: "
                         "a tabular baseline, or trained by a version that did not log one")
    config = yaml.safe_load(download_artifact(client, run_id, "provenance/config.yaml").read_text())
    return run, config


def download_fold_ensemble(client: MlflowClient, run_id: str, dst_dir: str | Path) -> Path:
    """The run's fold-ensemble folder (inside its MLflow model), downloaded under ``dst_dir``."""
    model_dir = download_artifact(client, run_id, MODEL_ARTIFACT, dst_dir)
    folder = Path(model_dir) / "artifacts" / "fold_ensemble"
    if not (folder / "ensemble.json").is_file():
        raise ValueError(f"run {run_id}: its MLflow model holds no fold_ensemble folder")
    return folder

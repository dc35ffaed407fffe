"""The fold loop follows the folds table: it trains the test folds the table holds (whatever
data.n_folds says), development-only patients train in every fold and never get a prediction, and
every lesion of a tested patient gets exactly one."""

from __future__ import annotations

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.data.folds import DEVELOPMENT_ONLY
from dlm_ml.training.cross_validation import check_one_prediction_per_tested_lesion, cross_validate
from dlm_ml.training.recorder import MemoryFoldRecorder
from tests.training.conftest import N_PATIENTS


def _folds(patches) -> pd.DataFrame:
    """Test folds 0 and 2 only (no fold 1), three patients each; the rest development only."""
    patients = sorted(set(patches.lesions.patient_id))
    fold = [0, 0, 0, 2, 2, 2] + [DEVELOPMENT_ONLY] * (N_PATIENTS - 6)
    return pd.DataFrame({"patient_id": patients, "fold": fold})


def _prediction(lesions: pd.DataFrame) -> pd.DataFrame:
    return lesions[["patient_id", "lesion_id"]].assign(fold=0, prob_pcr=0.5, pcr=lesions.pcr)


def test_prediction_check_refuses_missing_duplicated_and_development_only(patches):
    folds = _folds(patches)
    lesions = patches.lesions
    tested = lesions[lesions.patient_id.isin(folds.patient_id[folds.fold >= 0])]
    check_one_prediction_per_tested_lesion(_prediction(tested), lesions, folds)
    with pytest.raises(RuntimeError, match="without a prediction"):
        check_one_prediction_per_tested_lesion(_prediction(tested.iloc[1:]), lesions, folds)
    with pytest.raises(RuntimeError, match=r"more than once \[\('P000', 'L0'\)\]"):
        check_one_prediction_per_tested_lesion(_prediction(pd.concat([tested, tested.iloc[:1]])), lesions, folds)
    development = lesions[~lesions.patient_id.isin(tested.patient_id)].iloc[:1]
    with pytest.raises(RuntimeError, match=f"development only or unknown.*{development.patient_id.iloc[0]}"):
        check_one_prediction_per_tested_lesion(_prediction(pd.concat([tested, development])), lesions, folds)


@pytest.mark.slow  # trains two folds of a small network
def test_loop_trains_the_test_folds_present_and_never_predicts_development_patients(patches, tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            "data.n_folds=5", "data.patches.patch_size_mm=16", "data.patches.spacing_mm=2", "trainer=cpu",
            "trainer.max_epochs=1", "data.datamodule.batch_size=8"])
    folds = _folds(patches)
    recorder = MemoryFoldRecorder()
    result = cross_validate(cfg, patches, folds, recorder, tmp_path)
    assert sorted(recorder.runs) == [0, 2] and [f.fold for f in result.folds] == [0, 2]
    development = set(folds.patient_id[folds.fold == DEVELOPMENT_ONLY])
    for f in result.folds:
        assert set(f.test.patient_id) == set(folds.patient_id[folds.fold == f.fold])
        assert not set(f.validation.patient_id) & set(f.test.patient_id)
        # every lesion not tested in this fold trains (fit or validation), development-only ones included
        metrics = recorder.runs[f.fold].metrics
        assert metrics["n_fit_lesions"] + metrics["n_val_lesions"] == len(patches.lesions) - len(f.test)
    predicted = result.predictions
    assert not set(predicted.patient_id) & development
    tested = patches.lesions[~patches.lesions.patient_id.isin(development)]
    assert len(predicted) == len(tested) and not predicted.duplicated(["patient_id", "lesion_id"]).any()

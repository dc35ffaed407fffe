"""dlm-compare end to end: two dlm-train runs and one dlm-evaluate run of a hand-written predictions
file, named by their models, tested against each other and against the readers."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from dlm_ml.data.synthetic import generate_cohort, make_config

pytestmark = pytest.mark.slow  # trains through the real command

PY = sys.executable
EXPERIMENT = "models"
BASE = ["data.synthetic.enabled=false", "data.n_folds=3", "trainer.max_epochs=2", "evaluation.n_boot=50",
        "data.preprocess_workers=1", f"logger.experiment_name={EXPERIMENT}"]


def _run(args, root, env):
    proc = subprocess.run([PY, *args], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"{args[:2]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare_models")
    cohort = generate_cohort(root / "cohort", make_config("tiny", seed=3), progress=False)
    env = {**os.environ, "DLM_ML_CACHE": str(root / "cache_home"), "PYTHONUNBUFFERED": "1"}
    for model in ("small_cnn", "clinical_logistic"):
        _run(["-m", "dlm_ml.train", f"paths.root_dir={root}", f"data.cohort_dir={cohort}", f"model={model}", *BASE],
             root, env)
    # predictions made elsewhere: a hand-written rule on the outcomes, one lesion left unpredicted
    outcomes = pd.read_csv(cohort / "outcomes.csv", dtype={"patient_id": str, "lesion_id": str})
    rng = np.random.default_rng(0)
    hand = outcomes.assign(fold=0, prob_pcr=np.clip(0.3 + 0.4 * outcomes.pcr + rng.normal(0, 0.2, len(outcomes)),
                                                    0.01, 0.99))
    hand = hand.iloc[1:][["patient_id", "lesion_id", "fold", "prob_pcr", "pcr"]]
    hand.to_csv(root / "hand.csv", index=False)
    _run(["-m", "dlm_ml.evaluate", f"paths.root_dir={root}", f"predictions={root / 'hand.csv'}",
          f"cohort_dir={cohort}", "model_name=handwritten", "evaluation.n_boot=50",
          f"logger.experiment_name={EXPERIMENT}"], root, env)
    uri = f"sqlite:///{root}/outputs/mlflow/mlflow.db"
    proc = _run(["-m", "dlm_ml.cli.compare", "--experiment", EXPERIMENT, "--tracking-uri", uri,
                 "--out", str(root / "cmp")], root, env)
    return root, MlflowClient(uri), proc, hand


def test_compare_names_every_model_and_tests_every_pair(compared):
    root, client, proc, hand = compared
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'")
    names = {r.info.run_id: r.data.tags.get("dlm_ml.model") or r.info.run_name for r in runs
             if r.data.tags.get("dlm_ml.role") in ("train", "evaluate")}
    assert len(names) == 3 and "handwritten" in names.values()
    evaluation = next(r for r in runs if r.data.tags.get("dlm_ml.role") == "evaluate")
    assert evaluation.data.tags["dlm_ml.model"] == "handwritten" and evaluation.data.tags["cohort_fingerprint"]

    table = pd.read_csv(root / "cmp" / "comparison.csv")
    models = table[table.row == "model"]
    assert dict(zip(models.run_id, models.model)) == names
    assert len(table[table.row == "reader R1"]) == 1  # readers once per cohort

    pairwise = pd.read_csv(root / "cmp" / "pairwise.csv")
    assert len(pairwise) == 3 and set(pairwise.model_a) | set(pairwise.model_b) == set(names.values())
    with_hand = pairwise[(pairwise.model_a == "handwritten") | (pairwise.model_b == "handwritten")]
    assert sorted((with_hand.lesions_only_a + with_hand.lesions_only_b).tolist()) == [1, 1]
    assert pairwise.obuchowski_p.between(0, 1).all() and pairwise.delong_p.between(0, 1).all()

    mvr = pd.read_csv(root / "cmp" / "models_vs_readers.csv")
    assert set(mvr.model) == set(names.values()) and mvr.p_holm.between(0, 1).all()
    assert (mvr.p_holm >= mvr.p_value - 1e-12).all()
    assert "Holm-adjusted across the 3 models" in (root / "cmp" / "models_vs_readers.md").read_text()
    for name in names.values():
        assert name in proc.stdout

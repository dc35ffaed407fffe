"""A cohort that fails validation ends every command with its error list and exit status 2, no
traceback; a failed run's log says why it failed."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from dlm_ml.cli import evaluate, predict, preprocess, train
from dlm_ml.cli.errors import INPUT_ERROR_EXIT, command_errors
from dlm_ml.cli.predict_inputs import prediction_cohort
from dlm_ml.data.cohort import load_cohort
from dlm_ml.data.imaging.integrity import ImageIntegrityError
from dlm_ml.data.prepare import prepare_cohort

BAD_LESION = "../../../../x"


def _break(root: Path) -> list[str]:
    """Two errors in a valid cohort: an id that would leave a folder, an image path outside the
    cohort. Returns the problem lines the commands must print."""
    lesions = pd.read_csv(root / "lesions.csv", dtype=str)
    lesions.loc[2, "lesion_id"] = BAD_LESION
    lesions.to_csv(root / "lesions.csv", index=False)
    images = pd.read_csv(root / "images.csv", dtype=str)
    images.loc[0, "path"] = "/etc/passwd"
    images.to_csv(root / "images.csv", index=False)
    return [f"  - lesions.csv line 4 (patient P002, lesion {BAD_LESION}): lesion_id '{BAD_LESION}' is not a plain id",
            "  - images.csv line 2 (patient P001): path '/etc/passwd' must be relative to the cohort folder"]


@pytest.fixture
def broken_cohort(handmade_cohort) -> tuple[Path, list[str]]:
    return handmade_cohort, _break(handmade_cohort)


@pytest.fixture
def log_file(tmp_path):
    """A file handler on the root logger, as Hydra installs for a run's ``<command>.log``."""
    path = tmp_path / "run.log"
    handler = logging.FileHandler(path)
    root = logging.getLogger()
    root.addHandler(handler)
    yield path
    root.removeHandler(handler)
    handler.close()


def _assert_clean_list(text: str, command: str, expected: list[str]) -> None:
    """``text`` (stderr or a log; other messages may come first) holds the list under one heading line."""
    rows = text.splitlines()
    heading = next((i for i, row in enumerate(rows) if row.startswith(f"{command}: cohort ")), None)
    assert heading is not None, text
    for line in expected:
        assert any(row.startswith(line) for row in rows[heading + 1:]), (line, text)
    assert "Traceback" not in text


def test_a_validation_error_becomes_the_list_exit_2_and_the_log(broken_cohort, capsys, log_file):
    root, expected = broken_cohort
    with pytest.raises(SystemExit) as stop, command_errors("dlm-x"):
        load_cohort(root)
    assert stop.value.code == INPUT_ERROR_EXIT == 2
    _assert_clean_list(capsys.readouterr().err, "dlm-x", expected)
    _assert_clean_list(log_file.read_text(), "dlm-x", expected)


def test_an_image_refused_on_its_full_read_is_a_clean_error(capsys, log_file):
    # Non-finite voxels show only when an image is read in full (patch extraction, registration).
    with pytest.raises(SystemExit) as stop, command_errors("dlm-x"):
        raise ImageIntegrityError("images/P004/presurgery_adc.nrrd", ["2 voxel(s) are not finite"],
                                  "patient P004, presurgery adc")
    assert stop.value.code == INPUT_ERROR_EXIT
    err = capsys.readouterr().err
    assert err.strip() == ("dlm-x: patient P004, presurgery adc: image images/P004/presurgery_adc.nrrd: "
                           "2 voxel(s) are not finite")
    assert "not finite" in log_file.read_text()


def test_other_errors_are_raised_with_their_traceback_and_logged(log_file):
    with pytest.raises(ZeroDivisionError), command_errors("dlm-x"):
        _ = 1 / 0
    logged = log_file.read_text()
    assert logged.startswith("dlm-x failed:\nTraceback") and "ZeroDivisionError" in logged
    # a ValueError is a programming error unless the command names it as its refusal
    with pytest.raises(ValueError, match="bug"), command_errors("dlm-x"):
        raise ValueError("bug")
    with pytest.raises(SystemExit) as stop, command_errors("dlm-x", refused=(ValueError,)):
        raise ValueError("run R used data.patches.patch_size_mm 32, asked 40")
    assert stop.value.code == 2 and "dlm-x: run R used data.patches.patch_size_mm 32" in log_file.read_text()


def test_a_usage_message_passes_unchanged_and_is_logged(log_file):
    with pytest.raises(SystemExit) as stop, command_errors("dlm-x"):
        raise SystemExit("dlm-x needs run_id=<run>")
    assert stop.value.code == "dlm-x needs run_id=<run>"
    assert "dlm-x needs run_id=<run>" in log_file.read_text()


@pytest.mark.parametrize(("command", "module", "body", "validate"), [
    ("dlm-preprocess", preprocess, "preprocess", lambda cfg: prepare_cohort(cfg.data)),
    ("dlm-train", train, "train", lambda cfg: prepare_cohort(cfg.data)),
    ("dlm-evaluate", evaluate, "evaluate", lambda cfg: load_cohort(cfg.data.cohort_dir)),
    ("dlm-predict", predict, "predict", lambda cfg: prediction_cohort(cfg.data.cohort_dir))])
def test_every_command_validating_a_cohort_ends_with_the_clean_list(broken_cohort, capsys, monkeypatch, command,
                                                                    module, body, validate):
    """Each command's main, handed its config (Hydra's pass-through), around the validation its
    body runs: the list and exit status 2, no traceback."""
    root, expected = broken_cohort
    monkeypatch.setattr(module, body, validate)
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    cfg = OmegaConf.create({"seed": 0, "data": {"cohort_dir": str(root), "synthetic": {"enabled": False}}})
    with pytest.raises(SystemExit) as stop:
        module.main(cfg)
    assert stop.value.code == 2
    _assert_clean_list(capsys.readouterr().err, command, expected)


def _command(name: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DLM_ML_CACHE": str(tmp_path / "cache_home")}
    return subprocess.run([str(Path(sys.executable).with_name(name)), f"paths.root_dir={tmp_path}", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def _run_log(tmp_path: Path, task: str) -> str:
    (log,) = (tmp_path / "outputs" / "logs" / task / "runs").glob(f"*/{task}.log")
    return log.read_text()


def test_dlm_preprocess_prints_the_list_and_its_log_says_why(broken_cohort, tmp_path):
    """Through the console script and Hydra: before, a traceback, exit status 1 and an empty log."""
    root, expected = broken_cohort
    proc = _command("dlm-preprocess", tmp_path, f"data.cohort_dir={root}", "data.synthetic.enabled=false")
    assert proc.returncode == 2, proc.stderr[-3000:]
    _assert_clean_list(proc.stderr, "dlm-preprocess", expected)
    log = _run_log(tmp_path, "preprocess")
    assert all(line in log for line in expected), log


@pytest.mark.slow
def test_dlm_train_and_dlm_evaluate_print_the_list(broken_cohort, tmp_path):
    root, expected = broken_cohort
    store = [f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db"]
    proc = _command("dlm-train", tmp_path, f"data.cohort_dir={root}", "data.synthetic.enabled=false", *store)
    assert proc.returncode == 2, proc.stderr[-3000:]
    _assert_clean_list(proc.stderr, "dlm-train", expected)
    assert all(line in _run_log(tmp_path, "train") for line in expected)

    predictions = tmp_path / "predictions.csv"
    pd.DataFrame({"patient_id": ["P001"], "lesion_id": ["L1"], "fold": [0], "prob_pcr": [0.5], "pcr": [1]}).to_csv(
        predictions, index=False)
    proc = _command("dlm-evaluate", tmp_path, f"predictions={predictions}", f"cohort_dir={root}", *store)
    assert proc.returncode == 2, proc.stderr[-3000:]
    _assert_clean_list(proc.stderr, "dlm-evaluate", expected)

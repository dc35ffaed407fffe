"""The fold jobs of one configuration agree on one parent run: of processes racing to start,
exactly one creates it and every one gets its id; the shared hold of their folder keeps an
exclusive holder (finalise) out while any of them runs; the folds they compute must agree."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from dlm_ml.tracking.train_runs import (
    PARENT_RUN_FILE,
    RunHeldElsewhere,
    check_folds_agree,
    config_digest,
    fold_jobs_folder,
    holding_run_folder,
    shared_parent_run,
    without_fold_job_overrides,
)

N_JOBS = 4


def _start_job(folder: str, created_log: str, start, results) -> None:
    """One fold job starting: waits for the others, then asks for the parent. Creating takes a
    while (provenance is logged before the id is written), so racers overlap inside it."""

    def create() -> str:
        run_id = uuid.uuid4().hex
        with open(created_log, "a") as log:
            log.write(run_id + "\n")
        time.sleep(0.3)  # the creator is slow; without the lock every racer would create one
        return run_id

    start.wait(timeout=60)
    run_id, created = shared_parent_run(Path(folder), create)
    results.put((run_id, created))


def test_racing_jobs_create_one_parent(tmp_path):
    # fork: the racers start at once, without each importing the package again
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Barrier(N_JOBS), ctx.Queue()
    created_log = tmp_path / "created.txt"
    jobs = [ctx.Process(target=_start_job, args=(str(tmp_path / "cfg"), str(created_log), start, results))
            for _ in range(N_JOBS)]
    for job in jobs:
        job.start()
    answers = [results.get(timeout=120) for _ in jobs]
    for job in jobs:
        job.join(timeout=60)
        assert job.exitcode == 0
    created = created_log.read_text().split()
    assert len(created) == 1  # exactly one parent run created
    assert {run_id for run_id, _ in answers} == {created[0]}  # and every job got its id
    assert sum(was_created for _, was_created in answers) == 1
    assert (tmp_path / "cfg" / PARENT_RUN_FILE).read_text().strip() == created[0]


def test_failed_creation_leaves_no_parent(tmp_path):
    def broken() -> str:
        raise RuntimeError("store down")

    with pytest.raises(RuntimeError, match="store down"):
        shared_parent_run(tmp_path, broken)
    assert not (tmp_path / PARENT_RUN_FILE).exists()  # the next job creates it
    assert shared_parent_run(tmp_path, lambda: "abc") == ("abc", True)
    assert shared_parent_run(tmp_path, lambda: "other") == ("abc", False)


def test_shared_hold_keeps_exclusive_out(tmp_path):
    with holding_run_folder(tmp_path, shared=True), holding_run_folder(tmp_path, shared=True):
        with pytest.raises(RunHeldElsewhere, match="fold jobs still running"), holding_run_folder(tmp_path):
            pass
    with holding_run_folder(tmp_path):  # once the fold jobs end, finalise holds it
        with pytest.raises(RunHeldElsewhere), holding_run_folder(tmp_path, shared=True):
            pass


def test_fold_jobs_share_one_digest_and_folder(tmp_path):
    resolved = {"seed": 1, "data": {"n_folds": 3, "fold": None}, "finalise": False, "paths": {"root_dir": "/a"}}
    job = {**resolved, "data": {"n_folds": 3, "fold": 2}, "paths": {"root_dir": "/b"}}
    finalise = {**resolved, "finalise": True}
    assert config_digest(job) == config_digest(resolved) == config_digest(finalise)
    assert config_digest({**resolved, "seed": 2}) != config_digest(resolved)
    assert fold_jobs_folder(tmp_path, config_digest(job)) == fold_jobs_folder(tmp_path, config_digest(resolved))
    assert without_fold_job_overrides(["seed=1", "data.fold=2", "finalise=true", "+data.fold=1"]) == ["seed=1"]


def test_folds_must_agree(tmp_path):
    folds = pd.DataFrame({"patient_id": ["P1", "P2", "P3"], "fold": [0, 1, 2]})
    folds.to_csv(tmp_path / "folds.csv", index=False)
    check_folds_agree(tmp_path / "folds.csv", folds.iloc[::-1])  # row order is no difference
    with pytest.raises(ValueError, match=r"differ .* for 2 patient\(s\), e.g. \['P1', 'P2'\]"):
        check_folds_agree(tmp_path / "folds.csv", folds.assign(fold=[1, 0, 2]))

"""Re-create a tracked training run, or say precisely why not (the ``dlm-reproduce`` command).

The run's provenance (code version, code and config from outside the package, cohort file
digests, command-line overrides) is read from the tracking store and checked against the
present; on a match the run is
trained and evaluated again into a new run tagged ``dlm_ml.reproduces``, and the
original and new metrics and predictions are printed side by side.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from dlm_ml.data.cohort.fingerprint import cohort_file_digests, diff_digests
from dlm_ml.tracking import client as tracking
from dlm_ml.tracking.config_keys import is_result_key
from dlm_ml.tracking.external_code import ARTIFACT as EXTERNAL_CODE_ARTIFACT
from dlm_ml.tracking.external_code import external_code_differences, searchpath_override
from dlm_ml.tracking.provenance import NOT_A_CHECKOUT, PACKAGE_DIR, git_state

DEFAULT_URI = "sqlite:///outputs/mlflow/mlflow.db"


def _code_description(tags: dict) -> str:
    if tags.get("git_commit") == NOT_A_CHECKOUT:
        return f"outside a git checkout (installed dlm_ml {tags.get('dlm_ml_version', 'of unknown version')})"
    return f"at commit {tags.get('git_commit', 'unknown')}"


def _outside_checkout_differences(tags: dict, now: dict) -> list[str]:
    """Code outside a git checkout (an installed package) can only be compared by version."""
    if tags.get("git_commit") == now["git_commit"] == NOT_A_CHECKOUT \
            and tags.get("dlm_ml_version") == now.get("dlm_ml_version"):
        return []  # the same installed release: its version is all there is to compare
    return [f"code cannot be compared by commit: the run was made with code {_code_description(tags)}, "
            f"the current code is {_code_description(now)}"]


def code_notes(tags: dict, code_dir: str | Path | None = None) -> list[str]:
    """What a reader of a reproduction should know about the code check even when nothing differs."""
    now = git_state(code_dir)
    if tags.get("git_commit") == now["git_commit"] == NOT_A_CHECKOUT:
        return [f"the run and the current code are both outside a git checkout; the code was checked by its "
                f"installed version only (dlm_ml {now.get('dlm_ml_version')}), not by commit"]
    return []


def code_differences(tags: dict, code_dir: str | Path | None = None) -> list[str]:
    """How the current code differs from the code a run was made with (empty when identical).
    ``code_dir``: the code's folder in its repository (default: the dlm_ml package)."""
    now = git_state(code_dir)
    then_commit, now_commit = tags.get("git_commit", "unknown"), now["git_commit"]
    problems = []
    if NOT_A_CHECKOUT in (then_commit, now_commit):
        return _outside_checkout_differences(tags, now)
    if then_commit == "unknown":
        return [f"the run records no code version (git_commit {then_commit!r}); it cannot be compared"]
    if then_commit != now_commit:
        changed = _git_lines(["diff", "--name-only", then_commit, now_commit], code_dir)
        detail = f"; files changed since: {', '.join(changed)}" if changed else ""
        if changed is None:
            detail = f"; commit {then_commit} is not in this repository"
        problems.append(f"code differs: the run was made at commit {then_commit}, the current commit is "
                        f"{now_commit}{detail}")
    if tags.get("git_dirty") == "true" and now.get("git_diff_sha256") != tags.get("git_diff_sha256"):
        problems.append("the run was made with uncommitted changes (saved as provenance/uncommitted.diff) that "
                        "differ from the current working tree")
    elif tags.get("git_dirty") != "true" and now.get("git_dirty") == "true":
        dirty = _git_lines(["status", "--porcelain"], code_dir) or []
        problems.append("the working tree has uncommitted changes the run did not have: "
                        + ", ".join(line[3:] for line in dirty))
    return problems


def _git_lines(args: list[str], code_dir) -> list[str] | None:
    proc = subprocess.run(["git", *args], cwd=Path(code_dir or PACKAGE_DIR), capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return [line for line in proc.stdout.splitlines() if line.strip()]


def cohort_differences(recorded: dict[str, str], cohort_dir: str | Path) -> list[str]:
    """Which files of the cohort were added, removed or changed since the run."""
    cohort_dir = Path(cohort_dir)
    if not cohort_dir.is_dir():
        return [f"cohort folder {cohort_dir} no longer exists"]
    diff = diff_digests(recorded, cohort_file_digests(cohort_dir, verify=True))
    problems = []
    for kind in ("changed", "added", "removed"):
        if diff[kind]:
            shown = ", ".join(diff[kind][:20]) + (f" and {len(diff[kind]) - 20} more" if len(diff[kind]) > 20 else "")
            problems.append(f"cohort {cohort_dir}: {len(diff[kind])} file(s) {kind} since the run: {shown}")
    return problems


def _artifact_json(client, run_id: str, path: str):
    return json.loads(tracking.download_artifact(client, run_id, path).read_text())


def external_code_record(client, run_id: str) -> dict | None:
    """The run's record of code and config from outside the package; None for a run made
    before such records were kept."""
    folder = EXTERNAL_CODE_ARTIFACT.rsplit("/", 1)[0]
    if EXTERNAL_CODE_ARTIFACT not in {a.path for a in client.list_artifacts(run_id, folder)}:
        return None
    return _artifact_json(client, run_id, EXTERNAL_CODE_ARTIFACT)


def _predictions(client, run_id: str) -> pd.DataFrame:
    return pd.read_csv(tracking.download_artifact(client, run_id, "predictions.csv"),
                       dtype={"patient_id": str, "lesion_id": str})


def compare_runs(client, original_id: str, new_id: str) -> tuple[pd.DataFrame, float]:
    """Metrics side by side and the largest absolute difference of out-of-fold predictions."""
    a, b = client.get_run(original_id).data.metrics, client.get_run(new_id).data.metrics
    skip = ("elapsed_s",)
    names = sorted(k for k in set(a) | set(b) if k not in skip and not k.startswith("count_"))
    table = pd.DataFrame({"metric": names, "original": [a.get(k, np.nan) for k in names],
                          "reproduced": [b.get(k, np.nan) for k in names]})
    table["difference"] = table.reproduced - table.original
    pa, pb = _predictions(client, original_id), _predictions(client, new_id)
    joined = pa.merge(pb, on=["patient_id", "lesion_id"], suffixes=("_a", "_b"), how="outer", indicator=True)
    if (joined["_merge"] != "both").any():
        return table, float("inf")
    if (joined.fold_a != joined.fold_b).any():
        return table, float("inf")
    return table, float(np.max(np.abs(joined.prob_pcr_a - joined.prob_pcr_b)))


def reproduce(run_id: str, tracking_uri: str = DEFAULT_URI, *, force: bool = False, extra_overrides=(),
              log=print) -> dict:
    """Check and re-run ``run_id``; returns the new run id, the comparison and any differences."""
    client = tracking.open_client(tracking_uri)
    run = client.get_run(run_id)
    tags = run.data.tags
    if tags.get("dlm_ml.role") != "train":
        raise ValueError(f"run {run_id} is not a dlm-train parent run (role {tags.get('dlm_ml.role')!r})")
    cohort_dir = tags.get("cohort_dir") or run.data.params.get("data.cohort_dir")
    external = external_code_record(client, run_id)
    problems = code_differences(tags)
    problems += external_code_differences(external) if external else []
    problems += cohort_differences(_artifact_json(client, run_id, "provenance/cohort_files.json"), cohort_dir)
    if problems and not force:
        raise RefusedError(run_id, problems)
    for p in problems:
        log(f"warning (proceeding anyway): {p}")
    notes = code_notes(tags) + ([] if external else [
        f"the run has no {EXTERNAL_CODE_ARTIFACT} (made before code outside the package was recorded): "
        "modules, config folders or weights from outside dlm_ml, if it used any, were not checked"])
    for note in notes:
        log(f"note: {note}")

    # Where results go is dlm-reproduce's own choice (below); only what determines them is replayed.
    overrides = [o for o in _artifact_json(client, run_id, "provenance/overrides.json") if is_result_key(o)]
    # hydra.* is not replayed from the overrides, but the search path decides which config
    # files compose the run (a lab's model/my_net.yaml): it is given back from the record.
    searchpath = searchpath_override(external or {})
    if searchpath and not any(o.lstrip("+~").startswith("hydra.searchpath") for o in extra_overrides):
        overrides.append(searchpath)
    experiment = client.get_experiment(run.info.experiment_id)
    params = run.data.params
    command = [sys.executable, "-m", "dlm_ml.train", *overrides, f"reproduce_of={run_id}",
               f"logger.tracking_uri={tracking_uri}", f"logger.experiment_name={experiment.name}",
               f"paths.root_dir={params['paths.root_dir']}", *extra_overrides]
    if params.get("logger.artifact_location"):
        command.append(f"logger.artifact_location={params['logger.artifact_location']}")
    log("re-running: " + " ".join(command[1:]))
    proc = subprocess.run(command)
    if proc.returncode != 0:
        raise RuntimeError(f"re-running run {run_id} failed with exit code {proc.returncode}")
    new = client.search_runs([run.info.experiment_id], f"tags.`dlm_ml.reproduces` = '{run_id}'",
                             order_by=["attributes.start_time DESC"], max_results=1)[0]
    table, max_diff = compare_runs(client, run_id, new.info.run_id)
    tracking.set_tags(client, new.info.run_id, {"dlm_ml.reproduction_max_abs_diff": f"{max_diff:.3g}"})
    tracking.log_text(client, new.info.run_id, table.to_csv(index=False), "reproduction/comparison.csv")
    if problems:  # --force: the reproduction carries what differed from the recorded run
        tracking.log_text(client, new.info.run_id, "\n".join(problems) + "\n", "reproduction/forced_differences.txt")
    return {"new_run_id": new.info.run_id, "comparison": table, "max_abs_prediction_diff": max_diff,
            "problems": problems}


class RefusedError(RuntimeError):
    def __init__(self, run_id: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"run {run_id} cannot be reproduced as it was recorded:\n  - " + "\n  - ".join(problems)
                         + "\n(pass --force to re-run anyway; the differences are then logged with the new run)")

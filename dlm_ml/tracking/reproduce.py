"""dlm-reproduce RUN_ID: re-create a tracked training run, or say precisely why not.

The run's provenance (code version, cohort file digests, command-line overrides) is
read from the tracking store and checked against the present; on a match the run is
trained and evaluated again into a new run tagged ``dlm_ml.reproduces``, and the
original and new metrics and predictions are printed side by side.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from dlm_ml import tracking
from dlm_ml.data.cohort.fingerprint import cohort_file_digests, diff_digests

DEFAULT_URI = "sqlite:///outputs/mlflow/mlflow.db"
# Overrides that say where results go, not what they are; dlm-reproduce sets its own.
_PLACEMENT_KEYS = ("logger.", "resume", "reproduce_of", "hydra.")


def code_differences(tags: dict, repo_dir: str | Path | None = None) -> list[str]:
    """How the current code differs from the code a run was made with (empty when identical)."""
    now = tracking.git_state(repo_dir)
    then_commit, now_commit = tags.get("git_commit", "unknown"), now.get("git_commit", "unknown")
    problems = []
    if "unknown" in (then_commit, now_commit):
        problems.append(f"code version cannot be compared (run: {then_commit}, now: {now_commit})")
        return problems
    if then_commit != now_commit:
        changed = _git_lines(["diff", "--name-only", then_commit, now_commit], repo_dir)
        detail = f"; files changed since: {', '.join(changed)}" if changed else ""
        if changed is None:
            detail = f"; commit {then_commit} is not in this repository"
        problems.append(f"code differs: the run was made at commit {then_commit}, the current commit is "
                        f"{now_commit}{detail}")
    if tags.get("git_dirty") == "true" and now.get("git_diff_sha256") != tags.get("git_diff_sha256"):
        problems.append("the run was made with uncommitted changes (saved as provenance/uncommitted.diff) that "
                        "differ from the current working tree")
    elif tags.get("git_dirty") != "true" and now.get("git_dirty") == "true":
        dirty = _git_lines(["status", "--porcelain"], repo_dir) or []
        problems.append("the working tree has uncommitted changes the run did not have: "
                        + ", ".join(line[3:] for line in dirty))
    return problems


def _git_lines(args: list[str], repo_dir) -> list[str] | None:
    repo_dir = Path(repo_dir or Path(__file__).resolve().parents[2])
    proc = subprocess.run(["git", *args], cwd=repo_dir, capture_output=True, text=True)
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
    problems = code_differences(tags)
    problems += cohort_differences(_artifact_json(client, run_id, "provenance/cohort_files.json"), cohort_dir)
    if problems and not force:
        raise RefusedError(run_id, problems)
    for p in problems:
        log(f"warning (proceeding anyway): {p}")

    overrides = [o for o in _artifact_json(client, run_id, "provenance/overrides.json")
                 if not o.lstrip("+~").startswith(_PLACEMENT_KEYS)]
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
    return {"new_run_id": new.info.run_id, "comparison": table, "max_abs_prediction_diff": max_diff,
            "problems": problems}


class RefusedError(RuntimeError):
    def __init__(self, run_id: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"run {run_id} cannot be reproduced as it was recorded:\n  - " + "\n  - ".join(problems)
                         + "\n(pass --force to re-run anyway; the differences are then logged with the new run)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dlm-reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("run_id", help="MLflow parent run id of a dlm-train run")
    parser.add_argument("--tracking-uri", default=DEFAULT_URI,
                        help=f"tracking store holding the run (default: {DEFAULT_URI}, relative to this folder)")
    parser.add_argument("--force", action="store_true", help="re-run even when code or cohort differ")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. trainer=gpu")
    args = parser.parse_intermixed_args(argv)  # overrides may follow the options
    try:
        result = reproduce(args.run_id, args.tracking_uri, force=args.force, extra_overrides=args.overrides)
    except RefusedError as err:
        print(err, file=sys.stderr)
        return 2
    table = result["comparison"]
    with pd.option_context("display.float_format", "{:.6f}".format, "display.width", 120):
        print(table.to_string(index=False))
    print(f"original run {args.run_id} → reproduced run {result['new_run_id']}; "
          f"max |Δ prob_pcr| over lesions = {result['max_abs_prediction_diff']:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

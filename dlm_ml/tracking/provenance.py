"""What a run was made from: code version, environment, configuration and cohort.

Tags carry true values or say plainly why a value does not exist: code run from an installed
package rather than a git checkout is recorded as ``git_commit = none (not a git checkout)``
with the installed version, never as a guess. Only pseudonymous cohort ids (patient, lesion)
reach the store; no name or DICOM identifier is read here.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import warnings
from importlib import metadata
from pathlib import Path

import mlflow.data
import torch
from hydra.core.hydra_config import HydraConfig
from mlflow.entities import DatasetInput, InputTag
from mlflow.tracking import MlflowClient

from dlm_ml.tracking.client import flatten, log_file, log_params, log_text, set_tags
from dlm_ml.tracking.external_code import PACKAGE_DIR, collect_external_code, external_code_tags
from dlm_ml.utils.atomic import atomic_write_json, atomic_write_text
from dlm_ml.utils.hashing import sha256_hex

#: ``git_commit`` of code that is not in a git checkout (e.g. installed from a wheel).
NOT_A_CHECKOUT = "none (not a git checkout)"
PACKAGES = ("dlm_ml", "torch", "monai", "pytorch-lightning", "hydra-core", "SimpleITK", "scikit-learn",
            "mlflow", "numpy", "scipy", "pandas")
__all__ = ["NOT_A_CHECKOUT", "PACKAGE_DIR", "git_diff", "git_state", "hardware", "hydra_searchpath",
           "installed_version", "package_versions", "record_provenance", "requirements_lock"]


def _git(code_dir: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=code_dir, capture_output=True, text=True, check=True).stdout


def installed_version() -> str:
    try:
        return metadata.version("dlm_ml")
    except metadata.PackageNotFoundError:
        return "not installed"


def git_state(code_dir: str | Path | None = None) -> dict[str, str]:
    """Code version of the files in ``code_dir`` (default: the dlm_ml package).

    In a git checkout: ``git_commit`` (``git rev-parse HEAD``), ``git_dirty`` (``true`` when a
    tracked file differs from HEAD or an untracked, not ignored file exists anywhere in the
    repository) and, when dirty, ``git_diff_sha256``. When ``code_dir`` is in no repository, or
    only inside one that does not track it (a wheel installed into a virtual environment that
    lies in some checkout), ``git_commit`` is :data:`NOT_A_CHECKOUT` and ``git_dirty`` is
    ``unknown``; ``dlm_ml_version`` is the installed version in both cases.
    """
    code_dir = Path(code_dir or PACKAGE_DIR)
    state = {"dlm_ml_version": installed_version()}
    try:
        tracked = _git(code_dir, "ls-files", "--", ".").strip()
        if not tracked:
            raise subprocess.CalledProcessError(1, "git ls-files")  # a repository, but not of this code
        commit = _git(code_dir, "rev-parse", "HEAD").strip()
        diff = _git(code_dir, "diff", "HEAD")
        untracked = _git(code_dir, "ls-files", "--others", "--exclude-standard", "--full-name", ":/")
    except (subprocess.CalledProcessError, FileNotFoundError, OSError):
        return {**state, "git_commit": NOT_A_CHECKOUT, "git_dirty": "unknown"}
    dirty = bool(diff.strip() or untracked.strip())
    state.update(git_commit=commit, git_dirty=str(dirty).lower())
    if dirty:
        state["git_diff_sha256"] = sha256_hex(diff + untracked)
    return state


def git_diff(code_dir: str | Path | None = None) -> str:
    """The uncommitted changes: the tracked files' diff against HEAD, then the untracked files."""
    code_dir = Path(code_dir or PACKAGE_DIR)
    try:
        diff = _git(code_dir, "diff", "HEAD")
        untracked = _git(code_dir, "ls-files", "--others", "--exclude-standard", "--full-name", ":/")
    except (subprocess.CalledProcessError, FileNotFoundError, OSError):
        return ""
    return diff + ("\n# untracked files:\n" + untracked if untracked.strip() else "")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def requirements_lock() -> str:
    """Every installed distribution as ``name==version``, one a line, sorted."""
    lines = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"])
    return "\n".join(dict.fromkeys(lines)) + "\n"


def hardware() -> dict[str, str]:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": str(os.cpu_count()),
            "torch_cuda": str(torch.version.cuda), "cuda_available": str(torch.cuda.is_available())}
    if torch.cuda.is_available():
        info["cuda_devices"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        info["cudnn"] = str(torch.backends.cudnn.version())
    return info


def hydra_searchpath() -> list[str]:
    """``hydra.searchpath`` of the running Hydra job (empty outside a Hydra app)."""
    try:
        return [str(entry) for entry in HydraConfig.get().searchpath]
    except ValueError:
        return []


def record_provenance(client: MlflowClient, run_id: str, *, config_yaml: str, resolved: dict, overrides: list[str],
                      cohort, fingerprint: str, digests: dict[str, str], out_dir: Path,
                      torch_deterministic: bool, searchpath: list[str] | None = None) -> dict[str, str]:
    """Log the run's code, configuration, data and environment: the flattened resolved config
    as params, the rest as tags and ``provenance/`` artifacts (also written to ``out_dir``).
    Code and config from outside the package (``searchpath``, default: the running job's
    ``hydra.searchpath``; modules of ``_target_`` entries; ``weights`` files) go to
    ``provenance/external_code.json`` (:mod:`dlm_ml.tracking.external_code`). Returns the tags."""
    log_params(client, run_id, flatten(resolved))
    code = git_state()
    external = collect_external_code(resolved, hydra_searchpath() if searchpath is None else searchpath)
    log_file(client, run_id, atomic_write_json(out_dir / "external_code.json", external), "provenance")
    files = {"config.yaml": config_yaml, "overrides.json": json.dumps(overrides, indent=2),
             "requirements.lock.txt": requirements_lock(),
             "cohort_files.json": json.dumps(digests, indent=1, sort_keys=True)}
    for name, text in files.items():
        log_file(client, run_id, atomic_write_text(out_dir / name, text), "provenance")
    if code.get("git_dirty") == "true":
        log_text(client, run_id, git_diff(), "provenance/uncommitted.diff")
    tags = {
        **code, **{f"version.{k}": v for k, v in package_versions().items()},
        **{f"hardware.{k}": v for k, v in hardware().items()},
        "cohort_fingerprint": fingerprint, "cohort_dir": str(cohort.root), "seed": str(resolved["seed"]),
        "num_workers": str(resolved["data"]["datamodule"].get("num_workers", 0)), "output_dir": str(out_dir),
        "torch_deterministic": str(bool(torch_deterministic)).lower(), **external_code_tags(external),
    }
    set_tags(client, run_id, tags)
    # The lesions with an outcome as an MLflow dataset (shown in the UI): pseudonymous ids only.
    lesions = cohort.labelled_lesions()[["patient_id", "lesion_id", "x_mm", "y_mm", "z_mm", "diameter_mm", "pcr"]]
    with warnings.catch_warnings():
        # MLflow infers a model-serving schema for the table and hints that integer columns cannot
        # hold missing values, and finds two equal readings of a folder path as the source: neither
        # concerns a logged training set.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column", category=UserWarning)
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways",
                                category=UserWarning)
        dataset = mlflow.data.from_pandas(lesions, source=str(cohort.root), name=str(cohort.meta.get("name", "cohort")),
                                          digest=fingerprint[:32], targets="pcr")
    client.log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(),
                                                     tags=[InputTag("mlflow.data.context", "training")])])
    return tags

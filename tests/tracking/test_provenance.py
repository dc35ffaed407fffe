"""Provenance tags carry true values: checked against git itself in real temporary repositories."""

from __future__ import annotations

import subprocess
from importlib import metadata

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.data.cohort import validate_cohort
from dlm_ml.data.cohort.fingerprint import cohort_file_digests, fingerprint_from_digests
from dlm_ml.tracking.provenance import NOT_A_CHECKOUT, PACKAGE_DIR, git_state, record_provenance
from dlm_ml.tracking.reproduce import code_differences, code_notes


def _git(repo, *args) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repository with a committed package folder ``pkg/`` and an ignored folder ``venv/``."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # never find an enclosing repo
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "t@example.org")
    _git(root, "config", "user.name", "t")
    (root / "pkg" / "model.py").write_text("a = 1\n")
    (root / ".gitignore").write_text("venv/\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "one")
    return root


def test_clean_checkout(repo):
    state = git_state(repo / "pkg")
    assert state["git_commit"] == _git(repo, "rev-parse", "HEAD")
    assert state["git_dirty"] == "false" and "git_diff_sha256" not in state


def test_modified_tracked_file_is_dirty(repo):
    (repo / "pkg" / "model.py").write_text("a = 2\n")
    state = git_state(repo / "pkg")
    assert state["git_commit"] == _git(repo, "rev-parse", "HEAD")
    assert state["git_dirty"] == "true" and len(state["git_diff_sha256"]) == 64


def test_untracked_file_anywhere_in_the_repository_is_dirty(repo):
    (repo / "notes.txt").write_text("outside the package folder\n")
    assert git_state(repo / "pkg")["git_dirty"] == "true"


def test_ignored_file_is_not_dirty(repo):
    (repo / "venv").mkdir()
    (repo / "venv" / "x.py").write_text("")
    assert git_state(repo / "pkg")["git_dirty"] == "false"


def test_new_commit_is_seen(repo):
    first = git_state(repo / "pkg")["git_commit"]
    (repo / "pkg" / "model.py").write_text("a = 3\n")
    _git(repo, "commit", "-qam", "two")
    state = git_state(repo / "pkg")
    assert state["git_commit"] == _git(repo, "rev-parse", "HEAD") != first and state["git_dirty"] == "false"


def test_code_outside_any_repository(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    (tmp_path / "site-packages" / "dlm_ml").mkdir(parents=True)
    state = git_state(tmp_path / "site-packages" / "dlm_ml")
    assert state["git_commit"] == NOT_A_CHECKOUT and state["git_dirty"] == "unknown"
    assert state["dlm_ml_version"] == metadata.version("dlm_ml")


def test_installed_code_inside_an_unrelated_checkout_is_not_that_checkout(repo):
    """A wheel installed into an (ignored) virtual environment inside a checkout must not be
    recorded with the checkout's commit."""
    installed = repo / "venv" / "site-packages" / "dlm_ml"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    assert git_state(installed)["git_commit"] == NOT_A_CHECKOUT


def test_reproduce_says_clearly_when_code_is_outside_a_checkout(repo, tmp_path):
    installed = {"git_commit": NOT_A_CHECKOUT, "git_dirty": "unknown", "dlm_ml_version": "0.0.1"}
    problems = code_differences(installed, repo / "pkg")
    assert len(problems) == 1 and "outside a git checkout (installed dlm_ml 0.0.1)" in problems[0]
    assert _git(repo, "rev-parse", "HEAD") in problems[0]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    same_release = {**installed, "dlm_ml_version": metadata.version("dlm_ml")}
    assert code_differences(same_release, outside) == []
    assert "checked by its installed version only" in code_notes(same_release, outside)[0]
    other_release = code_differences(installed, outside)
    assert "installed dlm_ml 0.0.1" in other_release[0] and metadata.version("dlm_ml") in other_release[0]


def test_recorded_tags_are_the_true_state(tracker, handmade_cohort, tmp_path):
    """The tags a training run records for this very code equal what git says about it."""
    _, cohort = validate_cohort(handmade_cohort)
    digests = cohort_file_digests(cohort.root)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"data.cohort_dir={handmade_cohort}"])
    resolved = OmegaConf.to_container(cfg.data, resolve=True)
    run_id = tracker.client.create_run(tracker.experiment_id).info.run_id
    tags = record_provenance(tracker.client, run_id, config_yaml="seed: 42\n",
                             resolved={"seed": 42, "data": resolved}, overrides=["seed=42"], cohort=cohort,
                             fingerprint=fingerprint_from_digests(digests), digests=digests, out_dir=tmp_path,
                             torch_deterministic=True)
    stored = tracker.client.get_run(run_id).data.tags
    assert stored["git_commit"] == tags["git_commit"] == _git(PACKAGE_DIR, "rev-parse", "HEAD")
    dirty = bool(_git(PACKAGE_DIR, "status", "--porcelain", "--untracked-files=normal", ":/"))
    assert stored["git_dirty"] == str(dirty).lower()
    assert stored["torch_deterministic"] == "true"
    assert stored["dlm_ml_version"] == metadata.version("dlm_ml")
    names = {a.path for a in tracker.client.list_artifacts(run_id, "provenance")}
    assert {"provenance/config.yaml", "provenance/overrides.json", "provenance/requirements.lock.txt",
            "provenance/cohort_files.json"} <= names
    assert ("provenance/uncommitted.diff" in names) == dirty


def test_code_differences_names_commit_and_files(repo):
    tags = git_state(repo / "pkg")
    assert code_differences(tags, repo / "pkg") == []
    (repo / "pkg" / "model.py").write_text("a = 2\n")
    dirty = code_differences(tags, repo / "pkg")
    assert dirty and "pkg/model.py" in dirty[0]
    _git(repo, "commit", "-qam", "two")
    changed = code_differences(tags, repo / "pkg")
    assert len(changed) == 1 and tags["git_commit"] in changed[0]
    assert "files changed since: pkg/model.py" in changed[0]

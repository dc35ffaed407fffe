"""Provenance tags carry true values: checked against git itself in real temporary repositories;
code and config from outside the package are recorded with their hashes and checked again."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.data.cohort import validate_cohort
from dlm_ml.data.cohort.fingerprint import cohort_file_digests, fingerprint_from_digests
from dlm_ml.tracking.external_code import (
    collect_external_code,
    external_code_differences,
    searchpath_override,
)
from dlm_ml.tracking.provenance import NOT_A_CHECKOUT, PACKAGE_DIR, git_state, record_provenance
from dlm_ml.tracking.reproduce import code_differences, code_notes
from dlm_ml.utils.hashing import file_sha256, payload_digest


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
            "provenance/cohort_files.json", "provenance/external_code.json"} <= names
    assert ("provenance/uncommitted.diff" in names) == dirty
    assert stored["dlm_ml.external_code"] == "0"  # dlm_ml's own targets only, no search path outside Hydra


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


# --- code and config from outside the package -------------------------------------------------

LAB_MODULE = "dlm_test_lab_nets"
LAB_SOURCE = """from torch import nn


class TinyNet(nn.Module):
    def __init__(self, in_channels: int = 2):
        super().__init__()
        self.linear = nn.Linear(in_channels, 1)

    def forward(self, image, present=None, covariates=None):
        return self.linear(image.mean(dim=(2, 3, 4))).squeeze(-1)


def make_head(width: int = 1):
    return nn.Linear(width, 1)
"""
LAB_YAML = """net:
  _target_: dlm_test_lab_nets.TinyNet
  in_channels: ${dlm_channels:${data.patches.timepoints},${data.patches.modalities}}
optimizer:
  _target_: torch.optim.AdamW
  _partial_: true
  lr: 0.001
scheduler: null
module:
  _target_: dlm_ml.models.module.PCRClassifier
  _partial_: true
"""


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A lab's network module (importable from ``lab/``), its config folder (a space and a comma
    in the name, as a user's folder may have) and a weights file."""
    code = tmp_path / "lab"
    code.mkdir()
    (code / f"{LAB_MODULE}.py").write_text(LAB_SOURCE)
    conf = tmp_path / "lab conf, v1"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "my_net.yaml").write_text(LAB_YAML)
    (tmp_path / "weights.pt").write_bytes(b"\x00\x01weights")
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.setenv("PYTHONPATH", str(code))  # what a re-run in a fresh interpreter sees
    yield {"code": code, "module": code / f"{LAB_MODULE}.py", "conf": conf, "weights": tmp_path / "weights.pt"}
    sys.modules.pop(LAB_MODULE, None)


def _lab_config(lab) -> dict:
    return {"seed": 1, "model": {
        "net": {"_target_": f"{LAB_MODULE}.TinyNet", "in_channels": 2,
                "encoder": {"_target_": "dlm_ml.models.networks.small_cnn", "weights": str(lab["weights"])}},
        "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True},
        "heads": [{"_target_": f"{LAB_MODULE}.make_head", "_partial_": True},
                  {"_target_": "collections.OrderedDict"}],
        "backbone": {"weights": None}}}


def test_external_code_records_modules_searchpath_and_weights(lab):
    record = collect_external_code(_lab_config(lab), [f"file://{lab['conf']}", "pkg://dlm_ml.conf"])
    # only the lab's module: dlm_ml's (small_cnn, PCRClassifier), torch's and the stdlib's are versioned otherwise
    assert [m["module"] for m in record["modules"]] == [LAB_MODULE]
    module = record["modules"][0]
    assert module["path"] == str(lab["module"].resolve()) and module["sha256"] == file_sha256(lab["module"])
    assert module["import_root"] == str(lab["code"].resolve())
    assert {t["key"] for t in module["targets"]} == {"model.net._target_", "model.heads[0]._target_"}
    folder, package = record["searchpath"]
    files = {"model/my_net.yaml": file_sha256(lab["conf"] / "model" / "my_net.yaml")}
    assert folder["path"] == str(lab["conf"].resolve()) and folder["files"] == files
    assert folder["sha256"] == payload_digest(files, short=False)
    assert package == {"entry": "pkg://dlm_ml.conf", "scheme": "pkg"}  # by name only
    assert record["weights"] == [{"key": "model.net.encoder.weights", "value": str(lab["weights"]),
                                  "path": str(lab["weights"].resolve()), "sha256": file_sha256(lab["weights"])}]
    assert record["unresolved_targets"] == []


def test_plain_searchpath_entry_is_resolved_like_hydra(lab, tmp_path):
    relative = collect_external_code({}, [lab["conf"].name], cwd=tmp_path)["searchpath"][0]
    assert relative["path"] == str(lab["conf"].resolve()) and "model/my_net.yaml" in relative["files"]


def test_a_target_that_cannot_be_imported_is_recorded_as_such(lab):
    record = collect_external_code({"net": {"_target_": "no_such_lab_module.Net"}}, [])
    assert record["modules"] == []
    assert record["unresolved_targets"][0]["key"] == "net._target_"
    assert "no_such_lab_module" in record["unresolved_targets"][0]["error"]


def test_external_code_differences_name_the_file_and_both_hashes(lab):
    record = collect_external_code(_lab_config(lab), [f"file://{lab['conf']}"])
    assert external_code_differences(record) == []
    source = lab["module"].read_bytes()
    lab["module"].write_bytes(source.replace(b"width: int = 1", b"width: int = 2"))  # one byte
    changed = external_code_differences(record)
    assert len(changed) == 1 and str(lab["module"].resolve()) in changed[0]
    assert f"sha256 recorded {record['modules'][0]['sha256']}" in changed[0]
    assert f"now {file_sha256(lab['module'])}" in changed[0]
    lab["module"].write_bytes(source)
    assert external_code_differences(record) == []

    yaml_file = lab["conf"] / "model" / "my_net.yaml"
    yaml_file.write_text(LAB_YAML.replace("0.001", "0.002"))
    (lab["conf"] / "model" / "other_net.yml").write_text("net: {}\n")
    lab["weights"].unlink()
    problems = "\n".join(external_code_differences(record))
    assert "1 config file(s) changed since the run: model/my_net.yaml" in problems
    assert "1 config file(s) added since the run: model/other_net.yml" in problems
    assert f"weights (model.net.encoder.weights): file {lab['weights'].resolve()} no longer exists" in problems


def test_a_module_off_pythonpath_is_named(lab, monkeypatch):
    record = collect_external_code(_lab_config(lab), [])
    monkeypatch.delenv("PYTHONPATH")
    problems = external_code_differences(record)
    assert len(problems) == 1
    assert f"module {LAB_MODULE} (named by model.net._target_={LAB_MODULE}.TinyNet" in problems[0]
    assert "cannot be imported" in problems[0] and f"put {lab['code'].resolve()} on PYTHONPATH" in problems[0]


def test_searchpath_override_composes_the_recorded_config(lab):
    """The override dlm-reproduce passes gives a re-run the same search path, also for a folder
    whose name holds characters of Hydra's override grammar."""
    record = collect_external_code({}, [f"file://{lab['conf']}"])
    override = searchpath_override(record)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[override, "model=my_net"], return_hydra_config=True)
    assert list(cfg.hydra.searchpath) == [f"file://{lab['conf'].resolve()}"]
    assert cfg.model.net._target_ == f"{LAB_MODULE}.TinyNet"
    assert searchpath_override({"searchpath": []}) is None


def test_record_provenance_stores_the_external_code(tracker, handmade_cohort, lab, tmp_path):
    _, cohort = validate_cohort(handmade_cohort)
    digests = cohort_file_digests(cohort.root)
    run_id = tracker.client.create_run(tracker.experiment_id).info.run_id
    resolved = {**_lab_config(lab), "data": {"datamodule": {"num_workers": 0}}}
    tags = record_provenance(tracker.client, run_id, config_yaml="seed: 1\n", resolved=resolved, overrides=[],
                             cohort=cohort, fingerprint=fingerprint_from_digests(digests), digests=digests,
                             out_dir=tmp_path / "out", torch_deterministic=False,
                             searchpath=[f"file://{lab['conf']}"])
    stored = json.loads(Path(tracker.client.download_artifacts(run_id, "provenance/external_code.json",
                                                               str(tmp_path))).read_text())
    assert stored == json.loads((tmp_path / "out" / "external_code.json").read_text())
    assert [m["path"] for m in stored["modules"]] == [str(lab["module"].resolve())]
    assert stored["searchpath"][0]["files"] == {"model/my_net.yaml": file_sha256(lab["conf"] / "model/my_net.yaml")}
    run_tags = tracker.client.get_run(run_id).data.tags
    assert run_tags["dlm_ml.external_code"] == tags["dlm_ml.external_code"] == "3"  # module, folder, weights
    assert run_tags["dlm_ml.external_modules"] == LAB_MODULE
    assert json.loads(run_tags["dlm_ml.searchpath"]) == [f"file://{lab['conf']}"]

"""Where dlm-compare and the comparison notebook look for the tracking store."""

from __future__ import annotations

import pytest

from dlm_ml.cli.compare import locate_tracking_uri


def _store(root):
    db = root / "outputs" / "mlflow" / "mlflow.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"")
    return db


def test_explicit_uri_then_root_then_upward(tmp_path):
    project = tmp_path / "project"
    db = _store(project)
    deep = project / "notebooks" / "sub"
    deep.mkdir(parents=True)
    assert locate_tracking_uri({"DLM_ML_TRACKING_URI": "http://server:5000"}, deep) == "http://server:5000"
    assert locate_tracking_uri({}, deep) == f"sqlite:///{db.resolve()}"
    other = _store(tmp_path / "other")
    assert locate_tracking_uri({"DLM_ML_ROOT": str(tmp_path / "other")}, deep) == f"sqlite:///{other.resolve()}"


def test_no_store_is_an_error_naming_where_it_looked(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as err:
        locate_tracking_uri({"DLM_ML_ROOT": str(tmp_path / "nowhere")}, empty)
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "outputs" / "mlflow" / "mlflow.db") in message
    assert str(empty / "outputs" / "mlflow" / "mlflow.db") in message
    assert not (empty / "outputs").exists()  # nothing created

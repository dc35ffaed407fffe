"""``dlm-stats kappa``: stating the rating scale (``--categories``) and refusing labels of different types."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dlm_ml.cli.stats import main
from dlm_ml.stats.agreement import cohen_kappa

# Three readers' 1-5 Likert scores of eight lesions; nobody gave 3, so inferred categories would make
# 2 and 4 neighbours.
LIKERT = pd.DataFrame({"reader_1": [1, 2, 2, 4, 5, 5, 1, 4], "reader_2": [1, 2, 4, 4, 5, 4, 2, 4],
                       "reader_3": [1, 1, 4, 4, 5, 5, 2, 2]})


def run_main(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def likert_csv(tmp_path):
    path = tmp_path / "likert.csv"
    LIKERT.to_csv(path, index=False)
    return path


def test_categories_option_states_the_scale(likert_csv, capsys):
    code, out, err = run_main(capsys, "kappa", likert_csv, "--rater-col", "reader_1", "--rater-col", "reader_2",
                              "--weights", "quadratic", "--categories", "1,2,3,4,5", "--json")
    assert code == 0 and err == ""
    got = json.loads(out)["cohen"]
    expected = cohen_kappa(LIKERT.reader_1, LIKERT.reader_2, weights="quadratic", categories=[1, 2, 3, 4, 5])
    assert got["categories"] == [1, 2, 3, 4, 5]
    assert got["kappa"] == pytest.approx(expected.kappa, rel=1e-12)
    assert got["table"][2] == [0, 0, 0, 0, 0]  # the unused score keeps its row
    code, out, _ = run_main(capsys, "kappa", likert_csv, "--rater-col", "reader_1", "--rater-col", "reader_2",
                            "--weights", "quadratic", "--json")
    assert code == 0 and json.loads(out)["cohen"]["kappa"] != pytest.approx(expected.kappa)


def test_inferred_categories_are_reported_with_the_option_to_state_them(likert_csv, capsys):
    code, out, err = run_main(capsys, "kappa", likert_csv, "--rater-col", "reader_1", "--rater-col", "reader_2",
                              "--rater-col", "reader_3", "--weights", "linear")
    assert code == 0 and "Pairwise Cohen's kappa (linear weights)" in out
    lines = err.splitlines()
    # three pairs of readers, one inferred scale: one line
    assert lines == ["dlm-stats kappa: warning: weighted kappa on the categories inferred from the ratings "
                     "(1, 2, 4, 5); if the scale has values nobody gave, state all of them in order with "
                     "--categories (here: --categories 1,2,4,5 plus the unused values)"]


def test_categories_option_takes_the_type_of_the_ratings(tmp_path, capsys):
    path = tmp_path / "grades.csv"
    pd.DataFrame({"a": ["low", "high", "mid", "low"], "b": ["low", "mid", "mid", "low"]}).to_csv(path, index=False)
    code, out, _ = run_main(capsys, "kappa", path, "--rater-col", "a", "--rater-col", "b", "--weights", "linear",
                            "--categories", "low, mid ,high", "--json")
    assert code == 0
    assert json.loads(out)["cohen"]["categories"] == ["low", "mid", "high"]
    code, _, err = run_main(capsys, "kappa", path, "--rater-col", "a", "--rater-col", "b", "--categories", "low,mid")
    assert code == 2 and "not in `categories`: ['high']" in err and len(err.splitlines()) == 1
    code, _, err = run_main(capsys, "kappa", tmp_path / "grades.csv", "--rater-col", "a", "--rater-col", "b",
                            "--categories", "low,,high")
    assert code == 2 and "--categories" in err and "empty" in err


def test_categories_option_refuses_text_for_numeric_ratings(likert_csv, capsys):
    code, _, err = run_main(capsys, "kappa", likert_csv, "--rater-col", "reader_1", "--rater-col", "reader_2",
                            "--categories", "1,2,3,4,five")
    assert code == 2 and len(err.splitlines()) == 1
    assert "--categories" in err and "'five'" in err and "reader_1" in err


def test_string_labels_against_numbers_are_one_clean_error(tmp_path, capsys):
    path = tmp_path / "mixed.csv"
    # one reader typed "3+" once, so the whole column is text: "1" never equals 1
    pd.DataFrame({"a": ["1", "2", "3+", "1"], "b": [1, 2, 3, 1]}).to_csv(path, index=False)
    code, out, err = run_main(capsys, "kappa", path, "--rater-col", "a", "--rater-col", "b")
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"dlm-stats kappa: error: {path}: ") and "str" in err and "int" in err

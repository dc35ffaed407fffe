"""The ``dlm-stats`` console script (dlm_ml.cli.stats).

Runs the real console entry point in a subprocess and ``main([...])`` in
process, on the reference data (published figures in EXPECTED.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlm_ml.cli.stats import main
from dlm_ml.stats.agreement import cohen_kappa, fleiss_kappa
from dlm_ml.stats.clustered import clustered_auc_difference


def _console_script() -> str:
    found = shutil.which("dlm-stats", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("dlm-stats console script not installed next to this Python "
                    "(pip install -e . creates it)")
    return found


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_console_script(), *map(str, args)], capture_output=True,
                          text=True, timeout=60)


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


# --------------------------------------------------------------------------- mrmc
def test_console_script_prints_the_van_dyke_result(refdata_stats):
    proc = run_script("mrmc", refdata_stats / "MRMCaov_VanDyke.csv", "--test-col", "treatment")
    assert proc.returncode == 0, proc.stderr
    for snippet in (
        "0.91964573", "0.99935588",          # reader AUCs
        "0.89703704", "0.94083736",          # means
        "0.00034661", "0.00034407", "0.00023903", "0.00080229",  # Cov1-3, Var(error)
        "0.00479617", "0.00055103",          # MS(T), MS(T*R)
        "F = 4.45632, df = (1, 15.2597), p = 0.05167",
        "-0.04380032", "0.02074862", "-0.08795950", "0.00035885",
        "0.03317360", "12.74", "0.82522360", "0.96885048",
        "chi2 = 5.47595, df = 1, p = 0.01928", "0.01871748", "-0.08048591", "-0.00711473",
        "F = 8.704, df = (1, 4.0000), p = 0.04196", "-0.08502022", "-0.00258042",
    ):
        assert snippet in proc.stdout, snippet
    assert proc.stderr == ""


def test_mrmc_json_via_main(refdata_stats, capsys):
    code, out, _ = run_main(capsys, "mrmc", refdata_stats / "MRMCaov_VanDyke.csv",
                            "--test-col", "treatment", "--cov", "delong", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["cov_method"] == "delong"
    assert payload["rrrc"]["statistic"] == pytest.approx(4.484854, abs=5e-7)
    assert payload["rrrc"]["df2"] == pytest.approx(15.06611, abs=5e-6)
    assert payload["rrrc"]["p_value"] == pytest.approx(0.05123303, abs=5e-9)


def test_mrmc_cluster_and_alpha_options(refdata_stats, tmp_path, capsys):
    df = pd.read_csv(refdata_stats / "MRMCaov_VanDyke.csv")
    df["patient"] = "p" + ((df["case"] - 1) // 3).astype(str)
    path = tmp_path / "clustered.csv"
    df.to_csv(path, index=False)
    code, out, _ = run_main(capsys, "mrmc", path, "--test-col", "treatment",
                            "--cluster-col", "patient", "--alpha", "0.1", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["n_clusters"] == 38 and payload["alpha"] == 0.1
    code, out, _ = run_main(capsys, "mrmc", path, "--test-col", "treatment",
                            "--cluster-col", "patient")
    assert "jackknife over 38 clusters" in out and "90% CI" not in out and "95% CI" in out


# --------------------------------------------------------------------------- errors
def test_missing_file_exits_2_with_one_message(tmp_path):
    missing = tmp_path / "nope.csv"
    proc = run_script("mrmc", missing)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"dlm-stats mrmc: error: file not found: {missing}"
    assert proc.stdout == ""


def test_missing_column_names_file_and_column(refdata_stats, capsys):
    path = refdata_stats / "MRMCaov_VanDyke.csv"
    code, out, err = run_main(capsys, "mrmc", path)  # default --test-col test is absent
    assert code == 2 and out == ""
    assert str(path) in err and "no column 'test'" in err and "treatment" in err
    assert len(err.strip().splitlines()) == 1


def test_non_binary_truth_is_refused(refdata_stats, capsys):
    path = refdata_stats / "pROC_aSAH.csv"
    code, _, err = run_main(capsys, "delong", path, "--truth-col", "outcome",
                            "--score-a", "wfns", "--score-b", "s100b")
    assert code == 2
    assert str(path) in err and "column 'outcome' must be binary" in err and "Good" in err


def test_design_errors_are_reported_with_the_file(refdata_stats, tmp_path, capsys):
    df = pd.read_csv(refdata_stats / "MRMCaov_VanDyke.csv").iloc[1:]
    path = tmp_path / "incomplete.csv"
    df.to_csv(path, index=False)
    code, _, err = run_main(capsys, "mrmc", path, "--test-col", "treatment")
    assert code == 2 and str(path) in err and "fully crossed" in err


def test_bad_arguments_return_2_and_help_returns_0(capsys):
    assert main(["mrmc"]) == 2  # missing file argument
    assert main(["nosuchcommand"]) == 2
    assert main(["--help"]) == 0
    assert "mrmc" in capsys.readouterr().out


# --------------------------------------------------------------------------- delong
def test_delong_reproduces_proc(refdata_stats, capsys):
    code, out, _ = run_main(capsys, "delong", refdata_stats / "pROC_aSAH.csv",
                            "--truth-col", "outcome", "--positive", "Poor",
                            "--score-a", "wfns", "--score-b", "s100b", "--json")
    assert code == 0
    res = json.loads(out)
    assert res["test"]["z"] == pytest.approx(2.20898359144091, abs=1e-8)
    assert res["test"]["p_value"] == pytest.approx(0.0271757822291882, abs=1e-8)
    assert res["test"]["ci_low"] == pytest.approx(0.0104061769564846, abs=1e-8)
    assert res["test"]["ci_high"] == pytest.approx(0.174214419249478, abs=1e-8)
    assert res["aucs"]["s100b"]["ci_low"] == pytest.approx(0.630118211761623, abs=1e-8)
    proc = run_script("delong", refdata_stats / "pROC_aSAH.csv", "--truth-col", "outcome",
                      "--positive", "Poor", "--score-a", "wfns", "--score-b", "s100b",
                      "--alternative", "greater")
    assert proc.returncode == 0
    assert "0.01359" in proc.stdout and "wfns - s100b" in proc.stdout


def test_delong_with_clusters_uses_obuchowski(refdata_stats, tmp_path, capsys):
    df = pd.read_csv(refdata_stats / "pROC_aSAH.csv")
    truth = (df["outcome"] == "Poor").astype(int)
    patient = df["row_name"] // 4  # artificial patients of up to 4 "lesions"
    expected = clustered_auc_difference(truth, df["wfns"], df["s100b"], patient)
    csv = tmp_path / "asah_clustered.csv"
    pd.DataFrame({"truth": truth, "a": df["wfns"], "b": df["s100b"],
                  "patient": patient}).to_csv(csv, index=False)
    code, out, _ = run_main(capsys, "delong", csv, "--truth-col", "truth", "--score-a", "a",
                            "--score-b", "b", "--cluster-col", "patient", "--json")
    assert code == 0
    res = json.loads(out)
    assert res["test"]["se"] == pytest.approx(expected.se, rel=1e-12)
    assert res["test"]["z"] == pytest.approx(expected.z, rel=1e-12)
    assert res["test"]["n_clusters"] == expected.n_clusters
    assert "Obuchowski" in res["method"]


# --------------------------------------------------------------------------- dca
def test_dca_reproduces_dcurves(refdata_stats, capsys):
    code, out, _ = run_main(capsys, "dca", refdata_stats / "dcurves_df_binary.csv",
                            "--truth-col", "cancer", "--score-col", "cancerpredmarker", "--json")
    assert code == 0
    curve = pd.DataFrame(json.loads(out))
    at = curve[np.isclose(curve["threshold"], 0.25)].set_index("strategy")["net_benefit"]
    assert at["cancerpredmarker"] == pytest.approx(0.0640000, abs=5e-8)
    assert at["treat_all"] == pytest.approx(-0.1466667, abs=5e-8)
    assert at["treat_none"] == 0
    assert curve["threshold"].nunique() == 99
    code, out, _ = run_main(capsys, "dca", refdata_stats / "dcurves_df_binary.csv",
                            "--truth-col", "cancer", "--score-col", "cancerpredmarker",
                            "--thresholds", "0.2,0.25")
    assert code == 0
    line = next(row for row in out.splitlines() if row.strip().startswith("0.2500"))
    assert line.split()[1:] == ["-0.146667", "0.000000", "0.064000"]


def test_dca_refuses_non_probabilities(refdata_stats, capsys):
    code, _, err = run_main(capsys, "dca", refdata_stats / "dcurves_df_binary.csv",
                            "--truth-col", "cancer", "--score-col", "marker")
    assert code == 2 and "column 'marker' must hold probabilities" in err
    code, _, err = run_main(capsys, "dca", refdata_stats / "dcurves_df_binary.csv",
                            "--truth-col", "cancer", "--score-col", "cancerpredmarker",
                            "--thresholds", "0.9:0.1:0.1")
    assert code == 2 and "--thresholds" in err


# --------------------------------------------------------------------------- kappa
def test_kappa_two_rater_columns(refdata_stats, capsys):
    path = refdata_stats / "mitoticFigureCounts_dfClassify20180627.csv"
    code, out, _ = run_main(capsys, "kappa", path, "--rater-col", "observer.1",
                            "--rater-col", "observer.2", "--json")
    assert code == 0
    df = pd.read_csv(path)
    expected = cohen_kappa(df["observer.1"], df["observer.2"])
    got = json.loads(out)["cohen"]
    assert got["kappa"] == pytest.approx(expected.kappa, rel=1e-12)
    assert got["se"] == pytest.approx(expected.se, rel=1e-12)


def test_kappa_long_table_many_readers(refdata_stats, capsys):
    path = refdata_stats / "MRMCaov_VanDyke.csv"
    code, out, _ = run_main(capsys, "kappa", path, "--subject-col", "case",
                            "--subject-col", "treatment", "--reader-col", "reader",
                            "--rating-col", "rating", "--json")
    assert code == 0
    payload = json.loads(out)
    df = pd.read_csv(path)
    expected = fleiss_kappa(df.assign(subject=df["case"].astype(str) + "/"
                                      + df["treatment"].astype(str)), rater="reader")
    assert payload["fleiss"]["kappa"] == pytest.approx(expected.kappa, rel=1e-12)
    assert payload["fleiss"]["n_subjects"] == 228
    assert len(payload["cohen_pairwise"]) == 10
    proc = run_script("kappa", path, "--subject-col", "case", "--subject-col", "treatment",
                      "--reader-col", "reader", "--rating-col", "rating", "--weights",
                      "quadratic")
    assert proc.returncode == 0
    assert "Fleiss' kappa, 228 subjects x 5 raters" in proc.stdout
    assert "Pairwise Cohen's kappa (quadratic weights)" in proc.stdout


def test_kappa_argument_errors(refdata_stats, capsys):
    path = refdata_stats / "MRMCaov_VanDyke.csv"
    code, _, err = run_main(capsys, "kappa", path, "--rater-col", "reader")
    assert code == 2 and "at least two --rater-col" in err
    code, _, err = run_main(capsys, "kappa", path, "--reader-col", "reader")
    assert code == 2 and "--subject-col" in err
    code, _, err = run_main(capsys, "kappa", path, "--subject-col", "case",
                            "--reader-col", "reader", "--rating-col", "rating")
    assert code == 2 and "duplicated subject x reader" in err

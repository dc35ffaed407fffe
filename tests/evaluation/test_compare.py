"""The run comparison table is built from structured records, never from metric labels."""

from __future__ import annotations

import math

from dlm_ml.evaluation.compare import RunSummary, comparison_table, differing_params, to_markdown


def _record(method_id, metric, estimate, ci=(None, None)):
    role, _, reader = method_id.partition(":")
    role = {"model": "model", "reader": "reader", "model_at": "model_at_reader"}[role]
    return {"method_id": method_id, "role": role, "reader_id": reader or None, "metric": metric,
            "estimate": estimate, "ci_low": ci[0], "ci_high": ci[1]}


def _run(run_id, lr, auc, cohort="c" * 64, sens=0.5):
    records = [_record("model", "auc", auc, (auc - 0.1, auc + 0.05)), _record("reader:R1", "auc", 0.7, (0.6, 0.8)),
               _record("reader:R1", "sensitivity", 0.6), _record("reader:R1", "specificity", 0.9),
               _record("model_at:R1", "sensitivity", sens), _record("model_at:R1", "specificity", 0.9)]
    params = {"model.module.lr": lr, "seed": "1", "paths.output_dir": f"/out/{run_id}", "logger.run_name": run_id}
    return RunSummary(run_id=run_id, run_name=f"name {run_id}", params=params, cohort=cohort, records=records)


def test_table_from_records():
    runs = [_run("a", "0.001", 0.8, sens=0.55), _run("b", "0.003", 0.75)]
    keys = differing_params(runs, lambda k: not k.startswith(("paths", "logger")))
    assert keys == ["model.module.lr"]
    table = comparison_table(runs, keys)
    assert list(table.row) == ["model", "model", "reader R1"]  # readers once per cohort
    a = table.iloc[0]
    assert (a.run_id, a["model.module.lr"], a.auc, a.auc_ci) == ("a", "0.001", 0.8, "0.800 (0.700–0.850)")
    assert a.sens_at_R1_spec == 0.55 and a.spec_at_R1_spec == 0.9
    reader = table.iloc[2]
    assert reader.auc == 0.7 and reader.sens_at_R1_spec == 0.6 and reader.run_name == "cohort cccccccc"
    assert "| model | a | name a | 0.001 | 0.800 (0.700–0.850) |" in to_markdown(table)


def test_second_cohort_gets_its_own_reader_rows_and_missing_metrics_stay_empty():
    b = _run("b", "0.003", 0.75, cohort="d" * 64)
    b.records[:] = [r for r in b.records if r["method_id"] != "model_at:R1"]
    table = comparison_table([_run("a", "0.001", 0.8), b], ["model.module.lr"])
    assert list(table.row) == ["model", "model", "reader R1", "reader R1"]
    assert math.isnan(table.iloc[1].sens_at_R1_spec)


def test_explicit_keys_win():
    runs = [_run("a", "0.001", 0.8), _run("b", "0.001", 0.8)]
    assert differing_params(runs, lambda k: True) == ["logger.run_name", "paths.output_dir"]
    assert differing_params(runs, lambda k: True, ["seed"]) == ["seed"]

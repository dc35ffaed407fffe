"""Tables that compare runs: one row per run's model (the config values that differ between runs,
AUC with CI, the operating points at each reader's threshold) beside the readers' rows, built from
plain run summaries and the structured metric records of each run's evaluation (never from metric
labels); and, on the runs' out-of-fold predictions, paired clustered tests between any two models
on the lesions both predicted and each model against the reader panel (OR MRMC analysis with
patients as clusters, Holm-adjusted across models).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dlm_ml import stats
from dlm_ml.data.cohort import schema
from dlm_ml.evaluation.sections.common import read_by_all, reader_ids


@dataclass(frozen=True)
class RunSummary:
    """What a comparison needs of one run.

    Attributes
    ----------
    run_id, run_name : str
    params : dict — flattened config, dotted key -> value (as text).
    cohort : str — cohort fingerprint (readers' rows are shown once per cohort).
    records : list of dict — the run's ``evaluation/metrics.json`` records
        (:mod:`dlm_ml.evaluation.records`).
    model_name : str — the model the predictions come from (the run's ``dlm_ml.model`` tag);
        empty: the run is named by its run name.
    role : str — ``train`` (a dlm-train run) or ``evaluate`` (dlm-evaluate of a predictions file).
    cohort_dir : str — the cohort folder the run recorded (empty when unknown).
    """

    run_id: str
    run_name: str
    params: dict
    cohort: str
    records: list[dict] = field(default_factory=list)
    model_name: str = ""
    role: str = "train"
    cohort_dir: str = ""

    @property
    def name(self) -> str:
        return self.model_name or self.run_name


def run_labels(runs: Sequence[RunSummary]) -> dict[str, str]:
    """run_id -> the label a run goes by in every comparison table: its model's name, with the
    first 8 characters of the run id added where two runs share a name (e.g. two learning rates)."""
    names = [r.name for r in runs]
    return {r.run_id: r.name if names.count(r.name) == 1 else f"{r.name} ({r.run_id[:8]})" for r in runs}


def differing_params(runs: Sequence[RunSummary], is_result_key: Callable[[str], bool],
                     keys: Iterable[str] | None = None) -> list[str]:
    """Config keys whose value differs between runs, among those that can change a result
    (``is_result_key``); or ``keys`` when given."""
    keys = list(keys or [])
    if keys:
        return keys
    names = sorted(set().union(*(r.params for r in runs))) if runs else []
    return [n for n in names if is_result_key(n) and len({r.params.get(n) for r in runs}) > 1]


def _find(records: list[dict], method_id: str, metric: str) -> dict | None:
    return next((r for r in records if r["method_id"] == method_id and r["metric"] == metric), None)


def _value(record: dict | None, name: str = "estimate") -> float:
    return np.nan if record is None or record.get(name) is None else float(record[name])


def _auc_ci(record: dict | None) -> str:
    if record is None or record.get("estimate") is None:
        return ""
    return f"{_value(record):.3f} ({_value(record, 'ci_low'):.3f}–{_value(record, 'ci_high'):.3f})"


def _readers(records: list[dict]) -> list[str]:
    return sorted({r["reader_id"] for r in records if r["role"] == "reader"})


def comparison_table(runs: Sequence[RunSummary], keys: Sequence[str]) -> pd.DataFrame:
    """Rows: each run's model, then each reader once per cohort (readers do not change with the
    model). Columns: ``model`` (the run's label, :func:`run_labels`; ``reader R`` on a reader row),
    ``row``, ``run_id``, ``run_name``, the config ``keys``, ``auc_ci`` (AUC with
    its patient-bootstrap CI), ``auc``, and per reader R ``sens_at_R_spec``/``spec_at_R_spec``:
    the model's sensitivity and specificity at the threshold matched to R's specificity (on a
    reader row: that reader's own)."""
    rows, first_of_cohort, labels = [], {}, run_labels(runs)
    for run in runs:
        auc = _find(run.records, "model", "auc")
        row = {"model": labels[run.run_id], "row": "model", "run_id": run.run_id, "run_name": run.run_name,
               **{k: run.params.get(k) for k in keys}, "auc_ci": _auc_ci(auc), "auc": _value(auc)}
        for r in _readers(run.records):
            row[f"sens_at_{r}_spec"] = _value(_find(run.records, f"model_at:{r}", "sensitivity"))
            row[f"spec_at_{r}_spec"] = _value(_find(run.records, f"model_at:{r}", "specificity"))
        rows.append(row)
        first_of_cohort.setdefault(run.cohort or run.run_id, run)
    for cohort, run in first_of_cohort.items():
        for r in _readers(run.records):
            auc = _find(run.records, f"reader:{r}", "auc")
            rows.append({"model": f"reader {r}", "row": f"reader {r}", "run_id": run.run_id,
                         "run_name": f"cohort {cohort[:8]}",
                         "auc_ci": _auc_ci(auc), "auc": _value(auc),
                         f"sens_at_{r}_spec": _value(_find(run.records, f"reader:{r}", "sensitivity")),
                         f"spec_at_{r}_spec": _value(_find(run.records, f"reader:{r}", "specificity"))})
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    """The table as Markdown; numbers with three decimals, missing ones empty."""
    def cell(v):
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.3f}"
        return "" if v is None else str(v)

    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


# --- paired tests between models -------------------------------------------------------------------

PAIRWISE_COLUMNS = ["model_a", "model_b", "run_a", "run_b", "n_lesions", "n_patients", "n_pcr", "n_viable",
                    "lesions_only_a", "lesions_only_b", "auc_a", "auc_b", "difference", "obuchowski_se",
                    "obuchowski_z", "obuchowski_p", "ci_low", "ci_high", "delong_p"]


def shared_lesions(a: pd.DataFrame, b: pd.DataFrame, name_a: str = "a", name_b: str = "b") -> tuple[pd.DataFrame, dict]:
    """The lesions both predictions tables hold, for a paired comparison.

    ``a``, ``b``: ``patient_id, lesion_id, prob_pcr, pcr`` (one row per lesion). Returns the
    shared lesions (``patient_id, lesion_id, pcr, prob_a, prob_b``, sorted by lesion) and counts:
    ``n_lesions``, ``n_patients``, ``lesions_only_a``, ``lesions_only_b`` (left out of the test).
    Raises ValueError naming patient and lesion where the two disagree on ``pcr`` (they were
    evaluated against different outcomes).
    """
    key = list(schema.LESION_KEY)
    left = a[key + ["prob_pcr", "pcr"]].rename(columns={"prob_pcr": "prob_a"})
    right = b[key + ["prob_pcr", "pcr"]].rename(columns={"prob_pcr": "prob_b", "pcr": "pcr_b"})
    both = left.merge(right, on=key, how="outer", indicator=True)
    shared = both[both["_merge"] == "both"]
    disagree = shared[shared.pcr.astype(int) != shared.pcr_b.astype(int)]
    if len(disagree):
        first = disagree.iloc[0]
        raise ValueError(f"{name_a} and {name_b}: {len(disagree)} shared lesion(s) carry different pcr, e.g. patient "
                         f"{first.patient_id}, lesion {first.lesion_id} ({name_a}: {int(first.pcr)}, {name_b}: "
                         f"{int(first.pcr_b)}); they were not evaluated against the same outcomes")
    shared = shared[key + ["pcr", "prob_a", "prob_b"]].astype({"pcr": int}).sort_values(key).reset_index(drop=True)
    counts = {"n_lesions": int(len(shared)), "n_patients": int(shared.patient_id.nunique()),
              "lesions_only_a": int((both["_merge"] == "left_only").sum()),
              "lesions_only_b": int((both["_merge"] == "right_only").sum())}
    return shared, counts


def paired_model_test(a: pd.DataFrame, b: pd.DataFrame, name_a: str, name_b: str, *, alpha: float = 0.05) -> dict:
    """AUC(a) − AUC(b) on the lesions both predicted: Obuchowski's clustered paired test
    (patients as clusters; the primary figure) with its CI, and DeLong's p (lesions independent)
    beside it. Returns one row of :data:`PAIRWISE_COLUMNS` (without the run ids); ``note`` says
    why a test is missing."""
    shared, counts = shared_lesions(a, b, name_a, name_b)
    row = {"model_a": name_a, "model_b": name_b, **counts, "n_pcr": int(shared.pcr.sum()),
           "n_viable": int((shared.pcr == 0).sum()), "note": ""}
    if shared.pcr.nunique() < 2:
        return {**row, "note": f"{len(shared)} shared lesion(s) hold one outcome class only: AUC undefined"}
    truth, patients = shared.pcr.to_numpy(), shared.patient_id.to_numpy()
    clustered = stats.clustered_auc_difference(truth, shared.prob_a.to_numpy(float), shared.prob_b.to_numpy(float),
                                               patients, alpha=alpha)
    delong = stats.delong_test(truth, shared.prob_a.to_numpy(float), shared.prob_b.to_numpy(float), alpha=alpha)
    return {**row, "auc_a": clustered.auc_a, "auc_b": clustered.auc_b, "difference": clustered.diff,
            "obuchowski_se": clustered.se, "obuchowski_z": clustered.z, "obuchowski_p": clustered.p_value,
            "ci_low": clustered.ci_low, "ci_high": clustered.ci_high, "delong_p": delong.p_value}


def pairwise_table(predictions: Mapping[str, pd.DataFrame], cohorts: Mapping[str, str],
                   pairs: Sequence[tuple[str, str]], *, run_ids: Mapping[str, str] | None = None,
                   alpha: float = 0.05) -> pd.DataFrame:
    """One row per pair of models (labels of ``predictions``): :func:`paired_model_test`.

    ``cohorts``: label -> cohort fingerprint; a pair on different cohorts is refused (ValueError):
    the same ids in two cohorts need not be the same lesions.
    """
    rows = []
    for a, b in pairs:
        if cohorts.get(a) != cohorts.get(b):
            raise ValueError(f"{a} and {b} were evaluated on different cohorts (fingerprints "
                             f"{str(cohorts.get(a))[:12]} and {str(cohorts.get(b))[:12]}): no paired test")
        row = paired_model_test(predictions[a], predictions[b], a, b, alpha=alpha)
        rows.append({**row, "run_a": (run_ids or {}).get(a, ""), "run_b": (run_ids or {}).get(b, "")})
    return pd.DataFrame(rows).reindex(columns=PAIRWISE_COLUMNS + ["note"])


def resolve_pairs(spec: str, runs: Sequence[RunSummary]) -> list[tuple[str, str]]:
    """``A:B,C:D`` -> pairs of run labels (:func:`run_labels`); each side is a label, a run id (or
    its first characters, at least 6) or a model name that only one run has."""
    labels = run_labels(runs)

    def one(token: str) -> str:
        token = token.strip()
        found = {labels[r.run_id] for r in runs if token in (labels[r.run_id], r.run_id)
                 or (len(token) >= 6 and r.run_id.startswith(token))}
        found = found or {labels[r.run_id] for r in runs if r.name == token}
        if len(found) != 1:
            raise ValueError(f"--pairs: {token!r} names {'no run' if not found else 'several runs'}; use one of "
                             + ", ".join(labels.values()) + " or a run id")
        return found.pop()

    pairs = []
    for item in filter(None, (p.strip() for p in spec.split(","))):
        if item.count(":") != 1:
            raise ValueError(f"--pairs: {item!r} is not of the form A:B")
        pairs.append(tuple(one(t) for t in item.split(":")))
    return pairs


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of ``p_values`` [m] (family-wise error over the m tests); NaN
    stays NaN and does not count as a test."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


# --- models as modalities beside the readers -------------------------------------------------------

MODELS_VS_READERS_COLUMNS = ["model", "n_lesions", "n_patients", "auc_model", "auc_readers", "difference", "ci_low",
                             "ci_high", "df", "p_value", "p_holm", "note"]


def models_vs_readers(predictions: Mapping[str, pd.DataFrame], readings: pd.DataFrame, *,
                      alpha: float = 0.05) -> tuple[pd.DataFrame, dict]:
    """Each model against the reader panel by OR MRMC analysis (random readers, random cases,
    Hillis df; patients as clusters; :func:`dlm_ml.stats.model_vs_readers`), all on the lesions
    every model predicted and every reader read, so that the rows are comparable.

    ``predictions``: label -> ``patient_id, lesion_id, prob_pcr, pcr``; ``readings``:
    ``reader_id, patient_id, lesion_id, score, call``. Returns the table
    (:data:`MODELS_VS_READERS_COLUMNS`: difference = AUC(model) − mean reader AUC, with its CI and
    p; ``p_holm``: Holm-adjusted across the models) and what it used: ``n_lesions``,
    ``n_patients``, ``readers``, ``n_models``, ``lesions_left_out`` (per model: predicted but not in
    the common set), ``reason`` when the analysis cannot run.
    """
    key = list(schema.LESION_KEY)
    labels = list(predictions)
    readings = readings.assign(reader_id=readings.reader_id.astype(str))
    readers = reader_ids(readings)
    common = None
    for label in labels:
        table = predictions[label][key + ["pcr"]]
        common = table if common is None else common.merge(table, on=key, suffixes=("", "_other"))
        if "pcr_other" in common.columns:
            bad = common[common.pcr != common.pcr_other]
            if len(bad):
                raise ValueError(f"{label}: patient {bad.iloc[0].patient_id}, lesion {bad.iloc[0].lesion_id} carries "
                                 "a pcr that differs from the other models' predictions")
            common = common.drop(columns="pcr_other")
    common = read_by_all(common, readings, readers) if readers else common.iloc[0:0]
    info = {"n_lesions": int(len(common)), "n_patients": int(common.patient_id.nunique()), "readers": readers,
            "n_models": len(labels), "alpha": alpha,
            "lesions_left_out": {label: int(len(predictions[label]) - len(common)) for label in labels}}
    reason = (f"{len(readers)} reader(s): a random-reader analysis needs at least 2" if len(readers) < 2 else
              "one outcome class only among the lesions every model predicted and every reader read"
              if common.pcr.nunique() < 2 else None)
    if reason:
        return pd.DataFrame(columns=MODELS_VS_READERS_COLUMNS), {**info, "reason": reason}
    cases = common.assign(case=np.arange(len(common)))
    long = pd.concat([cases[["case"]].assign(reader=r, rating=cases[f"score_{r}"].to_numpy(float)) for r in readers],
                     ignore_index=True)
    rows = []
    for label in labels:
        scores = cases[["case", "pcr"] + key].merge(predictions[label][key + ["prob_pcr"]], on=key)
        model_label = label if label != "readers" else f"model {label}"
        result = stats.model_vs_readers(scores[["case", "pcr", "prob_pcr", "patient_id"]], long, truth="pcr",
                                        prob="prob_pcr", cluster="patient_id", model_label=model_label, alpha=alpha)
        diff = result.rrrc.differences.iloc[0]
        aucs = result.rrrc.tests.set_index("test").auc
        rows.append({"model": label, "n_lesions": len(common), "n_patients": int(common.patient_id.nunique()),
                     "auc_model": float(aucs[model_label]), "auc_readers": float(aucs["readers"]),
                     "difference": float(diff.estimate), "ci_low": float(diff.ci_low), "ci_high": float(diff.ci_high),
                     "df": float(diff.df), "p_value": float(diff.p_value), "note": result.rrrc.note or ""})
    table = pd.DataFrame(rows)
    table["p_holm"] = holm(table.p_value.to_numpy())
    return table.reindex(columns=MODELS_VS_READERS_COLUMNS), info

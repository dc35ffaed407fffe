"""dlm-compare's tests between models on their predictions: paired clustered AUC tests between
any two runs on the lesions both predicted (``pairwise.csv``/``.md``) and each model against the
reader panel on the lesions all models predicted and all readers read (``models_vs_readers.csv``/
``.md``); composed from :mod:`dlm_ml.tracking.compare` (artifacts) and
:mod:`dlm_ml.evaluation.compare` (the statistics)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

import pandas as pd

from dlm_ml.data.cohort import load_cohort
from dlm_ml.data.cohort.fingerprint import cohort_fingerprint
from dlm_ml.evaluation.compare import (
    RunSummary,
    models_vs_readers,
    pairwise_table,
    resolve_pairs,
    run_labels,
    to_markdown,
)
from dlm_ml.evaluation.evaluate import read_predictions
from dlm_ml.tracking.compare import download_predictions
from dlm_ml.utils.atomic import atomic_write_csv, atomic_write_text

PAIRWISE_NOTE = ("Difference = AUC(model_a) − AUC(model_b) on the lesions both runs predicted; Obuchowski's clustered "
                 "paired test (patients as clusters, the primary figure; CI of the difference) and DeLong's paired p "
                 "(lesions independent) beside it. lesions_only_a/_b: predicted by one run only, left out.")


def run_predictions(client, runs: Sequence[RunSummary]) -> dict[str, pd.DataFrame]:
    """Label (:func:`run_labels`) -> the run's checked ``predictions.csv``, its lesions with an
    outcome (a dlm-predict run on a partly labelled cohort also lists lesions without one)."""
    labels = run_labels(runs)
    with tempfile.TemporaryDirectory() as tmp:
        tables = {labels[r.run_id]: read_predictions(download_predictions(client, r.run_id, tmp)) for r in runs}
    return {label: table[table.pcr.notna()].reset_index(drop=True) for label, table in tables.items()}


def default_pairs(runs: Sequence[RunSummary]) -> tuple[list[tuple[str, str]], list[str]]:
    """Every pair of runs on the same cohort, and a line per pair left out for lying across cohorts."""
    labels = run_labels(runs)
    pairs, skipped = [], []
    for a, b in combinations(runs, 2):
        (pairs if a.cohort == b.cohort else skipped).append((labels[a.run_id], labels[b.run_id]))
    return pairs, [f"not tested, different cohorts: {a} vs {b}" for a, b in skipped]


def cohort_readings(runs: Sequence[RunSummary], fingerprint: str, override: str | None) -> tuple[pd.DataFrame | None,
                                                                                                   str]:
    """The readings of the cohort the runs were evaluated on (``override`` or a folder the runs
    recorded), checked against the runs' cohort fingerprint; (None, why) when not to be had."""
    folders = [override] if override else list(dict.fromkeys(r.cohort_dir for r in runs if r.cohort_dir))
    if not folders:
        return None, "the runs record no cohort folder; pass --cohort DIR"
    for folder in folders:
        if not Path(folder).is_dir():
            continue
        found = cohort_fingerprint(folder)
        if found == fingerprint:
            return load_cohort(folder).readings, folder
        if override:
            return None, f"cohort {folder} has fingerprint {found[:12]}, the runs were evaluated on {fingerprint[:12]}"
    return None, f"no cohort folder with fingerprint {fingerprint[:12]} among {', '.join(folders)}; pass --cohort DIR"


def model_tests(client, runs: Sequence[RunSummary], out: Path, *, pairs: str = "", cohort: str | None = None,
                alpha: float = 0.05) -> str:
    """Write pairwise.csv/.md and models_vs_readers.csv/.md under ``out``; return the text to print."""
    labels, predictions = run_labels(runs), run_predictions(client, runs)
    by_label = {labels[r.run_id]: r for r in runs}
    chosen, skipped = (resolve_pairs(pairs, runs), []) if pairs else default_pairs(runs)
    table = pairwise_table(predictions, {k: r.cohort for k, r in by_label.items()}, chosen, alpha=alpha,
                           run_ids={k: r.run_id for k, r in by_label.items()})
    pairwise_md = to_markdown(table) + "\n" + PAIRWISE_NOTE + "\n" + "".join(f"\n{s}" for s in skipped)
    atomic_write_csv(out / "pairwise.csv", table)
    atomic_write_text(out / "pairwise.md", pairwise_md)
    parts, lines = [], []
    for fingerprint in dict.fromkeys(r.cohort for r in runs):
        group = [r for r in runs if r.cohort == fingerprint]
        readings, where = cohort_readings(group, fingerprint, cohort)
        if readings is None:
            lines.append(f"cohort {fingerprint[:8]}: models vs readers not computed: {where}")
            continue
        result, info = models_vs_readers({labels[r.run_id]: predictions[labels[r.run_id]] for r in group}, readings,
                                         alpha=alpha)
        parts.append(result.assign(cohort=fingerprint[:8]))
        left = ", ".join(f"{k} {v}" for k, v in info["lesions_left_out"].items())
        lines.append(f"cohort {fingerprint[:8]} ({where}): each model vs the panel of readers "
                     f"{', '.join(info['readers'])} by OR MRMC analysis (random readers, random cases, Hillis df, "
                     f"patients as clusters) on the {info['n_lesions']} lesions ({info['n_patients']} patients) every "
                     f"model predicted and every reader read (left out per model: {left}); difference = AUC(model) − "
                     f"mean reader AUC; p_holm: Holm-adjusted across the {info['n_models']} models"
                     + (f". Not computed: {info['reason']}" if "reason" in info else "") + ".")
    mvr = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    atomic_write_csv(out / "models_vs_readers.csv", mvr)
    atomic_write_text(out / "models_vs_readers.md", (to_markdown(mvr) if len(mvr) else "") + "\n" + "\n\n".join(lines)
                      + "\n")
    return "\n".join(["Paired tests between models:", pairwise_md, "Models vs readers:",
                      to_markdown(mvr) if len(mvr) else "", *lines])

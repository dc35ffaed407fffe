"""The cohort's tables without its images: fast, for calibration checks and tests.

``simulate_tables(config)`` returns exactly the tables ``generate_cohort`` writes
for the same config (images are rendered from the same patient specs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dlm_ml.data.cohort import schema
from dlm_ml.data.synthetic.biology import PatientSpec, simulate_patient
from dlm_ml.data.synthetic.config import SynthConfig, validate
from dlm_ml.data.synthetic.readers import pairwise_kappa, reader_parameters, reader_summary

# table key → file name (public tables) or truth/ file name
PUBLIC_TABLES = {
    "patients": schema.PATIENTS_CSV,
    "images": schema.IMAGES_CSV,
    "lesions": schema.LESIONS_CSV,
    "outcomes": schema.OUTCOMES_CSV,
    "readings": schema.READINGS_CSV,
}
TRUTH_TABLES = {
    "truth_lesions": "lesions.csv",
    "truth_patients": "patients.csv",
    "truth_images": "images.csv",
    "truth_lesion_positions": "lesion_positions.csv",
    "truth_readers": "readers.csv",
}


@dataclass
class SimulatedCohort:
    config: SynthConfig
    specs: list[PatientSpec]
    tables: dict[str, pd.DataFrame]


def patient_seeds(config: SynthConfig) -> list[np.random.SeedSequence]:
    """One independent seed per patient: patient i's data depend only on (seed, i),
    so a larger cohort extends a smaller one with the same seed."""
    return np.random.SeedSequence(config.seed).spawn(config.n_patients)


def simulate_cohort(config: SynthConfig) -> SimulatedCohort:
    validate(config)
    specs = [simulate_patient(i, config, ss) for i, ss in enumerate(patient_seeds(config))]
    tables: dict[str, pd.DataFrame] = {}
    for key in list(PUBLIC_TABLES) + [k for k in TRUTH_TABLES if k != "truth_readers"]:
        tables[key] = pd.DataFrame([row for s in specs for row in s.rows[key]])
    # readings ordered reader-major, like a reading session per reader
    tables["readings"] = tables["readings"].sort_values(["reader_id", "patient_id"], kind="stable",
                                                        ignore_index=True)
    tables["truth_readers"] = reader_parameters(config.readers)
    for key, cols in ((k, schema.REQUIRED_COLUMNS[f]) for k, f in PUBLIC_TABLES.items()):
        rest = [c for c in tables[key].columns if c not in cols]
        tables[key] = tables[key][list(cols) + rest]
    return SimulatedCohort(config, specs, tables)


def simulate_tables(config: SynthConfig) -> dict[str, pd.DataFrame]:
    """Public and truth tables of the cohort ``config`` describes, without images.

    Keys: patients, images, lesions, outcomes, readings (as written at the cohort
    root) and truth_lesions, truth_patients, truth_images, truth_lesion_positions
    (each lesion centre in each present image's physical space), truth_readers.
    """
    return simulate_cohort(config).tables


def summarize(tables: dict[str, pd.DataFrame]) -> dict:
    """Headline figures of a cohort: counts, pCR prevalence, disappearing lesions,
    readers' PPV of a complete-response call / viable-among-CR-calls / AUC, and pairwise kappa."""
    out = tables["outcomes"]
    tl = tables["truth_lesions"]
    dlm = tl["visible_presurgery"] == 0
    per_patient = tl.groupby("patient_id")["visible_presurgery"].min() == 0
    readers = reader_summary(out, tables["readings"])
    kappa = pairwise_kappa(tables["readings"])
    return {
        "patients": int(len(tables["patients"])),
        "lesions": int(len(out)),
        "pcr_prevalence": float(out["pcr"].mean()),
        "disappeared_lesions": float(dlm.mean()),
        "patients_with_disappeared": float(per_patient.mean()),
        "viable_among_disappeared": float(1 - tl.loc[dlm, "pcr"].mean()) if dlm.any() else float("nan"),
        "disappeared_median_baseline_mm": (float(tl.loc[dlm, "diameter_baseline_mm"].median()) if dlm.any()
                                           else float("nan")),
        "resected": float(out["resected"].mean()),
        "images": int(len(tables["images"])),
        "images_missing": int((tables["truth_images"]["present"] == 0).sum()),
        "readers": readers.to_dict("records"),
        "kappa_calls": kappa.to_dict("records"),
        "kappa_scores": pairwise_kappa(tables["readings"], "score").to_dict("records"),
    }


def _pct(value) -> str:
    """A fraction as a percentage; "n/a" where it is undefined (NaN in memory, null in summary.json)."""
    return "n/a" if value is None or value != value else f"{value:.1%}"


def format_summary(s: dict) -> str:
    """The headline of :func:`summarize` (or of ``truth/summary.json``) as text."""
    dlm_mm = s["disappeared_median_baseline_mm"]
    lines = [
        f"patients {s['patients']}, lesions {s['lesions']}, images {s['images']} ({s['images_missing']} missing)",
        f"pCR prevalence (lesions) {_pct(s['pcr_prevalence'])}; resected {_pct(s['resected'])}",
        f"disappeared at presurgery: {_pct(s['disappeared_lesions'])} of lesions, "
        f"{_pct(s['patients_with_disappeared'])} of patients; viable among them {_pct(s['viable_among_disappeared'])}; "
        f"median baseline diameter {'n/a' if dlm_mm is None or dlm_mm != dlm_mm else f'{dlm_mm:.1f}'} mm",
        "readers (positive call = complete response): PPV = P(pCR | CR call)",
    ]
    for r in s["readers"]:
        auc_text = "n/a" if r["auc"] is None or r["auc"] != r["auc"] else f"{r['auc']:.3f}"
        lines.append(f"  {r['reader_id']}: CR calls {r['cr_calls']}/{r['n']}, PPV {_pct(r['ppv'])} "
                     f"(viable among CR calls {_pct(r['viable_among_cr_calls'])}), viable among residual calls "
                     f"{_pct(r['viable_among_residual_calls'])}, sensitivity for pCR {_pct(r['sensitivity_pcr'])}, "
                     f"score AUC {auc_text}")
    for k in s["kappa_calls"]:
        kappa = k["kappa"]
        lines.append(f"  kappa {k['reader_a']}-{k['reader_b']}: calls "
                     f"{'n/a' if kappa is None or kappa != kappa else f'{kappa:.2f}'}")
    return "\n".join(lines)

"""Validation designs: K-fold reproduces make_folds; leave-one-site-out holds each site out whole;
development/external splits by site or date put the external patients in the one test fold and the
development patients in DEVELOPMENT_ONLY; bad input is refused with the file, line and patient."""

from __future__ import annotations

import hydra
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.data.datamodule import PCRDataModule
from dlm_ml.data.folds import (
    DEVELOPMENT_ONLY,
    FoldLeakageError,
    check_no_leakage,
    check_sites_not_split,
    held_out_folds,
    make_folds,
)
from dlm_ml.data.patches import PatchSet
from dlm_ml.data.validation_design import (
    ExternalByDate,
    ExternalBySite,
    FoldsFile,
    KFold,
    LeaveOneSiteOut,
)

SITES = {"S1": 0.5, "S2": 0.3, "S3": 0.2}


def _cohort(n_patients=100, seed=0):
    """Lesions (1–4 per patient, ~35 % pCR) and patients.csv (site S1/S2/S3 at 0.5/0.3/0.2,
    enrolment one patient a fortnight from 2017-01-02, ISO dates as strings)."""
    rng = np.random.default_rng(seed)
    patients, lesions = [], []
    start = np.datetime64("2017-01-02")
    for p in range(n_patients):
        pid = f"P{p:04d}"
        patients.append({"patient_id": pid, "site": str(rng.choice(list(SITES), p=list(SITES.values()))),
                         "enrolment_date": str(start + np.timedelta64(14 * p, "D"))})
        for k in range(rng.integers(1, 5)):
            lesions.append({"patient_id": pid, "lesion_id": f"L{k + 1}", "pcr": int(rng.random() < 0.35)})
    return pd.DataFrame(lesions), pd.DataFrame(patients)


@pytest.fixture(scope="module")
def cohort():
    return _cohort()


def _instantiate(option: str, **data):
    """An option of the data/validation group as Hydra builds it under ``data.validation``."""
    node = OmegaConf.load(CONF_DIR / "data" / "validation" / f"{option}.yaml")
    cfg = OmegaConf.create({"data": {"n_folds": 5, **data, "validation": node}})
    return hydra.utils.instantiate(cfg.data.validation)


# --- K-fold ------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 42])
def test_kfold_option_reproduces_make_folds_exactly(cohort, seed):
    lesions, patients = cohort
    design = _instantiate("kfold", n_folds=4)
    assert isinstance(design, KFold) and design.n_folds == 4
    folds = design.folds(lesions, patients, seed)
    pd.testing.assert_frame_equal(folds, make_folds(lesions, 4, seed))
    assert held_out_folds(folds) == [0, 1, 2, 3]
    assert design.describe(folds) == "patient-grouped stratified 4-fold cross-validation (100 patients)"


# --- leave-one-site-out ------------------------------------------------------------------------

def test_leave_one_site_out_one_fold_per_site(cohort):
    lesions, patients = cohort
    design = _instantiate("leave_one_site_out")
    assert isinstance(design, LeaveOneSiteOut)
    folds = design.folds(lesions, patients, seed=0)
    check_no_leakage(folds)
    assert folds.patient_id.is_unique and set(folds.patient_id) == set(lesions.patient_id)
    site = folds.merge(patients, on="patient_id")
    # one fold per site, sites in sorted order, no site in two folds
    assert site.groupby("site").fold.nunique().max() == 1
    assert site.groupby("fold").site.nunique().max() == 1
    assert dict(site.groupby("site").fold.first()) == {"S1": 0, "S2": 1, "S3": 2}
    assert design.fold_labels(folds) == {0: "site S1", 1: "site S2", 2: "site S3"}
    n = site.groupby("site").size()
    assert design.describe(folds) == (f"leave-one-site-out: 3 folds (fold 0 = site S1 ({n['S1']} patients), "
                                      f"fold 1 = site S2 ({n['S2']} patients), fold 2 = site S3 ({n['S3']} patients))")


def test_site_in_two_folds_is_caught(cohort):
    lesions, patients = cohort
    folds = LeaveOneSiteOut().folds(lesions, patients, seed=0)
    check_sites_not_split(folds, patients)
    moved = folds.copy()
    s1 = set(patients.patient_id[patients.site == "S1"])
    first_s1 = moved.index[moved.patient_id.isin(s1)][0]
    moved.loc[first_s1, "fold"] = 1  # one S1 patient now tested with site S2
    with pytest.raises(FoldLeakageError, match="S1"):
        check_sites_not_split(moved, patients)


def test_leave_one_site_out_needs_two_sites(cohort):
    lesions, patients = cohort
    with pytest.raises(ValueError, match="at least 2 sites"):
        LeaveOneSiteOut().folds(lesions, patients.assign(site="S1"), seed=0)


def test_a_one_class_site_is_kept(cohort):
    """A site whose lesions are all one class is still a fold (its AUC is reported as unavailable)."""
    lesions, patients = cohort
    s3 = set(patients.patient_id[patients.site == "S3"])
    lesions = lesions.assign(pcr=np.where(lesions.patient_id.isin(s3), 0, lesions.pcr))
    folds = LeaveOneSiteOut().folds(lesions, patients, seed=0)
    assert held_out_folds(folds) == [0, 1, 2]


def test_patient_without_a_row_in_patients_csv_is_named(cohort):
    lesions, patients = cohort
    with pytest.raises(ValueError, match="P0003"):
        LeaveOneSiteOut().folds(lesions, patients[patients.patient_id != "P0003"], seed=0)


# --- external validation by site -----------------------------------------------------------------

def test_external_site_option(cohort):
    lesions, patients = cohort
    design = _instantiate("external_site")
    assert isinstance(design, ExternalBySite) and design.external_sites == ["S3"]
    folds = design.folds(lesions, patients, seed=0)
    site = folds.merge(patients, on="patient_id")
    assert set(site.fold[site.site == "S3"]) == {0}
    assert set(site.fold[site.site != "S3"]) == {DEVELOPMENT_ONLY}
    assert held_out_folds(folds) == [0]
    n_ext, n_dev = int((site.site == "S3").sum()), int((site.site != "S3").sum())
    assert design.describe(folds) == (f"external validation by site: development S1, S2 ({n_dev} patients), "
                                      f"external S3 ({n_ext} patients)")
    assert design.fold_labels(folds) == {0: "external: S3"}


def test_unknown_external_site_refused_with_the_known_ones(cohort):
    lesions, patients = cohort
    with pytest.raises(ValueError, match=r"unknown site\(s\) \['S9'\].*\['S1', 'S2', 'S3'\]"):
        ExternalBySite(["S3", "S9"]).folds(lesions, patients, seed=0)


def test_external_side_with_one_class_refused(cohort):
    lesions, patients = cohort
    s3 = set(patients.patient_id[patients.site == "S3"])
    lesions = lesions.assign(pcr=np.where(lesions.patient_id.isin(s3), 1, lesions.pcr))
    with pytest.raises(ValueError, match="external side's .* all pcr=1"):
        ExternalBySite(["S3"]).folds(lesions, patients, seed=0)
    with pytest.raises(ValueError, match="development side holds no patient"):
        ExternalBySite(["S1", "S2", "S3"]).folds(*cohort, seed=0)


# --- external validation by date ------------------------------------------------------------------

def test_external_date_option_and_inclusive_cutoff(cohort):
    lesions, patients = cohort
    design = _instantiate("external_date")
    assert isinstance(design, ExternalByDate) and design.column == "enrolment_date"
    # a patient enrolled exactly on the cutoff is external; the day before is development
    cutoff = patients.enrolment_date.iloc[80]
    day_before = str(np.datetime64(cutoff) - np.timedelta64(1, "D"))
    patients = patients.copy()
    patients.loc[79, "enrolment_date"] = day_before
    folds = ExternalByDate(cutoff=cutoff).folds(lesions, patients, seed=0)
    fold_of = dict(zip(folds.patient_id, folds.fold))
    assert fold_of[patients.patient_id[80]] == 0 and fold_of[patients.patient_id[79]] == DEVELOPMENT_ONLY
    dated = folds.merge(patients, on="patient_id")
    assert (dated.fold == np.where(dated.enrolment_date >= cutoff, 0, DEVELOPMENT_ONLY)).all()
    assert (folds.fold == 0).sum() == 20
    assert ExternalByDate(cutoff=cutoff).describe(folds) == (
        f"external validation by enrolment_date: development before {cutoff} (80 patients), "
        f"external on or after {cutoff} (20 patients)")


def test_every_bad_date_reported_with_line_and_patient(cohort):
    lesions, patients = cohort
    patients = patients.copy()
    patients.loc[4, "enrolment_date"] = "2019-02-30"
    patients.loc[10, "enrolment_date"] = "01/03/2019"
    patients.loc[17, "enrolment_date"] = np.nan
    with pytest.raises(ValueError) as err:
        ExternalByDate().folds(lesions, patients, seed=0)
    message = str(err.value)
    assert "3 patient(s)" in message
    for index in (4, 10, 17):
        assert f"patients.csv line {index + 2} (patient {patients.patient_id[index]})" in message


def test_date_design_needs_the_column_and_a_valid_cutoff(cohort):
    lesions, patients = cohort
    with pytest.raises(ValueError, match="no column 'enrolment_date'"):
        ExternalByDate().folds(lesions, patients.drop(columns="enrolment_date"), seed=0)
    with pytest.raises(ValueError, match="cutoff '2020-13-01' is not a date"):
        ExternalByDate(cutoff="2020-13-01")
    with pytest.raises(ValueError, match="external side holds no patient"):
        ExternalByDate(cutoff="2099-01-01").folds(lesions, patients, seed=0)


# --- folds file, held-out folds, development-only patients in the data module ----------------------

def test_folds_file_reused_and_checked(cohort, tmp_path):
    lesions, patients = cohort
    folds = ExternalBySite(["S3"]).folds(lesions, patients, seed=0)
    path = tmp_path / "folds.csv"
    folds.to_csv(path, index=False)
    pd.testing.assert_frame_equal(FoldsFile(path).folds(lesions, patients, 0), folds)
    folds.iloc[:3].to_csv(path, index=False)
    with pytest.raises(ValueError, match="have no fold"):
        FoldsFile(path).folds(lesions, patients, 0)
    pd.concat([folds, folds.iloc[[0]].assign(fold=0 if folds.fold.iloc[0] else 1)]).to_csv(path, index=False)
    with pytest.raises(FoldLeakageError, match=folds.patient_id.iloc[0]):
        FoldsFile(path).folds(lesions, patients, 0)


def test_held_out_folds():
    folds = pd.DataFrame({"patient_id": ["A", "B", "C", "D"], "fold": [2, -1, 0, 2]})
    assert held_out_folds(folds) == [0, 2]
    with pytest.raises(ValueError, match="no test fold"):
        held_out_folds(folds.assign(fold=-1))
    with pytest.raises(ValueError, match="patient B"):
        held_out_folds(folds.assign(fold=[0, -2, 1, 1]))


def test_development_only_patients_train_and_are_never_tested():
    rng = np.random.default_rng(0)
    lesions = pd.DataFrame({"patient_id": [f"P{i // 2:03d}" for i in range(40)],
                            "lesion_id": [f"L{i % 2}" for i in range(40)], "pcr": [i % 2 for i in range(40)]})
    patches = PatchSet(rng.normal(size=(40, 1, 8, 8, 8)).astype(np.float32), np.ones((40, 1), bool), lesions,
                       ["presurgery_ct"], 2.0, "key")
    patients = sorted(set(lesions.patient_id))
    folds = pd.DataFrame({"patient_id": patients, "fold": [0 if i < 6 else DEVELOPMENT_ONLY for i in range(20)]})
    dm = PCRDataModule(patches, folds, fold=0, val_fraction=0.25, seed=1)
    pid = lesions.patient_id.to_numpy()
    development = set(patients[6:])
    assert set(pid[dm.test_rows]) == set(patients[:6])
    assert set(pid[dm.fit_rows]) | set(pid[dm.val_rows]) == development
    assert len(dm.fit_rows) and len(dm.val_rows)
    with pytest.raises(ValueError, match="not a test fold"):
        PCRDataModule(patches, folds, fold=DEVELOPMENT_ONLY)

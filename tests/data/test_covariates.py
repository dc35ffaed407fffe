"""Clinical and lesion covariates: reading them from a cohort (every problem at once), encoding them
(imputation, scaling, one-hot), and fitting that encoding on a fold's fit lesions only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from dlm_ml.data.cohort import Cohort, load_cohort
from dlm_ml.data.covariates import (
    MISSING_CATEGORY,
    CovariateConfig,
    CovariateEncoder,
    LesionCovariates,
    covariate_table,
    lesion_covariates,
)
from dlm_ml.data.datamodule import PCRDataModule
from dlm_ml.data.patches import PatchSet
from tests.conftest import make_handmade_cohort

CLINICAL = CovariateConfig(numeric=("cea", "age", "diameter_mm"), log_numeric=("cea",), categorical=("sex",))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Cohort:
    """The handmade cohort (4 patients × 2 lesions) with CEA (P002 missing) and sex (P003 missing)
    in patients.csv and a diameter that differs per lesion."""
    root = make_handmade_cohort(tmp_path_factory.mktemp("covariates") / "cohort")
    patients = pd.read_csv(root / "patients.csv", dtype=str)
    patients["cea"] = ["5.0", "", "12.5", "3"]
    patients["sex"] = ["F", "M", "", "F"]
    patients.to_csv(root / "patients.csv", index=False)
    lesions = pd.read_csv(root / "lesions.csv", dtype=str)
    lesions["diameter_mm"] = [str(6.0 + i) for i in range(len(lesions))]
    lesions.to_csv(root / "lesions.csv", index=False)
    return load_cohort(root, check_images=False)


def with_patients(cohort: Cohort, **columns) -> Cohort:
    """The cohort with patients.csv columns replaced or added (values as read: strings or NaN)."""
    return dataclasses.replace(cohort, patients=cohort.patients.assign(**columns))


# --- covariate_table -----------------------------------------------------------------------------

def test_one_row_per_lesion_in_the_given_order(cohort):
    lesions = cohort.labelled_lesions()[["patient_id", "lesion_id"]].iloc[[5, 0, 3, 2, 7, 1, 6, 4]]
    table = covariate_table(cohort, lesions, CLINICAL)
    assert list(table.columns) == ["patient_id", "lesion_id", "cea", "age", "diameter_mm", "sex"]
    assert table[["patient_id", "lesion_id"]].values.tolist() == lesions.values.tolist()
    for col in ("cea", "age", "diameter_mm"):
        assert table[col].dtype == np.float64
    by_lesion = table.set_index(["patient_id", "lesion_id"])
    assert by_lesion.loc[("P001", "L1"), "cea"] == by_lesion.loc[("P001", "L2"), "cea"] == 5.0  # per patient
    assert np.isnan(by_lesion.loc[("P002", "L2"), "cea"])
    assert by_lesion.loc[("P004", "L2"), "diameter_mm"] == 13.0  # per lesion: row 8 of lesions.csv
    assert by_lesion.loc[("P002", "L1"), "sex"] == "M" and isinstance(by_lesion.loc[("P001", "L1"), "sex"], str)
    assert pd.isna(by_lesion.loc[("P003", "L1"), "sex"])


def test_numbers_used_as_categories_become_strings(cohort):
    table = covariate_table(cohort, cohort.lesions[["patient_id", "lesion_id"]], CovariateConfig(categorical=("age",)))
    assert table.age.tolist() == ["60", "60", "61", "61", "62", "62", "63", "63"]


def test_unknown_and_ambiguous_columns_are_listed_together(cohort):
    ambiguous = dataclasses.replace(cohort, lesions=cohort.lesions.assign(age=1.0))
    config = CovariateConfig(numeric=("age", "ecog"), categorical=("tumour_side",))
    with pytest.raises(ValueError) as err:
        covariate_table(ambiguous, ambiguous.lesions[["patient_id", "lesion_id"]], config)
    message = str(err.value)
    assert "'age' is a column of both patients.csv and lesions.csv" in message
    for unknown in ("'ecog'", "'tumour_side'"):
        assert f"covariate {unknown} is a column of neither patients.csv" in message
    # Both tables' columns are named, so the user sees what exists.
    assert "'cea'" in message and "'sex'" in message and "'diameter_mm'" in message and "'x_mm'" in message


def test_bad_values_are_listed_together_with_file_patient_lesion_and_value(cohort):
    bad = with_patients(cohort, cea=["5.0", "high", "0", "-2"], age=["60", "sixty", "62", "63"])
    with pytest.raises(ValueError) as err:
        covariate_table(bad, bad.lesions[["patient_id", "lesion_id"]], CLINICAL)
    message = str(err.value)
    for lesion in ("L1", "L2"):
        assert f"patients.csv: patient P002 lesion {lesion}: cea = 'high' is not a positive number" in message
        assert f"patients.csv: patient P003 lesion {lesion}: cea = '0' is not a positive number" in message
        assert f"patients.csv: patient P004 lesion {lesion}: cea = '-2' is not a positive number" in message
        assert f"patients.csv: patient P002 lesion {lesion}: age = 'sixty' is not a number" in message
    assert "P001" not in message


def test_lesion_covariates_is_none_without_columns(cohort):
    lesions = cohort.lesions[["patient_id", "lesion_id"]]
    assert lesion_covariates(cohort, lesions, CovariateConfig()) is None
    found = lesion_covariates(cohort, lesions, CLINICAL)
    assert found.config == CLINICAL and len(found.table) == len(lesions)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"numeric": ("age",), "categorical": ("age",)}, "both numeric and categorical"),
    ({"numeric": ("age",), "log_numeric": ("cea",)}, "log_numeric column.*'cea'.*must also be listed in numeric"),
    ({"numeric": ("patient_id",)}, "ids or the outcome"),
    ({"categorical": ("lesion_id",)}, "ids or the outcome"),
    ({"numeric": ("pcr",)}, "ids or the outcome"),
])
def test_covariate_config_refusals(kwargs, message):
    with pytest.raises(ValueError, match=f"data.covariates: .*{message}"):
        CovariateConfig(**kwargs)


def test_covariate_config_lists_every_refusal_at_once():
    with pytest.raises(ValueError, match="both numeric and categorical.*log_numeric.*ids or the outcome"):
        CovariateConfig(numeric=("age", "pcr"), log_numeric=("cea",), categorical=("age",))


# --- CovariateEncoder ----------------------------------------------------------------------------

def raw_table(n: int = 8) -> pd.DataFrame:
    """covariate_table-like: numeric ``cea`` (one missing; log), ``age``; categorical ``sex`` (one missing)."""
    return pd.DataFrame({
        "patient_id": [f"P{i}" for i in range(n)], "lesion_id": "L1",
        "cea": [2.0, 4.0, np.nan, 8.0, 16.0, 1.0, 32.0, 2.0][:n],
        "age": [50.0, 55.0, 60.0, 65.0, 70.0, 45.0, 80.0, 58.0][:n],
        "sex": pd.Series(["F", "M", "M", np.nan, "F", "F", "M", "F"][:n], dtype=object),
    })


ENCODED = CovariateConfig(numeric=("cea", "age"), log_numeric=("cea",), categorical=("sex",))


def test_feature_names_are_readable():
    encoder = CovariateEncoder(ENCODED).fit(raw_table())
    assert encoder.feature_names == ["cea", "age", "missing_cea", "missing_age", f"sex={MISSING_CATEGORY}", "sex=F",
                                     "sex=M"]
    assert encoder.n_features == 7 and encoder.transform(raw_table()).shape == (8, 7)


def test_numeric_columns_are_imputed_with_the_median_flagged_and_scaled_on_the_fit_table():
    table = raw_table()
    encoder = CovariateEncoder(ENCODED).fit(table)
    x = encoder.transform(table)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x[:, :2].mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(x[:, :2].std(axis=0), 1.0, atol=1e-5)
    # The missing CEA takes the median of the fit lesions' log CEA: log(4), the value of lesion 1.
    log_cea = np.log(table.cea.to_numpy())
    assert np.nanmedian(log_cea) == pytest.approx(np.log(4.0))
    assert x[2, 0] == x[1, 0]
    # The indicator separates exactly the lesion whose value was missing.
    missing = x[:, 2]
    np.testing.assert_array_equal(missing, (np.arange(8) == 2).astype(np.float32))


def test_missing_indicator_is_zero_or_one_as_documented():
    x = CovariateEncoder(ENCODED).fit(raw_table()).transform(raw_table())
    assert set(x[:, 2].tolist()) == {0.0, 1.0}


def test_new_values_are_encoded_with_the_fitted_parameters():
    fit = raw_table()
    encoder = CovariateEncoder(ENCODED).fit(fit)
    new = raw_table(2).assign(age=[50.0, 50.0 + fit.age.std(ddof=0)], cea=[np.nan, 4.0])
    x = encoder.transform(new)
    scaled_50 = encoder.transform(fit)[0, 1]
    assert x[0, 1] == pytest.approx(scaled_50) and x[1, 1] - x[0, 1] == pytest.approx(1.0, abs=1e-5)
    assert x[0, 0] == pytest.approx(x[1, 0])  # missing → the fit median, log(4)


def test_categories_one_hot_with_missing_as_its_own_category_and_unseen_as_zeros():
    encoder = CovariateEncoder(CovariateConfig(categorical=("sex",))).fit(raw_table())
    assert encoder.feature_names == [f"sex={MISSING_CATEGORY}", "sex=F", "sex=M"]
    new = pd.DataFrame({"sex": pd.Series(["M", np.nan, "X", "F"], dtype=object)})
    np.testing.assert_array_equal(encoder.transform(new), [[0, 0, 1], [1, 0, 0], [0, 0, 0], [0, 1, 0]])


def test_empty_config_encodes_to_zero_width():
    encoder = CovariateEncoder(CovariateConfig()).fit(raw_table())
    x = encoder.transform(raw_table())
    assert x.shape == (8, 0) and x.dtype == np.float32 and encoder.feature_names == [] and encoder.n_features == 0


def test_encoder_refusals():
    with pytest.raises(RuntimeError, match="before fit"):
        CovariateEncoder(ENCODED).transform(raw_table())
    with pytest.raises(ValueError, match="no lesion to fit on"):
        CovariateEncoder(ENCODED).fit(raw_table().iloc[:0])
    with pytest.raises(ValueError, match=r"\['cea'\] have no value in any fit lesion"):
        CovariateEncoder(ENCODED).fit(raw_table().assign(cea=np.nan))


def test_feature_names_when_a_numeric_name_extends_a_categorical_name():
    table = pd.DataFrame({"chemo_cycles": [4.0, 6.0, 8.0], "chemo": pd.Series(["yes", "no", "yes"], dtype=object)})
    config = CovariateConfig(numeric=("chemo_cycles",), categorical=("chemo",))
    assert CovariateEncoder(config).fit(table).feature_names == ["chemo_cycles", "missing_chemo_cycles", "chemo=no",
                                                                 "chemo=yes"]


# --- fitted per fold, inside PCRDataModule -------------------------------------------------------

N_PATIENTS = 12


@pytest.fixture(scope="module")
def patches() -> PatchSet:
    rng = np.random.default_rng(0)
    lesions = pd.DataFrame([{"patient_id": f"P{p:03d}", "lesion_id": f"L{k}", "pcr": k}
                            for p in range(N_PATIENTS) for k in (0, 1)])
    image = rng.normal(size=(len(lesions), 2, 4, 4, 4)).astype(np.float32)
    present = np.ones((len(lesions), 2), bool)
    present[::3, 1] = False
    return PatchSet(image, present, lesions, ["baseline_ct", "presurgery_ct"], 2.0, "in-memory")


@pytest.fixture(scope="module")
def folds() -> pd.DataFrame:
    return pd.DataFrame({"patient_id": [f"P{p:03d}" for p in range(N_PATIENTS)], "fold": np.arange(N_PATIENTS) % 3})


FOLD_CONFIG = CovariateConfig(numeric=("cea", "age", "diameter_mm"), log_numeric=("cea",),
                              categorical=("sex", "regimen"))


def fold_covariates(patches: PatchSet) -> LesionCovariates:
    rng = np.random.default_rng(1)
    n = len(patches)
    table = patches.lesions[["patient_id", "lesion_id"]].copy()
    table["cea"] = np.exp(rng.normal(1.5, 1.0, n))
    table.loc[::5, "cea"] = np.nan
    table["age"] = rng.normal(62, 9, n).round()
    table["diameter_mm"] = rng.uniform(5, 30, n)
    table["sex"] = pd.Series(rng.choice(["F", "M"], n), dtype=object)
    table.loc[::7, "sex"] = np.nan
    table["regimen"] = pd.Series(rng.choice(["FOLFOX", "FOLFIRI", "CAPOX"], n), dtype=object)
    return LesionCovariates(FOLD_CONFIG, table)


def datamodule(patches, folds, covariates, fold: int = 0) -> PCRDataModule:
    return PCRDataModule(patches, folds, fold=fold, batch_size=4, val_fraction=0.25, seed=3, covariates=covariates)


def test_test_fold_values_do_not_shape_the_encoding(patches, folds):
    """Whatever the test fold's covariates hold (extreme values, missing values, new categories),
    the encoded covariates of the fit and validation lesions and the fitted encoder are unchanged."""
    original = fold_covariates(patches)
    dm = datamodule(patches, folds, original)
    test = dm.test_rows
    changed = original.table.copy()
    changed.loc[test, "cea"] = np.where(np.arange(len(test)) % 2, 1e9, np.nan)
    changed.loc[test, "age"] = 1e6
    changed.loc[test, "diameter_mm"] = -50.0
    changed.loc[test, "sex"] = "unknown"
    changed.loc[test, "regimen"] = ["FOLFOXIRI", np.nan] * (len(test) // 2) + ["FOLFOXIRI"] * (len(test) % 2)
    dm_changed = datamodule(patches, folds, LesionCovariates(FOLD_CONFIG, changed))

    assert np.array_equal(dm.fit_rows, dm_changed.fit_rows) and np.array_equal(dm.val_rows, dm_changed.val_rows)
    train = np.concatenate([dm.fit_rows, dm.val_rows])
    assert np.array_equal(dm.covariates[train], dm_changed.covariates[train])
    assert dm.covariate_encoder.feature_names == dm_changed.covariate_encoder.feature_names
    # The two fitted encoders are the same function: equal on any input, here the changed table.
    assert np.array_equal(dm.covariate_encoder.transform(changed), dm_changed.covariate_encoder.transform(changed))
    assert not np.array_equal(dm.covariates[test], dm_changed.covariates[test])  # the change did reach the test rows
    names = dm.covariate_encoder.feature_names
    unseen = [i for i, name in enumerate(names) if name.startswith("sex=")]
    assert not dm_changed.covariates[np.ix_(test, unseen)].any()  # an unseen category: all zeros


def test_scaling_is_fitted_on_the_fit_lesions_exactly(patches, folds):
    """Mean 0 and SD 1 over the fit lesions: not over the fit and validation lesions, nor all."""
    covariates = fold_covariates(patches)
    for fold in range(3):
        dm = datamodule(patches, folds, covariates, fold)
        names = dm.covariate_encoder.feature_names
        numeric = [names.index(c) for c in ("cea", "age", "diameter_mm")]
        fit = dm.covariates[dm.fit_rows][:, numeric]
        np.testing.assert_allclose(fit.mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(fit.std(axis=0), 1.0, atol=1e-5)
        assert not np.allclose(dm.covariates[:, numeric].mean(axis=0), 0.0, atol=1e-3)


def test_a_misaligned_covariate_table_is_refused(patches, folds):
    covariates = fold_covariates(patches)
    for table in (covariates.table.iloc[::-1], covariates.table.iloc[1:]):
        with pytest.raises(ValueError, match="does not list the 24 lesions of the patch set in the same order"):
            datamodule(patches, folds, LesionCovariates(FOLD_CONFIG, table))


def test_records_and_batches_carry_the_encoded_covariates(patches, folds):
    dm = datamodule(patches, folds, fold_covariates(patches))
    assert dm.n_covariates == dm.covariate_encoder.n_features == len(dm.covariate_encoder.feature_names) == 12
    dm.setup("fit")
    for dataset, rows in ((dm.fit_set, dm.fit_rows), (dm.val_set, dm.val_rows), (dm.test_set, dm.test_rows)):
        item = dataset[0]
        assert item["covariates"].dtype == np.float32 and item["covariates"].shape == (12,)
        assert np.array_equal(item["covariates"], dm.covariates[rows[0]])
        assert np.array_equal(np.asarray(item["present"]), patches.present[rows[0]])
    batch = next(iter(dm.train_dataloader()))
    assert batch["covariates"].dtype == torch.float32 and batch["covariates"].shape == (4, 12)
    assert batch["present"].dtype == torch.bool and batch["present"].shape == (4, 2)


def test_without_covariates_records_carry_an_empty_vector(patches, folds):
    for covariates in (None, LesionCovariates(CovariateConfig(), patches.lesions[["patient_id", "lesion_id"]])):
        dm = datamodule(patches, folds, covariates)
        assert dm.n_covariates == 0 and dm.covariate_encoder is None
        dm.setup("fit")
        assert next(iter(dm.val_dataloader()))["covariates"].shape == (4, 0)

"""A fitted CovariateEncoder as plain data: its state survives JSON, the restored encoder encodes
exactly as the fitted one, and both encode exactly as the scikit-learn column transformer the
encoding is defined by."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from dlm_ml.data.covariates import MISSING_CATEGORY, CovariateConfig, CovariateEncoder

CONFIG = CovariateConfig(numeric=("cea", "age", "diameter_mm"), log_numeric=("cea",),
                         categorical=("sex", "regimen"))


def fit_table() -> pd.DataFrame:
    """24 lesions: CEA (log, some missing), age, a constant diameter (scale 1), sex (some missing),
    regimen (never missing at fit)."""
    rng = np.random.default_rng(7)
    n = 24
    table = pd.DataFrame({"patient_id": [f"P{i:02d}" for i in range(n)], "lesion_id": "L1",
                          "cea": np.exp(rng.normal(1.5, 1.0, n)), "age": rng.normal(62, 9, n).round(),
                          "diameter_mm": 12.0})
    table.loc[::5, "cea"] = np.nan
    table["sex"] = pd.Series(rng.choice(["F", "M"], n), dtype=object)
    table.loc[::7, "sex"] = np.nan
    table["regimen"] = pd.Series(rng.choice(["FOLFOX", "FOLFIRI", "CAPOX"], n), dtype=object)
    return table


def new_table() -> pd.DataFrame:
    """Lesions of another cohort: values missing where the fit lesions had none (age, regimen),
    categories never seen at fit (sex "X", regimen "FOLFOXIRI"), values beyond the fit range."""
    return pd.DataFrame({
        "patient_id": ["Q1", "Q2", "Q3", "Q4", "Q5"], "lesion_id": "L1",
        "cea": [np.nan, 3.0, 1e4, 0.2, 7.5],
        "age": [np.nan, 45.0, 90.0, 61.0, 70.0],
        "diameter_mm": [12.0, 30.0, np.nan, 5.0, 12.0],
        "sex": pd.Series(["M", "X", np.nan, "F", "F"], dtype=object),
        "regimen": pd.Series(["FOLFOX", np.nan, "FOLFOXIRI", "CAPOX", "FOLFIRI"], dtype=object),
    })


def sklearn_reference(config: CovariateConfig, fit: pd.DataFrame, *tables: pd.DataFrame):
    """The encoding as a scikit-learn ColumnTransformer (the definition the encoder must match):
    median imputation + standard scaling, all-feature missing indicators, constant-imputed
    one-hot with unknown categories ignored. Returns the float32 encodings and feature names."""
    def prepared(table):
        out = table[list(config.columns)].copy()
        for col in config.log_numeric:
            out[col] = np.log(out[col].astype(float))
        for col in config.categorical:
            out[col] = out[col].astype(object)
        return out

    numeric = list(config.numeric)
    transformer = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("missing", MissingIndicator(features="all", error_on_new=False), numeric),
        ("categorical", make_pipeline(
            SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY, missing_values=np.nan),
            OneHotEncoder(handle_unknown="ignore", sparse_output=False)), list(config.categorical)),
    ], remainder="drop", verbose_feature_names_out=False).fit(prepared(fit))
    categories = transformer.named_transformers_["categorical"][-1].categories_
    names = numeric + [f"missing_{c}" for c in numeric] + [
        f"{c}={v}" for c, values in zip(config.categorical, categories) for v in values]
    return [np.asarray(transformer.transform(prepared(t)), dtype=np.float32) for t in tables], names


def test_transform_equals_the_sklearn_column_transformer_exactly():
    fit, new = fit_table(), new_table()
    encoder = CovariateEncoder(CONFIG).fit(fit)
    (ref_fit, ref_new), names = sklearn_reference(CONFIG, fit, fit, new)
    assert encoder.feature_names == names
    assert np.array_equal(encoder.transform(fit), ref_fit)  # bit for bit, no tolerance
    x = encoder.transform(new)
    assert x.dtype == np.float32 and x.shape == (5, 3 + 3 + 3 + 3)
    assert np.array_equal(x, ref_new)
    # The table does exercise what it is meant to: an imputed value, an unseen category.
    assert x[0, names.index("missing_age")] == 1 and not x[1, [names.index(f"sex={v}") for v in ("F", "M")]].any()
    assert x[2, names.index(f"sex={MISSING_CATEGORY}")] == 1
    assert not x[1, [i for i, name in enumerate(names) if name.startswith("regimen=")]].any()


def test_state_holds_the_fitted_parameters_as_documented():
    fit = fit_table()
    state = CovariateEncoder(CONFIG).fit(fit).state()
    assert state["config"] == {"numeric": ["cea", "age", "diameter_mm"], "log_numeric": ["cea"],
                               "categorical": ["sex", "regimen"]}
    log_cea = np.log(fit.cea.to_numpy())
    assert state["numeric"]["cea"]["median"] == np.nanmedian(log_cea)
    imputed = np.where(np.isnan(log_cea), np.nanmedian(log_cea), log_cea)
    assert state["numeric"]["cea"]["mean"] == pytest.approx(imputed.mean(), rel=1e-12)
    assert state["numeric"]["cea"]["scale"] == pytest.approx(imputed.std(), rel=1e-12)
    assert state["numeric"]["diameter_mm"]["scale"] == 1.0  # a constant column is not divided by 0
    assert state["categorical"] == {"sex": [MISSING_CATEGORY, "F", "M"], "regimen": ["CAPOX", "FOLFIRI", "FOLFOX"]}


def test_state_survives_json_and_the_restored_encoder_encodes_identically():
    fitted = CovariateEncoder(CONFIG).fit(fit_table())
    text = json.dumps(fitted.state())
    restored = CovariateEncoder.from_state(json.loads(text))
    assert restored.config == CONFIG
    assert restored.feature_names == fitted.feature_names
    for table in (fit_table(), new_table()):
        assert np.array_equal(restored.transform(table), fitted.transform(table))
    assert json.dumps(restored.state()) == text


def test_state_is_a_copy():
    encoder = CovariateEncoder(CONFIG).fit(fit_table())
    before = encoder.transform(new_table())
    state = encoder.state()
    state["numeric"]["age"]["mean"] = 0.0
    state["categorical"]["sex"].reverse()
    assert np.array_equal(encoder.transform(new_table()), before)


def test_empty_config_round_trips_to_zero_width():
    encoder = CovariateEncoder(CovariateConfig()).fit(fit_table())
    restored = CovariateEncoder.from_state(json.loads(json.dumps(encoder.state())))
    x = restored.transform(new_table())
    assert x.shape == (5, 0) and x.dtype == np.float32
    assert restored.feature_names == [] and restored.n_features == 0 and not restored.config


def test_state_before_fit_is_refused():
    with pytest.raises(RuntimeError, match="before fit"):
        CovariateEncoder(CONFIG).state()


def _mutated(edit):
    state = CovariateEncoder(CONFIG).fit(fit_table()).state()
    edit(state)
    return state


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.update(version=2), "version must be 1"),
    (lambda s: s.pop("numeric"), "'numeric' must be a mapping"),
    (lambda s: s["config"].update(numeric="cea"), "config.numeric must be a list of column names"),
    (lambda s: s["config"].update(log_numeric=["sex"]), "log_numeric column.*must also be listed in numeric"),
    (lambda s: s["numeric"].pop("age"), "numeric holds column.*the config lists"),
    (lambda s: s["categorical"].update(site=["A"]), "categorical holds column.*the config lists"),
    (lambda s: s["numeric"]["age"].pop("scale"), r"numeric\['age'\] must map"),
    (lambda s: s["numeric"]["age"].update(mean="62"), r"numeric\['age'\] must map"),
    (lambda s: s["numeric"]["age"].update(median=float("nan")), r"numeric\['age'\] must map"),
    (lambda s: s["numeric"]["age"].update(mean=True), r"numeric\['age'\] must map"),
    (lambda s: s["numeric"]["age"].update(scale=0.0), r"numeric\['age'\] scale must be positive"),
    (lambda s: s["categorical"]["sex"].append("F"), r"categorical\['sex'\] must be a list of distinct"),
    (lambda s: s["categorical"].update(sex=[1, 2]), r"categorical\['sex'\] must be a list of distinct"),
])
def test_a_malformed_state_is_refused(edit, message):
    with pytest.raises(ValueError, match=f"covariate encoder state: .*{message}"):
        CovariateEncoder.from_state(_mutated(edit))


def test_every_problem_of_a_state_is_named_at_once():
    def edit(state):
        state["numeric"]["age"]["scale"] = -1.0
        state["categorical"]["sex"] = "F"
    with pytest.raises(ValueError, match=r"numeric\['age'\] scale.*categorical\['sex'\]|categorical\['sex'\].*"
                                         r"numeric\['age'\] scale"):
        CovariateEncoder.from_state(_mutated(edit))
    with pytest.raises(ValueError, match="must be a mapping, got list"):
        CovariateEncoder.from_state([])


def test_a_table_without_a_covariate_column_is_refused_by_name():
    encoder = CovariateEncoder(CONFIG).fit(fit_table())
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['age'\]"):
        encoder.transform(new_table().drop(columns="age"))


def test_an_infinite_value_is_refused_naming_the_lesion():
    encoder = CovariateEncoder(CONFIG).fit(fit_table())
    with pytest.raises(ValueError, match="'age': 1 infinite value.*patient Q3 lesion L1"):
        encoder.transform(new_table().assign(age=[1.0, 2.0, np.inf, 4.0, 5.0]))

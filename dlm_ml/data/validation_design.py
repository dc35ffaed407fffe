"""Validation designs: how the patients of a cohort are split into test folds.

Each design is built by ``hydra.utils.instantiate(cfg.data.validation)`` (the config group
``data/validation``) and turns the cohort's lesions and ``patients.csv`` into a folds table
``patient_id, fold`` (:mod:`dlm_ml.data.folds`):

- :class:`KFold`: patient-grouped, label-stratified K folds (what :func:`make_folds` has always made);
- :class:`LeaveOneSiteOut`: one test fold per site;
- :class:`ExternalBySite`, :class:`ExternalByDate`: a development/external split; the external
  patients are the one test fold (0), the development patients are
  :data:`~dlm_ml.data.folds.DEVELOPMENT_ONLY` (they train and are never tested);
- :class:`FoldsFile`: a folds table written earlier (``data.folds_file``).

Each also says, in one line for the report header (:meth:`describe`), what it did, and names its
test folds (:meth:`fold_labels`) for the per-fold table of the report.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pandas as pd

from dlm_ml.data.cohort import schema
from dlm_ml.data.folds import DEVELOPMENT_ONLY, check_no_leakage, check_sites_not_split, held_out_folds, make_folds

PATIENTS_CSV = schema.PATIENTS_CSV
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class ValidationDesign:
    """A way of splitting patients into test folds (and, for external designs, development-only
    patients). Subclasses implement :meth:`folds`, :meth:`describe` and may refine :meth:`fold_labels`.
    """

    name = "design"

    def folds(self, lesions: pd.DataFrame, patients: pd.DataFrame, seed: int) -> pd.DataFrame:
        """The folds table ``patient_id, fold`` (sorted by patient, one row per patient of ``lesions``).

        ``lesions``: ``patient_id, lesion_id, pcr``, one row per lesion; ``patients``: patients.csv
        (``patient_id``, ``site`` and any optional columns); ``seed``: for designs that draw.
        """
        raise NotImplementedError

    def describe(self, folds: pd.DataFrame) -> str:
        """One line for the report header, e.g. ``leave-one-site-out: 3 folds (...)``."""
        raise NotImplementedError

    def fold_labels(self, folds: pd.DataFrame) -> dict[int, str]:
        """Test fold id -> its label in the per-fold table."""
        return {k: f"fold {k}" for k in held_out_folds(folds)}


class KFold(ValidationDesign):
    """Patient-grouped, label-stratified K folds: exactly :func:`make_folds` ``(lesions, n_folds, seed)``."""

    name = "kfold"

    def __init__(self, n_folds: int):
        self.n_folds = int(n_folds)

    def folds(self, lesions, patients, seed):
        return make_folds(lesions, self.n_folds, int(seed))

    def describe(self, folds):
        return (f"patient-grouped stratified {len(held_out_folds(folds))}-fold cross-validation "
                f"({folds.patient_id.nunique()} patients)")


class LeaveOneSiteOut(ValidationDesign):
    """One test fold per site, sites in sorted order (fold 0 = first site). Refused with fewer than
    two sites. A site whose lesions are all of one outcome class is still predicted; its AUC is
    undefined and the report says so."""

    name = "leave_one_site_out"

    def __init__(self, site_column: str = "site"):
        self.site_column = site_column
        self._site_of_fold: dict[int, str] | None = None

    def folds(self, lesions, patients, seed):
        site = _patient_values(lesions, patients, self.site_column)
        sites = sorted(site.unique())
        if len(sites) < 2:
            raise ValueError(f"leave-one-site-out needs at least 2 sites in {PATIENTS_CSV} column "
                             f"{self.site_column!r}; the patients with lesions are all at {sites}")
        fold_of_site = {s: k for k, s in enumerate(sites)}
        folds = _table(site.map(fold_of_site))
        check_no_leakage(folds)
        check_sites_not_split(folds, site.rename(self.site_column).reset_index(), self.site_column)
        self._site_of_fold = {k: s for s, k in fold_of_site.items()}
        return folds

    def fold_labels(self, folds):
        sites = self._sites()
        return {k: f"site {sites[k]}" for k in held_out_folds(folds)}

    def describe(self, folds):
        sites, sizes = self._sites(), folds.groupby("fold").size()
        parts = ", ".join(f"fold {k} = site {sites[k]} ({sizes[k]} patients)" for k in held_out_folds(folds))
        return f"leave-one-site-out: {len(sizes)} folds ({parts})"

    def _sites(self) -> dict[int, str]:
        if self._site_of_fold is None:
            raise RuntimeError("leave-one-site-out: make the folds (.folds) before describing them")
        return self._site_of_fold


class ExternalBySite(ValidationDesign):
    """Development/external split by site: the patients of ``external_sites`` are the one test
    fold (0), the others train only (:data:`DEVELOPMENT_ONLY`). Both sides must hold both classes."""

    name = "external_site"

    def __init__(self, external_sites: list[str], site_column: str = "site"):
        self.external_sites = sorted(str(s) for s in external_sites)
        self.site_column = site_column
        self._development_sites: list[str] | None = None
        if not self.external_sites:
            raise ValueError("external validation by site: external_sites is empty; name at least one site")

    def folds(self, lesions, patients, seed):
        site = _patient_values(lesions, patients, self.site_column)
        known = sorted(site.unique())
        unknown = [s for s in self.external_sites if s not in known]
        if unknown:
            raise ValueError(f"external validation by site: unknown site(s) {unknown}; the sites of the patients "
                             f"with lesions in {PATIENTS_CSV} are {known}")
        external = site.isin(self.external_sites)
        folds = _split(lesions, external, "by site", f"sites {self.external_sites}")
        check_sites_not_split(folds, site.rename(self.site_column).reset_index(), self.site_column)
        self._development_sites = sorted(set(known) - set(self.external_sites))
        return folds

    def fold_labels(self, folds):
        return {0: f"external: {', '.join(self.external_sites)}"}

    def describe(self, folds):
        n_dev, n_ext = _side_sizes(folds)
        if self._development_sites is None:
            raise RuntimeError("external validation by site: make the folds (.folds) before describing them")
        development = ", ".join(self._development_sites)
        return (f"external validation by site: development {development} ({n_dev} patients), "
                f"external {', '.join(self.external_sites)} ({n_ext} patients)")


class ExternalByDate(ValidationDesign):
    """Development/external split by a date column of patients.csv: patients on or after
    ``cutoff`` (inclusive) are external (fold 0), those before it develop the model
    (:data:`DEVELOPMENT_ONLY`). Dates are ISO ``YYYY-MM-DD``; every patient with lesions needs
    one. Both sides must hold both classes."""

    name = "external_date"

    def __init__(self, column: str = "enrolment_date", cutoff: str = "2020-01-01"):
        self.column = column
        self.cutoff = _parse_date(str(cutoff))
        if self.cutoff is None:
            raise ValueError(f"external validation by {column}: cutoff {cutoff!r} is not a date (YYYY-MM-DD)")

    def folds(self, lesions, patients, seed):
        if self.column not in patients.columns:
            raise ValueError(f"external validation by date: {PATIENTS_CSV} has no column {self.column!r} "
                             f"(its columns: {list(patients.columns)})")
        needed = set(lesions.patient_id.astype(str))
        dates = _dates(patients, self.column, needed)
        absent = sorted(needed - set(dates))  # every listed patient has a date or was reported above
        if absent:
            raise ValueError(f"patient(s) with lesions but no row in {PATIENTS_CSV}: {absent[:10]}")
        external = pd.Series({p: dates[p] >= self.cutoff for p in sorted(needed)})
        return _split(lesions, external, f"by {self.column}", f"{self.column} on or after {self.cutoff}")

    def fold_labels(self, folds):
        return {0: f"external: {self.column} on or after {self.cutoff}"}

    def describe(self, folds):
        n_dev, n_ext = _side_sizes(folds)
        return (f"external validation by {self.column}: development before {self.cutoff} ({n_dev} patients), "
                f"external on or after {self.cutoff} ({n_ext} patients)")


class FoldsFile(ValidationDesign):
    """A folds table written earlier (``patient_id, fold``, e.g. an earlier run's ``folds.csv``),
    reused as it is: every patient with lesions needs a fold; no patient may be in two folds."""

    name = "folds_file"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def folds(self, lesions, patients, seed):
        table = pd.read_csv(self.path, dtype={"patient_id": str})
        missing = [c for c in ("patient_id", "fold") if c not in table.columns]
        if missing:
            raise ValueError(f"{self.path}: missing column(s) {missing}; a folds table has patient_id, fold")
        check_no_leakage(table)
        held_out_folds(table)  # fold values are integers >= -1, at least one test fold
        table = table.drop_duplicates(["patient_id", "fold"]).astype({"fold": int})
        without = sorted(set(lesions.patient_id.astype(str)) - set(table.patient_id))
        if without:
            raise ValueError(f"{self.path}: {len(without)} patient(s) with lesions have no fold: {without[:10]}")
        return table.sort_values("patient_id").reset_index(drop=True)[["patient_id", "fold"]]

    def describe(self, folds):
        n_dev = int((folds.fold == DEVELOPMENT_ONLY).sum())
        extra = f", {n_dev} development-only patients" if n_dev else ""
        return f"folds read from {self.path}: {len(held_out_folds(folds))} test folds{extra}"


def _patient_values(lesions: pd.DataFrame, patients: pd.DataFrame, column: str) -> pd.Series:
    """``column`` of patients.csv (as strings, e.g. the site) for every patient with lesions: a
    Series indexed by patient id (sorted). A patient with lesions but no row in patients.csv, or
    with an empty value, is refused."""
    if column not in patients.columns:
        raise ValueError(f"{PATIENTS_CSV} has no column {column!r} (its columns: {list(patients.columns)})")
    value_of = dict(zip(patients.patient_id.astype(str), patients[column]))
    ids = sorted(set(lesions.patient_id.astype(str)))
    absent = [p for p in ids if p not in value_of]
    if absent:
        raise ValueError(f"patient(s) with lesions but no row in {PATIENTS_CSV}: {absent[:10]}")
    values = pd.Series([value_of[p] for p in ids], index=pd.Index(ids, name="patient_id"), name=column)
    empty = values.index[values.isna()].tolist()
    if empty:
        raise ValueError(f"{PATIENTS_CSV}: {column} is empty for patient(s) {empty[:10]}")
    return values.astype(str)


def _table(fold: pd.Series) -> pd.DataFrame:
    """Folds table from a Series patient id -> fold."""
    return pd.DataFrame({"patient_id": fold.index.astype(str), "fold": fold.to_numpy(int)})


def _split(lesions: pd.DataFrame, external: pd.Series, how: str, rule: str) -> pd.DataFrame:
    """Folds table of a development/external split (``external``: patient id -> bool): external
    patients fold 0, the others :data:`DEVELOPMENT_ONLY`. Each side must hold patients and both
    outcome classes among its lesions."""
    folds = _table(external.map({True: 0, False: DEVELOPMENT_ONLY}))
    side = lesions.patient_id.astype(str).map(dict(zip(folds.patient_id, folds.fold)))
    problems = []
    for fold, what in ((DEVELOPMENT_ONLY, "development"), (0, "external")):
        pcr = lesions.pcr[side == fold]
        if pcr.empty:
            problems.append(f"the {what} side holds no patient")
        elif pcr.nunique() < 2:
            problems.append(f"the {what} side's {len(pcr)} lesions are all pcr={int(pcr.iloc[0])} "
                            "(both outcome classes are needed)")
    if problems:
        raise ValueError(f"external validation {how} ({rule} external): " + "; ".join(problems))
    check_no_leakage(folds)
    return folds


def _side_sizes(folds: pd.DataFrame) -> tuple[int, int]:
    """(development, external) patients of a development/external folds table."""
    return int((folds.fold == DEVELOPMENT_ONLY).sum()), int((folds.fold >= 0).sum())


def _parse_date(text: str) -> date | None:
    """An ISO ``YYYY-MM-DD`` date, or None when ``text`` is not one."""
    text = text.strip()
    if not _ISO_DATE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _dates(patients: pd.DataFrame, column: str, needed: set[str]) -> dict[str, date]:
    """Patient id -> date of ``column`` for the ``needed`` patients; every value that is not an
    ISO date is reported at once, with its patients.csv line (header = line 1; the table's
    ``csv_line`` column when it has one, else its row order) and patient."""
    lines = patients["csv_line"] if "csv_line" in patients.columns else range(2, len(patients) + 2)
    parsed, problems = {}, []
    for pid, value, line in zip(patients.patient_id.astype(str), patients[column], lines):
        if pid not in needed:
            continue
        day = None if pd.isna(value) else _parse_date(str(value))
        if day is None:
            problems.append(f"{PATIENTS_CSV} line {int(line)} (patient {pid}): {column} {value!r} "
                            "is not a date (YYYY-MM-DD)")
        else:
            parsed[pid] = day
    if problems:
        raise ValueError(f"external validation by {column}: {len(problems)} patient(s) without a usable date:\n  "
                         + "\n  ".join(problems))
    return parsed

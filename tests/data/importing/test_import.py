"""dlm-import end to end on copies of the reference files: tables, sidecars,
no identifiers in anything written, restarts, and problems reported together."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
import yaml

from dlm_ml.cli.import_dicom import main as dlm_import
from dlm_ml.data.cohort import schema
from dlm_ml.data.imaging import dicom, masks
from dlm_ml.data.imaging.imageio import read_image

from ..refdata import (
    CRLM_CT,
    DCMQI_CT,
    DCMQI_NRRD,
    DCMQI_SEG,
    GE_ADC_ZIP,
    GE_DWI,
    PROSTATEX,
    PX_ADC,
    PX_DWI,
    TOSHIBA_ADC,
    need,
)

CONSOLE = Path(sys.executable).with_name("dlm-import")
IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyInstanceUID",
               "SeriesInstanceUID", "SOPInstanceUID")


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)
    for p in [dst, *dst.rglob("*")]:  # the reference files are read-only; the copies need not be
        p.chmod(0o755 if p.is_dir() else 0o644)


def _identifiers(input_dir: Path) -> set[str]:
    """Identifying tag values of every DICOM object under ``input_dir`` and its folder names."""
    values: set[str] = set()
    blobs = []
    for p in input_dir.rglob("*"):
        if p.is_dir():
            values.add(p.name)
        elif p.suffix == ".zip":
            values.add(p.stem)
            with zipfile.ZipFile(p) as zf:
                blobs += [io.BytesIO(zf.read(n)) for n in zf.namelist() if not n.endswith("/")]
                values.update(Path(n).parent.name for n in zf.namelist() if "/" in n)
        elif p.suffix != ".nrrd":
            blobs.append(p)
    for blob in blobs:
        ds = pydicom.dcmread(blob, stop_before_pixels=True)
        for key in IDENTIFYING:
            value = str(ds.get(key, "") or "").strip()
            if value:
                values.add(value)
    values.discard("")
    return values


def _written_text(path: Path) -> bytes:
    """Bytes of a written file that could carry text: whole text files; NIfTI header + extensions."""
    data = path.read_bytes()
    if path.name.endswith(".nii.gz"):
        data = gzip.decompress(data)
        vox_offset = int(struct.unpack("<f", data[108:112])[0])
        return data[: max(vox_offset, 352)]
    return data


def _scan_for_identifiers(cohort: Path, identifiers: set[str]) -> list[str]:
    leaks = []
    files = [p for p in cohort.rglob("*") if p.is_file()]
    assert files
    for p in files:
        text = _written_text(p)
        for value in identifiers:
            if value.encode() in text or value.encode() in p.relative_to(cohort).as_posix().encode():
                leaks.append(f"{value!r} in {p.relative_to(cohort)}")
    return leaks


def _uid(folder: Path) -> str:
    first = next(p for p in sorted(folder.rglob("*")) if p.is_file())
    return str(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID)


@pytest.fixture(scope="module")
def site(refdata, tmp_path_factory):
    """An input folder of studies (distinctive folder names), a mapping, lesions and readings."""
    root = tmp_path_factory.mktemp("import")
    src = root / "in"
    _copy_tree(need(refdata, CRLM_CT), src / "PACS_EXPORT_K7" / "HX93" / "SER_2QK")
    _copy_tree(need(refdata, PROSTATEX), src / "PACS_EXPORT_K7" / "ProstateX-0000" / "07-07-2011")
    _copy_tree(need(refdata, TOSHIBA_ADC), src / "LOOSE" / "ZZT4")
    _copy_tree(need(refdata, DCMQI_CT), src / "LOOSE" / "CT3WQ")
    (src / "LOOSE" / "GE_PX").mkdir(parents=True)
    shutil.copy(need(refdata, GE_ADC_ZIP), src / "LOOSE" / "GE_PX" / "pm-example-dcm.zip")
    (src / "MASKS_W8").mkdir()
    shutil.copy(need(refdata, DCMQI_SEG), src / "MASKS_W8" / "liver.dcm")
    shutil.copy(need(refdata, DCMQI_NRRD), src / "MASKS_W8" / "liver_seg.nrrd")
    mapping = root / "studies.csv"
    pd.DataFrame(
        [
            {"patient_id": "P001", "timepoint": "baseline", "study_path": "PACS_EXPORT_K7/HX93", "site": "siteA"},
            {"patient_id": "P001", "timepoint": "baseline", "study_uid": _uid(src / "LOOSE" / "ZZT4"), "site": "siteA"},
            {"patient_id": "P001", "timepoint": "presurgery", "study_path": "PACS_EXPORT_K7/ProstateX-0000"},
            {"patient_id": "P002", "timepoint": "baseline", "study_uid": _uid(src / "LOOSE" / "CT3WQ")},
            {"patient_id": "P002", "timepoint": "presurgery", "study_path": "LOOSE/GE_PX"},
        ]
    ).to_csv(mapping, index=False)
    lesions = root / "lesions.csv"
    pd.DataFrame(
        [
            {"patient_id": "P002", "lesion_id": "L1", "mask_path": "MASKS_W8/liver.dcm", "mask_label": "Liver",
             "pcr": "1", "reference": "pathology", "resected": "1"},
            {"patient_id": "P002", "lesion_id": "L2", "mask_path": "MASKS_W8/liver_seg.nrrd", "mask_label": "1"},
            {"patient_id": "P001", "lesion_id": "L1", "x_mm": "10", "y_mm": "-20", "z_mm": "-250",
             "diameter_mm": "12.5",
             "pcr": "0", "reference": "follow_up", "resected": "0"},
        ]
    ).to_csv(lesions, index=False)
    readings = root / "readings.csv"
    pd.DataFrame(
        [{"reader_id": "R1", "patient_id": "P002", "lesion_id": "L1", "score": "4", "call": "1"},
         {"reader_id": "R1", "patient_id": "P001", "lesion_id": "L1", "score": "2", "call": "0"}]
    ).to_csv(readings, index=False)
    return {"root": root, "input": src, "mapping": mapping, "lesions": lesions, "readings": readings}


def _args(site, out: Path, *extra: str) -> list[str]:
    return [str(site["input"]), "--mapping", str(site["mapping"]), "--out", str(out), "--lesions", str(site["lesions"]),
            "--readings", str(site["readings"]), "--no-progress", *extra]


@pytest.fixture(scope="module")
def cohort(site):
    out = site["root"] / "cohort"
    assert dlm_import(_args(site, out, "--name", "test_cohort")) == 0
    return out


def test_cohort_tables_match_design(cohort):
    meta = yaml.safe_load((cohort / schema.COHORT_YAML).read_text())
    assert list(meta) == [*schema.COHORT_YAML_KEYS, "description"]
    assert meta["name"] == "test_cohort" and meta["timepoints"] == list(schema.TIMEPOINTS)
    assert meta["modalities"] == list(schema.MODALITIES)
    tables = {}
    for name in (schema.PATIENTS_CSV, schema.IMAGES_CSV, schema.LESIONS_CSV, schema.OUTCOMES_CSV, schema.READINGS_CSV):
        tables[name] = pd.read_csv(cohort / name, dtype=str, keep_default_na=False)
        required = schema.REQUIRED_COLUMNS[name]
        assert tuple(tables[name].columns[: len(required)]) == required
    assert tables[schema.PATIENTS_CSV].to_dict("records") == [
        {"patient_id": "P001", "site": "siteA"}, {"patient_id": "P002", "site": "site1"}]
    images = tables[schema.IMAGES_CSV]
    assert list(zip(images.patient_id, images.timepoint, images.modality)) == [
        ("P001", "baseline", "ct"), ("P001", "baseline", "adc"), ("P001", "presurgery", "adc"),
        ("P002", "baseline", "ct"), ("P002", "presurgery", "adc")]
    for rel in images.path:
        assert (cohort / rel).is_file() and rel.endswith(".nii.gz")
    assert set(tables[schema.OUTCOMES_CSV].lesion_id + tables[schema.OUTCOMES_CSV].patient_id) == {"L1P002", "L1P001"}
    assert len(tables[schema.READINGS_CSV]) == 2


def test_images_and_sidecars(cohort, refdata):
    ct = read_image(cohort / "images/P001/baseline_ct.nii.gz")
    assert ct.GetSize() == (512, 512, 25) and ct.GetPixelID() == sitk.sitkInt16
    assert sitk.GetArrayViewFromImage(ct).min() == dicom.CT_OUTSIDE_FOV_HU
    side = json.loads((cohort / "images/P001/baseline_ct.json").read_text())
    assert side["vendor"] == "GE MEDICAL SYSTEMS" and side["model"] == "LightSpeed16"
    assert side["convolution_kernel"] == "STANDARD" and side["slice_thickness_mm"] == 5.0
    assert side["ct_outside_fov_voxels"] > 0 and side["ct_outside_fov_value_hu"] == -1024
    assert side["contrast_phase"] == "contrast_unspecified_phase"

    toshiba = json.loads((cohort / "images/P001/baseline_adc.json").read_text())
    assert toshiba["adc_source"] == "scanner" and toshiba["vendor"] == "TOSHIBA"
    assert toshiba["spacing_mm"][2] == 7.0 and toshiba["slice_thickness_mm"] == 6.0
    assert toshiba["field_strength_t"] == 1.5

    siemens = json.loads((cohort / "images/P001/presurgery_adc.json").read_text())
    assert siemens["adc_source"] == "scanner" and siemens["adc_alternative_available"] is True
    assert siemens["b_values_s_mm2"] == [50.0, 400.0, 800.0]
    assert siemens["b_value_sources"] == {b: ["siemens_private_0019_100c"] for b in ("50", "400", "800")}
    adc = read_image(cohort / "images/P001/presurgery_adc.nii.gz")
    scanner = read_image(need(refdata, PX_ADC))
    assert adc.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(adc.GetOrigin(), scanner.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(adc.GetDirection(), scanner.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(adc), sitk.GetArrayViewFromImage(scanner))

    ge = json.loads((cohort / "images/P002/presurgery_adc.json").read_text())
    assert ge["adc_source"] == "scanner" and ge["model"] == "Signa HDxt"
    assert ge["b_value_sources"] == {"500": ["ge_private_0043_1039"]}


def test_lesions_from_masks(cohort, refdata):
    lesions = pd.read_csv(cohort / schema.LESIONS_CSV).set_index(["patient_id", "lesion_id"])
    l1, l2 = lesions.loc[("P002", "L1")], lesions.loc[("P002", "L2")]
    ref = masks.lesion_geometry(masks.load_mask(need(refdata, DCMQI_NRRD), 1))
    for row in (l1, l2):  # the SEG and the NRRD of the same liver give the same lesion
        np.testing.assert_allclose([row.x_mm, row.y_mm, row.z_mm], ref.centre_mm, atol=1e-3)
        assert row.diameter_mm == pytest.approx(ref.diameter_mm, abs=1e-3)
        mask = read_image(cohort / row.mask_path)
        assert int(sitk.GetArrayViewFromImage(mask).sum()) == 107_098 and row.mask_label == 1
    p1 = lesions.loc[("P001", "L1")]
    assert (p1.x_mm, p1.y_mm, p1.z_mm, p1.diameter_mm) == (10, -20, -250, 12.5)


def test_no_identifiers_in_anything_written(cohort, site):
    identifiers = _identifiers(site["input"])
    assert {"ProstateX-0000", "CRLM-CT-1004", "HX93", "PACS_EXPORT_K7", "MASKS_W8"} <= identifiers
    assert len([v for v in identifiers if v.count(".") > 5]) > 200  # the UIDs are in the list
    assert _scan_for_identifiers(cohort, identifiers) == []


def test_rerun_skips_finished_studies(cohort, site):
    images = sorted((cohort / "images").rglob("*.nii.gz"))
    before = {p: p.stat().st_mtime_ns for p in images}
    assert dlm_import(_args(site, cohort, "--name", "test_cohort")) == 0
    assert {p: p.stat().st_mtime_ns for p in images} == before
    report = json.loads((cohort / "import_report.json").read_text())
    assert {u["status"] for u in report["units"]} == {"skipped (already imported)"}


def test_interrupted_run_is_not_taken_as_complete(cohort, site, tmp_path):
    out = tmp_path / "cohort"
    shutil.copytree(cohort, out)
    # Crash while writing P001/presurgery: only the temporary file exists.
    (out / "images/P001/presurgery_adc.nii.gz").unlink()
    (out / "images/P001/presurgery.done.json").unlink()
    leftover = out / f"images/P001/.presurgery_adc.tmp{os.getpid()}.nii.gz"
    leftover.write_bytes(b"half-written")
    # Crash after the image but before the manifest of P002/baseline.
    (out / "images/P002/baseline.done.json").unlink()
    redo = out / "images/P002/baseline_ct.nii.gz"
    keep = out / "images/P001/baseline_ct.nii.gz"
    mtimes = {p: p.stat().st_mtime_ns for p in (redo, keep)}
    assert dlm_import(_args(site, out)) == 0
    assert not leftover.exists()
    assert read_image(out / "images/P001/presurgery_adc.nii.gz").GetSize() == (84, 128, 19)
    assert redo.stat().st_mtime_ns != mtimes[redo] and keep.stat().st_mtime_ns == mtimes[keep]
    units = json.loads((out / "import_report.json").read_text())["units"]
    status = {(u["patient_id"], u["timepoint"]): u["status"] for u in units}
    assert status[("P001", "presurgery")] == status[("P002", "baseline")] == "imported"
    assert status[("P001", "baseline")] == "skipped (already imported)"


@pytest.mark.slow
def test_console_script_computed_adc(refdata, tmp_path):
    if not CONSOLE.exists():
        pytest.skip(f"console script not installed at {CONSOLE}")
    src = tmp_path / "in"
    _copy_tree(need(refdata, PROSTATEX), src / "EXP_R5" / "STUDY_J2")
    _copy_tree(need(refdata, GE_DWI), src / "EXP_R5" / "BRAIN_V9")
    mapping = tmp_path / "m.csv"
    mapping.write_text(
        "patient_id,timepoint,study_path\nP010,presurgery,EXP_R5/STUDY_J2\nP010,followup,EXP_R5/BRAIN_V9\n"
    )
    out = tmp_path / "out"
    proc = subprocess.run([str(CONSOLE), str(src), "--mapping", str(mapping), "--out", str(out),
                           "--adc-source", "computed"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    side = json.loads((out / "images/P010/presurgery_adc.json").read_text())
    assert side["adc_source"] == side["adc_source_requested"] == "computed" and side["adc_alternative_available"]
    assert side["adc_fit"]["weighting"] == "signal" and side["adc_fit"]["b_values_used_s_mm2"] == [50.0, 400.0, 800.0]
    agreement = side["adc_agreement_with_scanner_map"]
    assert agreement["pearson_r"] > 0.99 and agreement["median_rel_diff"] < 0.05
    ge = json.loads((out / "images/P010/followup_adc.json").read_text())
    assert ge["adc_source"] == "computed" and ge["adc_source_requested"] == "computed"
    assert ge["volumes_per_b_value"] == {"0": 1, "1000": 6}
    assert ge["b_value_sources"] == {"0": ["ge_private_0043_1039"], "1000": ["public_0018_9087"]}
    assert ge["spacing_mm"] == [1.0156, 1.0156, 3.0]
    assert _scan_for_identifiers(out, _identifiers(src)) == []


def test_problems_are_reported_together(site, tmp_path, capsys):
    def run(mapping_text: str, lesions_text: str | None = None) -> tuple[int, str]:
        mapping = tmp_path / "bad.csv"
        mapping.write_text(mapping_text)
        argv = [str(site["input"]), "--mapping", str(mapping), "--out", str(tmp_path / "out"), "--no-progress"]
        if lesions_text is not None:
            (tmp_path / "lesions.csv").write_text(lesions_text)
            argv += ["--lesions", str(tmp_path / "lesions.csv")]
        rc = dlm_import(argv)
        return rc, capsys.readouterr().err

    # Mapping problems are all found before any DICOM is read.
    rc, err = run("patient_id,timepoint,study_uid,study_path\nP001,week6,,LOOSE/CT3WQ\nP 5,baseline,,LOOSE/ZZT4\n"
                  "P6,baseline,,NOT_THERE\n")
    assert rc == 1 and "2 problem(s)" not in err and "3 problem(s)" in err
    assert "line 2: timepoint 'week6'" in err and "line 3: patient_id 'P 5'" in err and "NOT_THERE" in err
    assert not (tmp_path / "out").exists()
    # Problems found while importing are collected over all studies and lesions.
    rc, err = run(
        "patient_id,timepoint,study_uid,study_path\n"
        "P003,baseline,1.2.3.4.5.6.7,\n"  # unknown study
        "CRLM-CT-1004,baseline,,PACS_EXPORT_K7/HX93\n"  # the DICOM PatientID, not a pseudonym
        "P004,baseline,,LOOSE/ZZT4\n",
        "patient_id,lesion_id,mask_path\nP004,L1,MASKS_W8/missing.nii.gz\n",
    )
    assert rc == 1 and "3 problem(s)" in err
    assert "no DICOM file of study_uid 1.2.3.4.5.6.7" in err
    assert "patient_id equals the DICOM PatientID/PatientName" in err
    assert "missing.nii.gz" in err
    out = tmp_path / "out"
    assert not (out / schema.IMAGES_CSV).exists()  # no tables from a failed import
    assert (out / "images/P004/baseline_adc.nii.gz").is_file()  # finished studies are kept


def test_broken_diffusion_series_matters_only_when_adc_is_computed(refdata, tmp_path, capsys):
    src = tmp_path / "in"
    _copy_tree(need(refdata, PX_ADC), src / "ST_F4" / "adc")
    _copy_tree(need(refdata, PX_DWI), src / "ST_F4" / "dwi")
    (src / "ST_F4" / "dwi" / "1-05.dcm").unlink()  # a b=50 slice is missing
    mapping = tmp_path / "m.csv"
    mapping.write_text("patient_id,timepoint,study_path\nP020,baseline,ST_F4\n")
    argv = [str(src), "--mapping", str(mapping), "--no-progress"]
    assert dlm_import([*argv, "--out", str(tmp_path / "a")]) == 0  # the scanner map is used
    assert json.loads((tmp_path / "a/images/P020/baseline_adc.json").read_text())["adc_source"] == "scanner"
    capsys.readouterr()
    assert dlm_import([*argv, "--out", str(tmp_path / "b"), "--adc-source", "computed"]) == 1
    err = capsys.readouterr().err
    assert "dwi series 6" in err and "not uniform" in err and str(src / "ST_F4" / "dwi") in err


@pytest.mark.slow
def test_imported_cohort_is_accepted_by_preprocess(cohort, site, tmp_path):
    """The cohort dlm-import writes passes validation, registration and patch extraction."""
    env = {**os.environ, "DLM_ML_CACHE": str(tmp_path / "cache_home")}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("dlm-preprocess")), f"paths.root_dir={tmp_path}",
         f"data.cohort_dir={cohort}", "data.synthetic.enabled=false", "data.registration.workers=1",
         "registration_qa.enabled=false", "data.preprocess_workers=1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "0 error(s)" in proc.stdout
    lesions = pd.read_csv(cohort / schema.LESIONS_CSV)
    outcomes = pd.read_csv(cohort / schema.OUTCOMES_CSV)
    # every lesion with an outcome got a patch; the one without is counted as excluded
    assert f"{len(outcomes)} lesion patches" in proc.stdout
    assert f"{len(lesions) - len(outcomes)} lesion(s) excluded" in proc.stdout

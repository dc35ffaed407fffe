"""The cohort fingerprint covers the bytes of every file the tables name."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest

from dlm_ml.data.cohort import schema
from dlm_ml.data.cohort.fingerprint import _cohort_files, cohort_file_digests, cohort_fingerprint

IMAGE = "images/P002/presurgery_adc.nii.gz"


def _change_bytes(path):
    """Another content of the same size: a (size, mtime) cache must not hide it."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def _repoint(root, old, new):
    images = pd.read_csv(root / schema.IMAGES_CSV, dtype=str)
    images["path"] = images.path.replace(old, new)
    images.to_csv(root / schema.IMAGES_CSV, index=False)


def test_changing_an_image_changes_the_fingerprint(handmade_cohort, tmp_path):
    before = cohort_fingerprint(handmade_cohort, cache_dir=tmp_path / "digests")
    _change_bytes(handmade_cohort / IMAGE)
    assert cohort_fingerprint(handmade_cohort, cache_dir=tmp_path / "digests") != before


def test_a_plain_cohort_is_fingerprinted_by_its_files_alone(handmade_cohort, tmp_path):
    """Naming files adds nothing where the walk found them: fingerprints recorded earlier still match."""
    digests = cohort_file_digests(handmade_cohort, cache_dir=tmp_path)
    assert sorted(digests) == sorted(str(p.relative_to(handmade_cohort)) for p in _cohort_files(handmade_cohort))


@pytest.mark.parametrize("where", ["symlinked_folder", "hidden_folder", "truth_folder", "outside"])
def test_every_named_image_is_covered_wherever_it_lies(handmade_cohort, tmp_path, where):
    """Images behind a folder symlink, in a hidden folder or truth/, or (refused by validation,
    still hashed) outside the cohort: their bytes are part of the fingerprint."""
    source = handmade_cohort / IMAGE
    if where == "symlinked_folder":  # a DICOM store linked into the cohort: os.walk does not descend into it
        store = tmp_path / "store" / "P002"
        shutil.move(handmade_cohort / "images/P002", store)
        (handmade_cohort / "images/P002").symlink_to(store, target_is_directory=True)
        image = store / "presurgery_adc.nii.gz"
    else:
        folder = {"hidden_folder": handmade_cohort / ".scans", "truth_folder": handmade_cohort / schema.TRUTH_DIR,
                  "outside": tmp_path / "elsewhere"}[where]
        folder.mkdir()
        image = shutil.move(source, folder / "presurgery_adc.nii.gz")
        _repoint(handmade_cohort, IMAGE, str(image) if where == "outside" else str(image.relative_to(handmade_cohort)))
    key = {"symlinked_folder": IMAGE, "hidden_folder": ".scans/presurgery_adc.nii.gz",
           "truth_folder": "truth/presurgery_adc.nii.gz", "outside": str(image)}[where]
    assert key in cohort_file_digests(handmade_cohort, cache_dir=tmp_path / "digests")
    before = cohort_fingerprint(handmade_cohort, cache_dir=tmp_path / "digests")
    _change_bytes(image)
    assert cohort_fingerprint(handmade_cohort, cache_dir=tmp_path / "digests") != before


def test_a_named_dicom_folder_is_covered_file_by_file(handmade_cohort, tmp_path):
    """A series folder named by images.csv, reached through a symlink: each slice file is hashed."""
    store = tmp_path / "pacs" / "series1"
    store.mkdir(parents=True)
    for i in range(3):
        (store / f"{i:04d}.dcm").write_bytes(bytes([i]) * 64)
    (handmade_cohort / "dicom").symlink_to(store.parent, target_is_directory=True)
    _repoint(handmade_cohort, IMAGE, "dicom/series1")
    digests = cohort_file_digests(handmade_cohort, cache_dir=tmp_path / "digests")
    assert {f"dicom/series1/{i:04d}.dcm" for i in range(3)} <= set(digests)
    before = cohort_fingerprint(handmade_cohort, cache_dir=tmp_path / "digests")
    _change_bytes(store / "0001.dcm")
    assert cohort_fingerprint(handmade_cohort, cache_dir=tmp_path / "digests") != before


def test_a_symlink_cycle_under_a_named_folder_ends(handmade_cohort, tmp_path):
    series = handmade_cohort / "dicom" / "series1"
    series.mkdir(parents=True)
    (series / "0000.dcm").write_bytes(b"x" * 16)
    (series / "loop").symlink_to(series, target_is_directory=True)
    _repoint(handmade_cohort, IMAGE, "dicom/series1")
    assert "dicom/series1/0000.dcm" in cohort_file_digests(handmade_cohort, cache_dir=tmp_path)

"""b-values per vendor and the order of trust between their tags."""

from __future__ import annotations

import copy
from collections import Counter

import pydicom
import pytest
from pydicom.dataset import Dataset

from dlm_ml.data.imaging import dicom

from ...refdata import GE_ADC_ZIP, GE_DWI, PX_DWI, TOSHIBA_ADC, need


def _datasets(folder):
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.iterdir()) if p.is_file()]


def test_siemens_private_ob_bytes(refdata):
    datasets = _datasets(need(refdata, PX_DWI))
    # The trap this covers: anonymisation left (0019,100C) as VR OB, i.e. bytes.
    assert datasets[0][0x0019, 0x100C].VR == "OB" and isinstance(datasets[0][0x0019, 0x100C].value, bytes)
    assert (0x0018, 0x9087) not in datasets[0]
    values = [dicom.bvalue_from_dataset(ds) for ds in datasets]
    assert Counter(b for b, _ in values) == {50.0: 19, 400.0: 19, 800.0: 19}
    assert {s for _, s in values} == {"siemens_private_0019_100c"}


def test_siemens_sequence_name_fallback(refdata):
    datasets = _datasets(need(refdata, PX_DWI))
    values = []
    for ds in datasets:
        del ds[0x0019, 0x100C]
        values.append(dicom.bvalue_from_dataset(ds))
    assert Counter(b for b, _ in values) == {50.0: 19, 400.0: 19, 800.0: 19}
    assert {s for _, s in values} == {"siemens_sequence_name_0018_0024"}


@pytest.mark.parametrize(
    "name, expected",
    [("*ep_b400t", 400.0), ("*ep_b1000#2", 1000.0), ("*re_b800t", 800.0), ("*ep_b50_800", None), ("*tse2d1_25", None)],
)
def test_sequence_name_patterns(name, expected):
    ds = Dataset()
    ds.SequenceName = name
    assert dicom.bvalue_from_dataset(ds)[0] == expected


def test_ge_private_and_public(refdata):
    headers = dicom.scan_dicom(need(refdata, GE_DWI)).headers
    by_instance = sorted(headers, key=lambda h: h.instance_number)
    assert [h.b_value for h in by_instance] == [0.0] * 2 + [1000.0] * 12
    # b0 files carry only GE's (0043,1039); the b1000 files also the public tag, which wins.
    assert {h.b_value_source for h in by_instance[:2]} == {"ge_private_0043_1039"}
    assert {h.b_value_source for h in by_instance[2:]} == {"public_0018_9087"}


def test_ge_private_when_public_absent_and_1e9_convention(refdata):
    ds = _datasets(need(refdata, GE_DWI))[5]
    del ds[0x0018, 0x9087]
    assert dicom.bvalue_from_dataset(ds) == (1000.0, "ge_private_0043_1039")
    ds[0x0043, 0x1039].value = [1000001000, 8, 0, 0]
    assert dicom.bvalue_from_dataset(ds) == (1000.0, "ge_private_0043_1039")
    # GE uses the same slot for other integers on non-diffusion sequences.
    non_epi = copy.deepcopy(ds)
    non_epi.ScanningSequence = "SE"
    non_epi.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    assert dicom.bvalue_from_dataset(non_epi) == (None, None)


def test_ge_private_stored_as_unknown_bytes(refdata, tmp_path):
    headers = dicom.scan_dicom(need(refdata, GE_ADC_ZIP), zip_workdir=None).headers
    assert headers == []  # a zip is only opened when a work folder is given
    headers = dicom.scan_dicom(refdata / GE_ADC_ZIP, zip_workdir=tmp_path).headers
    assert len(headers) == 20
    assert {(h.b_value, h.b_value_source) for h in headers} == {(500.0, "ge_private_0043_1039")}
    assert dicom.classify_series(headers) == "adc"  # named by SeriesDescription only


def test_toshiba_public_tag(refdata):
    headers = dicom.scan_dicom(need(refdata, TOSHIBA_ADC)).headers
    assert {(h.b_value, h.b_value_source) for h in headers} == {(500.0, "public_0018_9087")}
    assert dicom.classify_series(headers) == "adc"


def test_public_tag_is_trusted_first(refdata):
    ds = _datasets(need(refdata, PX_DWI))[25]  # a b=400 file
    assert dicom.bvalue_from_dataset(ds) == (400.0, "siemens_private_0019_100c")
    ds.DiffusionBValue = 800.0
    assert dicom.bvalue_from_dataset(ds) == (800.0, "public_0018_9087")


def test_philips_private():
    ds = Dataset()
    ds.Manufacturer = "Philips Medical Systems"
    ds.add_new((0x2001, 0x0010), "LO", "Philips Imaging DD 001")
    ds.add_new((0x2001, 0x1003), "FL", 600.0)
    assert dicom.bvalue_from_dataset(ds) == (600.0, "philips_private_2001_1003")

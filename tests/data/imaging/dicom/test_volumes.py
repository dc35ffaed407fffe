"""Splitting a series into volumes."""

from __future__ import annotations

from dlm_ml.data.imaging import dicom

from ...refdata import GE_DWI, need


def test_ge_volumes_split_by_gradient_direction(refdata):
    volumes = dicom.split_series(dicom.scan_dicom(need(refdata, GE_DWI)).headers)
    assert [v.b_value for v in volumes] == [0.0] + [1000.0] * 6
    assert {v.split_by for v in volumes[1:]} == {"b_value+gradient_direction"}
    assert len({v.first.gradient for v in volumes[1:]}) == 6
    # Files alternate slice 1 / slice 2: volume v = instances 2v+1, 2v+2 (README §7).
    assert [sorted(h.instance_number for h in v.headers) for v in volumes] == [
        [2 * i + 1, 2 * i + 2] for i in range(7)]

"""Series classification from DICOM tags only."""

from __future__ import annotations

from dlm_ml.data.imaging import dicom

from ...refdata import PX_ADC, PX_CALC, PX_DWI, PX_T2, need


def test_classification_of_the_siemens_study(refdata):
    kinds = {rel: dicom.classify_series(dicom.scan_dicom(need(refdata, rel)).headers)
             for rel in (PX_DWI, PX_ADC, PX_CALC, PX_T2)}
    assert kinds == {PX_DWI: "dwi", PX_ADC: "adc", PX_CALC: "dwi_computed", PX_T2: "other"}
    calc = dicom.scan_dicom(refdata / PX_CALC).headers
    assert {h.b_value for h in calc} == {1000.0}  # the calculated b=1000 must not enter a fit

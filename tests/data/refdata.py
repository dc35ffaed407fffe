"""Where the real-scanner reference files of the imaging and importing tests are.

They live outside the repository, in ``shared/refdata/imaging`` beside it
(``../shared/refdata/imaging`` beside the checkout); they are
never copied into the repository. Tests skip, saying why, when they are absent
(the ``refdata`` fixture of ``tests/data/conftest.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

REFDATA = Path(__file__).resolve().parents[2].parent / "shared/refdata/imaging"
PROSTATEX = "prostatex_siemens_dwi_adc/ProstateX-0000/07-07-2011"
PX_DWI = f"{PROSTATEX}/6.000000-ep2ddifftraDYNDIST-69284"
PX_ADC = f"{PROSTATEX}/7.000000-ep2ddifftraDYNDISTADC-48780"
PX_CALC = f"{PROSTATEX}/8.000000-ep2ddifftraDYNDISTCALCBVAL-83202"
PX_T2 = f"{PROSTATEX}/4.000000-t2tsetra-00702"
CRLM_CT = "crlm_liver_ct_ge/CRLM-CT-1004/image"
TOSHIBA_ADC = "cmbcrc_toshiba_abdomen_adc/SCAN_001/adc_image"
STS = "sts_ct_lesion_mask/STS_002/CT"
DCMQI_CT = "dcmqi_liver_ct_seg/ct-3slice"
DCMQI_SEG = "dcmqi_liver_ct_seg/liver.dcm"
DCMQI_NRRD = "dcmqi_liver_ct_seg/liver_seg.nrrd"
GE_ADC_ZIP = "dcmqi_ge_prostate_adc/pm-example-dcm.zip"
GE_ADC_NRRD = "dcmqi_ge_prostate_adc/pm-example.nrrd"
GE_DWI = "ge_dwi_oblique_dcm2niix/In/01_Ax_DWI_TENSOR_R2"
GE_DWI_NII = "ge_dwi_oblique_dcm2niix/Ref/Ax_DWI_TENSOR_R2_1.nii"


def need(root: Path, rel: str) -> Path:
    """``root / rel``, skipping the test when that reference file or folder is missing."""
    path = root / rel
    if not path.exists():
        pytest.skip(f"reference file missing: {path}")
    return path

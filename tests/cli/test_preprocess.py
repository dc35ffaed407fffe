"""dlm-preprocess through its console script (validation, registration, patch cache, QA export)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from dlm_ml.data.synthetic import generate_cohort, make_config

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_preprocess_exports_patches_and_reuses_cache(tmp_path):
    cohort = generate_cohort(tmp_path / "cohort", make_config("tiny", seed=5, n_patients=4), progress=False)
    env = {**os.environ, "DLM_ML_CACHE": str(tmp_path / "cache_home")}
    command = [str(Path(sys.executable).with_name("dlm-preprocess")), f"paths.root_dir={tmp_path}",
               f"data.cohort_dir={cohort}", "data.synthetic.enabled=false", "export=true",
               f"export_dir={tmp_path}/export", "data.patches.patch_size_mm=24", "data.patches.spacing_mm=2.0"]
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-5000:]
    assert "patch cache miss" in first.stdout

    lesions = pd.read_csv(cohort / "lesions.csv", dtype={"patient_id": str, "lesion_id": str})
    images = pd.read_csv(cohort / "images.csv", dtype=str)
    for lesion in lesions.itertuples():
        folder = tmp_path / "export" / lesion.patient_id / lesion.lesion_id
        for t in ("baseline", "presurgery"):
            for m in ("ct", "adc"):
                path = folder / f"{t}_{m}.nii.gz"
                has_image = ((images.patient_id == lesion.patient_id) & (images.timepoint == t)
                             & (images.modality == m)).any()
                assert path.is_file() == has_image, path
                if has_image:
                    patch = sitk.ReadImage(str(path))
                    assert patch.GetSize() == (12, 12, 12) and patch.GetSpacing() == (2.0, 2.0, 2.0)
                    centre = patch.TransformContinuousIndexToPhysicalPoint((5.5, 5.5, 5.5))
                    assert np.allclose(centre, (lesion.x_mm, lesion.y_mm, lesion.z_mm), atol=1e-4)
        montage = tmp_path / "export" / f"{lesion.patient_id}_{lesion.lesion_id}.png"
        assert montage.read_bytes()[:8] == PNG
    # the baseline CT patch shows the source in HU (not normalised): a hypoattenuating lesion in liver
    first_lesion = lesions.iloc[0]
    ct = sitk.GetArrayFromImage(sitk.ReadImage(
        str(tmp_path / "export" / first_lesion.patient_id / first_lesion.lesion_id / "baseline_ct.nii.gz")))
    assert -200 < float(np.median(ct)) < 300

    run_dirs = list((tmp_path / "outputs/logs/preprocess/runs").iterdir())
    assert any((d / "registration.csv").is_file() for d in run_dirs)
    qa = [p for d in run_dirs for p in (d / "registration_qa").rglob("*.png")]
    assert qa and all(p.read_bytes()[:8] == PNG for p in qa)

    without_export = [c for c in command if not c.startswith(("export=", "export_dir="))]
    second = subprocess.run(without_export + ["registration_qa.enabled=false"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "patch cache hit" in second.stdout

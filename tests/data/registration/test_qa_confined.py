"""Registration QA pictures stay in their folder whatever the ids hold (a second line behind
validation, which refuses such ids)."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from dlm_ml.data.cohort import load_cohort
from dlm_ml.data.registration.qa import write_registration_qa
from dlm_ml.utils.paths import UnsafePathError


class _NoRegisteredImages:
    """A registration set with no registered image: only the lesion montages are drawn."""

    table = pd.DataFrame(columns=["patient_id", "timepoint", "modality", "transform_path", "flagged", "reasons"])


@pytest.mark.parametrize(("patient_id", "lesion_id", "named"), [
    ("../escaped", "L1", "patient ../escaped"), ("P001", "x/../../../../escaped", "lesion x/../../../../escaped")])
def test_an_id_that_would_leave_the_qa_folder_is_refused_and_nothing_written_outside(
        handmade_cohort, tmp_path, patient_id, lesion_id, named):
    cohort = load_cohort(handmade_cohort)
    for table in (cohort.patients, cohort.images, cohort.lesions):
        table.loc[table.patient_id == "P001", "patient_id"] = patient_id
    cohort.lesions.loc[cohort.lesions.patient_id == patient_id, "lesion_id"] = lesion_id
    qa_dir = tmp_path / "run" / "registration_qa"
    with pytest.raises(UnsafePathError, match=re.escape(named)):
        write_registration_qa(cohort, _NoRegisteredImages(), qa_dir, patients=[patient_id], progress=False)
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(qa_dir)
               and not p.is_relative_to(handmade_cohort)]
    assert outside == []

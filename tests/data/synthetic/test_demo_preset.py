"""The demo's synthetic cohort is the default one on a coarser CT grid: its tables are the same."""

from __future__ import annotations

import pandas as pd

from dlm_ml.data.synthetic import make_config
from dlm_ml.data.synthetic.tables import PUBLIC_TABLES, simulate_cohort


def test_demo_preset_keeps_the_default_cohorts_tables():
    """The demo cohort differs from the default one by its CT grids only: the same patients, lesions,
    outcomes and reader calls for a seed, so the readers of the demo's headline are the default
    cohort's."""
    default = simulate_cohort(make_config("default", n_patients=20, seed=42))
    demo = simulate_cohort(make_config("demo", n_patients=20, seed=42))
    for key in [*PUBLIC_TABLES, "truth_lesions"]:
        pd.testing.assert_frame_equal(demo.tables[key], default.tables[key], obj=key)
    assert make_config("demo").geometry.adc == make_config("default").geometry.adc
    assert make_config("demo").geometry.ct.inplane_spacing_mm > make_config("default").geometry.ct.inplane_spacing_mm

"""The cohort the training configuration names: a synthetic cohort is generated only into the folder
its settings name, reused only when it records those settings, and the preset named null is chosen by
an unquoted null. Each test composes the real dlm-train configuration (the ``tiny`` preset, two or
three patients) and calls ``prepare_cohort`` as the commands do."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dlm_ml.data import prepare
from dlm_ml.data.cohort import CohortValidationError, schema
from dlm_ml.data.prepare import prepare_cohort
from dlm_ml.data.synthetic import generate_cohort, make_config
from dlm_ml.data.synthetic import writer as synth_writer
from tests.conf.test_compose import compose_command

TINY = ["data.synthetic.preset=tiny", "data.synthetic.n_patients=2"]


def _data_cfg(root: Path, *overrides: str):
    return compose_command("train", [f"paths.root_dir={root}", *TINY, *overrides]).data


def _recorded(cohort_dir: Path) -> dict:
    return yaml.safe_load((cohort_dir / schema.COHORT_YAML).read_text())["synthetic"]


def test_a_mistyped_cohort_dir_is_refused_never_generated_into(tmp_path):
    typo = tmp_path / "outputs/data/synthetc_tiny"
    for enabled in ("true", "false"):
        data = _data_cfg(tmp_path, f"data.cohort_dir={typo}", f"data.synthetic.enabled={enabled}")
        with pytest.raises(CohortValidationError, match=r"synthetc_tiny.*does not exist.*dlm-synth"):
            prepare_cohort(data)
        assert not typo.exists() and not typo.parent.exists()


def test_the_default_cohort_dir_names_the_settings_and_is_generated_once(tmp_path, monkeypatch):
    data = _data_cfg(tmp_path, "seed=5")
    cohort_dir = Path(data.cohort_dir)
    assert cohort_dir == tmp_path / "outputs/data/synthetic_tiny_n2_seed5"
    cohort, _ = prepare_cohort(data)
    assert cohort.root.resolve() == cohort_dir.resolve()
    assert _recorded(cohort_dir) == {"preset": "tiny", "seed": 5, "n_patients": 2}

    def no_generation(*args, **kwargs):
        raise AssertionError("an existing cohort of the settings asked is generated again")

    monkeypatch.setattr(prepare, "generate_cohort", no_generation)
    prepare_cohort(data)  # the same settings: reused as it is


def test_a_seed_sweep_trains_each_seed_on_the_cohort_of_that_seed(tmp_path):
    # `dlm-train -m seed=1,2` sets data.synthetic.seed per job; each job's cohort is the one its
    # config (and so its logged parameters) names, never the first job's or an earlier default's
    folders = []
    for seed in (1, 2):
        data = _data_cfg(tmp_path, f"seed={seed}")
        assert data.synthetic.seed == seed
        cohort, _ = prepare_cohort(data)
        assert _recorded(cohort.root)["seed"] == seed
        folders.append(cohort.root)
    assert folders[0] != folders[1]
    assert {p.name for p in (tmp_path / "outputs/data").iterdir()} == {"synthetic_tiny_n2_seed1",
                                                                       "synthetic_tiny_n2_seed2"}


def test_an_existing_cohort_of_other_settings_is_refused_naming_the_differences(tmp_path):
    data = _data_cfg(tmp_path, "seed=5")
    cohort_dir = Path(data.cohort_dir)
    # a cohort of another seed and another preset setting (a preset file edited since) in the folder
    generate_cohort(cohort_dir, make_config("tiny", n_patients=2, seed=0, **{"effects.adc_change": 0.3}),
                    progress=False)
    before = sorted(p.relative_to(cohort_dir) for p in cohort_dir.rglob("*"))
    with pytest.raises(ValueError, match=r"differs in: effects\.adc_change: recorded 0\.3, asked 0\.22; "
                                         r"seed: recorded 0, asked 5\. Remove the folder"):
        prepare_cohort(data)
    assert sorted(p.relative_to(cohort_dir) for p in cohort_dir.rglob("*")) == before  # left as it was

    # a folder of that name that no generator wrote
    other = _data_cfg(tmp_path, "seed=6")
    Path(other.cohort_dir).mkdir(parents=True)
    (Path(other.cohort_dir) / schema.COHORT_YAML).write_text("name: mine\n")
    with pytest.raises(ValueError, match="no generation settings recorded"):
        prepare_cohort(other)


class _Generated(Exception):
    """Stops prepare_cohort once it has asked for a cohort (the null preset's images are full size)."""


def test_preset_null_unquoted_on_the_command_line_is_the_null_preset(tmp_path, monkeypatch):
    data = _data_cfg(tmp_path, "data.synthetic.preset=null")
    assert data.synthetic.preset is None  # what YAML makes of it
    assert Path(data.cohort_dir).name == "synthetic_null_n2_seed42"
    asked = []

    def generate(out, config, **kwargs):
        asked.append((Path(out), config))
        raise _Generated

    monkeypatch.setattr(prepare, "generate_cohort", generate)
    with pytest.raises(_Generated):
        prepare_cohort(data)
    assert asked == [(Path(data.cohort_dir), make_config("null", n_patients=2, seed=42))]
    assert asked[0][1].preset == "null" and asked[0][1].effects.pcr_coupling == 0.0  # its settings, not its name


def test_a_cohort_another_job_wrote_meanwhile_is_checked_and_used(tmp_path, monkeypatch):
    """Two jobs of a sweep share one cohort: the one finishing second keeps the first's folder."""
    data = _data_cfg(tmp_path)
    cohort_dir = Path(data.cohort_dir)
    render = synth_writer.render_patient
    seen = {}

    def other_job_finishes_first(spec, root, adc_max):
        if not cohort_dir.exists():
            monkeypatch.setattr(synth_writer, "render_patient", render)
            generate_cohort(cohort_dir, make_config("tiny", n_patients=2, seed=42), progress=False)
            seen["inode"] = cohort_dir.stat().st_ino
        return render(spec, root, adc_max)

    monkeypatch.setattr(synth_writer, "render_patient", other_job_finishes_first)
    cohort, _ = prepare_cohort(data)
    assert cohort.root.resolve() == cohort_dir.resolve()
    assert cohort_dir.stat().st_ino == seen["inode"]  # never swapped under a job reading it
    assert [p.name for p in cohort_dir.parent.iterdir()] == [cohort_dir.name]  # no temporary folder left

"""Tests of the synthetic cohort generator (dlm_ml.data.synthetic).

Image checks read the written files back with SimpleITK and measure at the
lesion positions through TransformPhysicalPointToIndex, so they test what the
rest of the framework will see, not the generator's internal arrays. Every
image has its own grid and, by default, its own true pose (misaligned cohort):
measurements in a later image use the true lesion positions of truth/ and the
true transforms rebuilt from truth/images.csv.
Calibration checks use ``simulate_tables`` (the same tables without images) on
cohorts large enough for the literature targets of docs/design.md §8 to be measurable.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from omegaconf import OmegaConf

from dlm_ml.cli.synth import main
from dlm_ml.data.cohort import schema
from dlm_ml.data.synthetic import (
    SynthConfig,
    cohort_folder_name,
    config_differences,
    config_from_dict,
    generate_cohort,
    make_config,
    preset_descriptions,
    preset_names,
    settable_keys,
    simulate_tables,
    summarize,
)
from dlm_ml.data.synthetic import config as synth_config
from dlm_ml.data.synthetic import writer as synth_writer
from dlm_ml.data.synthetic.geometry import load_true_poses, rotation_angle_deg, true_transform
from dlm_ml.data.synthetic.readers import auc

TABLES = [schema.PATIENTS_CSV, schema.IMAGES_CSV, schema.LESIONS_CSV, schema.OUTCOMES_CSV, schema.READINGS_CSV]
# (lesions.csv diameter_presurgery_mm is the site's noisy measurement, checked against the truth below)
LATENT_COLUMNS = {"latent_response", "response_degree", "pcr_latent_other", "visible_presurgery",
                  "adc_presurgery", "ct_contrast_presurgery_hu", "patient_effect"}


def _read(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / name, dtype={"patient_id": str, "lesion_id": str, "reader_id": str})


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _true_positions(root: Path) -> dict:
    """(patient_id, lesion_id, timepoint, modality) → lesion centre in that image's physical space."""
    t = _read(root, "truth/lesion_positions.csv")
    return {(r.patient_id, r.lesion_id, r.timepoint, r.modality): (r.x_mm, r.y_mm, r.z_mm) for r in t.itertuples()}


def _sphere_values(img: sitk.Image, arr: np.ndarray, centre, radius_mm: float) -> np.ndarray:
    """Voxel values within ``radius_mm`` of a physical point (at least the centre voxel)."""
    i, j, k = img.TransformPhysicalPointToIndex(tuple(float(c) for c in centre))
    sp = np.asarray(img.GetSpacing())
    r = np.ceil(radius_mm / sp).astype(int)
    kk, jj, ii = np.meshgrid(np.arange(-r[2], r[2] + 1), np.arange(-r[1], r[1] + 1), np.arange(-r[0], r[0] + 1),
                             indexing="ij")
    inside = (ii * sp[0]) ** 2 + (jj * sp[1]) ** 2 + (kk * sp[2]) ** 2 <= radius_mm ** 2
    inside[r[2], r[1], r[0]] = True
    z, y, x = kk[inside] + k, jj[inside] + j, ii[inside] + i
    ok = (z >= 0) & (z < arr.shape[0]) & (y >= 0) & (y < arr.shape[1]) & (x >= 0) & (x < arr.shape[2])
    return arr[z[ok], y[ok], x[ok]].astype(float)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Three tiny cohorts: seed 0 twice (determinism) and seed 1."""
    base = tmp_path_factory.mktemp("synth")
    cfg = make_config("tiny", seed=0)
    a = generate_cohort(base / "a", cfg, progress=False)
    b = generate_cohort(base / "b", make_config("tiny", seed=0), progress=False)
    c = generate_cohort(base / "c", make_config("tiny", seed=1), progress=False)
    return cfg, a, b, c


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A 24-patient tiny cohort (every ADC present) for intensity measurements."""
    cfg = make_config("tiny", n_patients=24, seed=3, **{"missing.adc": 0.0})
    return cfg, generate_cohort(tmp_path_factory.mktemp("synth_m") / "m", cfg, progress=False)


@pytest.fixture(scope="module")
def large_tables():
    """Tables only, default and null presets with the same seed, ~3000 lesions each."""
    return (simulate_tables(make_config("default", n_patients=1200, seed=11)),
            simulate_tables(make_config("null", n_patients=1200, seed=11)))


# --- configuration --------------------------------------------------------------------------

def test_make_config_overrides_coerce_and_reject_unknown_keys():
    cfg = make_config("tiny", **{"n_patients": 12, "effects.adc_change": "0.3", "geometry.ct.spacing_mm": [1, 1, 2],
                                 "readers__n_readers": 2})
    assert cfg.n_patients == 12 and cfg.effects.adc_change == 0.3 and cfg.readers.n_readers == 2
    assert cfg.geometry.ct.spacing_mm == (1.0, 1.0, 2.0) and cfg.preset == "tiny"
    # command-line style overrides go through the same OmegaConf merge
    assert make_config("tiny", ["effects.adc_change=0.3", "geometry.ct.spacing_mm=[1,1,2]"]) == make_config(
        "tiny", **{"effects.adc_change": 0.3, "geometry.ct.spacing_mm": (1.0, 1.0, 2.0)})
    # a typo must fail loudly and list the valid keys, not be silently ignored
    with pytest.raises(KeyError, match="effects.adc_change") as err:
        make_config("default", **{"effects.adc_chnage": 0.2})
    assert "effects.adc_chnage" in str(err.value)
    with pytest.raises(KeyError, match="effects.adc_chnage"):
        make_config("default", ["effects.adc_chnage=0.2"])
    with pytest.raises(KeyError, match="presets"):
        make_config("nope")
    with pytest.raises(ValueError, match="n_patients"):
        make_config("default", n_patients="many")
    with pytest.raises(ValueError, match="n_patients"):
        make_config("default", ["n_patients=many"])
    with pytest.raises(ValueError, match=r"geometry.ct.spacing_mm.*3 values"):
        make_config("default", **{"geometry.ct.spacing_mm": [1.0, 2.0]})
    with pytest.raises(ValueError, match="pcr_coupling"):
        make_config("default", **{"effects.pcr_coupling": 1.5})
    assert "effects.pcr_coupling" in [key for key, _, _ in settable_keys()]
    assert {"default", "null", "easy", "tiny"} <= set(preset_names())
    # the null preset changes nothing but the coupling of pCR to the latent response
    assert make_config("null").effects.pcr_coupling == 0.0 and make_config("default").effects.pcr_coupling > 0.5


def test_preset_files_hold_only_what_they_change():
    """One source of truth per default: a preset file sets a key only to a value that differs from
    the dataclass default, and every preset describes itself in one line."""
    defaults = {key: value for key, _, value in settable_keys()}
    for name in preset_names():
        settings, about = synth_config._preset_file(name)
        assert about and "\n" not in about, name
        flat = {f"{prefix}": v for prefix, v in _flatten(OmegaConf.to_container(settings))}
        assert flat or name == "default", name
        for key, value in flat.items():
            assert key in defaults, (name, key)
            assert tuple(value) != tuple(defaults[key]) if isinstance(value, list) else value != defaults[key], \
                f"preset {name} repeats the default of {key}"
    assert make_config("default") == SynthConfig()


def _flatten(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


def test_a_bad_preset_file_is_refused_naming_preset_and_key(tmp_path, monkeypatch):
    (tmp_path / "broken.yaml").write_text("about: x\neffects:\n  adc_chnage: 0.3\n")
    (tmp_path / "typed.yaml").write_text("about: x\nreaders:\n  n_readers: several\n")
    monkeypatch.setattr(synth_config, "PRESET_DIR", tmp_path)
    with pytest.raises(KeyError, match=r"effects.adc_chnage.*preset broken"):
        make_config("broken")
    with pytest.raises(ValueError, match=r"readers.n_readers.*preset typed"):
        make_config("typed")


def test_no_preset_is_the_preset_named_null():
    # YAML and the Hydra command line read an unquoted null as None: a cohort always has a
    # preset, so None can only mean the one named null
    assert make_config(None) == make_config("null")
    assert make_config(None).preset == "null" and make_config(None).effects.pcr_coupling == 0.0
    with pytest.raises(KeyError, match="unknown preset 'nul'"):
        make_config("nul")


def test_the_preset_is_chosen_never_relabelled_by_an_override():
    # a cohort records the preset whose settings made it: --set preset=easy over the default is refused
    with pytest.raises(ValueError, match="the preset is chosen, not overridden"):
        make_config("default", ["preset=easy"])
    with pytest.raises(ValueError, match="the preset is chosen, not overridden"):
        make_config("tiny", ["preset=default"])


# --- layout -----------------------------------------------------------------------------------

def test_layout_matches_schema(tiny):
    cfg, root, _, _ = tiny
    meta = yaml.safe_load((root / schema.COHORT_YAML).read_text())
    assert all(k in meta for k in schema.COHORT_YAML_KEYS)
    assert meta["timepoints"] == list(schema.TIMEPOINTS) and meta["modalities"] == list(schema.MODALITIES)
    assert "tiny" in meta["description"] and "seed 0" in meta["description"]
    t = {name: _read(root, name) for name in TABLES}
    for name, table in t.items():
        required = list(schema.REQUIRED_COLUMNS[name])
        assert list(table.columns[: len(required)]) == required, name
        assert not table[required].isna().any().any(), name
        # nothing outside truth/ reveals the latent variables
        assert not LATENT_COLUMNS & set(table.columns), name
    patients, images, lesions, outcomes, readings = (t[n] for n in TABLES)
    assert len(patients) == cfg.n_patients and patients["patient_id"].is_unique
    assert patients["patient_id"].str.fullmatch(r"P\d{4}").all()
    assert lesions.groupby("patient_id").size().between(1, 5).all()
    assert lesions["lesion_id"].str.fullmatch(r"L[1-5]").all()
    assert lesions[["patient_id", "lesion_id"]].equals(outcomes[["patient_id", "lesion_id"]])
    assert set(outcomes["pcr"]) <= {0, 1} and set(outcomes["resected"]) <= {0, 1}
    assert (outcomes["reference"] == np.where(outcomes["resected"] == 1, "pathology", "follow_up")).all()
    assert len(readings) == cfg.readers.n_readers * len(lesions)
    # the site's presurgery measurement: 0 exactly where the lesion was no longer seen, else the true
    # diameter with measurement noise; enrolment dates in patient order
    truth = _read(root, "truth/lesions.csv")
    seen = truth.visible_presurgery == 1
    assert (lesions.diameter_presurgery_mm[~seen] == 0).all() and (lesions.diameter_presurgery_mm[seen] > 0).all()
    error = lesions.diameter_presurgery_mm[seen] - truth.diameter_presurgery_mm[seen]
    assert error.abs().max() < 6 * cfg.lesions.measurement_sd_mm and error.abs().max() > 0
    assert pd.to_datetime(patients.enrolment_date).is_monotonic_increasing
    assert readings["score"].between(1, 5).all()
    assert (readings["call"] == (readings["score"] >= cfg.readers.call_min_score)).all()
    # images: every listed file exists; missing images have no row and no file
    truth_images = _read(root, "truth/images.csv")
    assert len(truth_images) == cfg.n_patients * 6
    present = truth_images[truth_images["present"] == 1]
    assert images["path"].tolist() == present["path"].tolist()
    assert all((root / p).is_file() for p in images["path"])
    assert not any((root / p).exists() for p in truth_images.loc[truth_images["present"] == 0, "path"])
    assert (truth_images["present"] == 0).sum() >= 1  # tiny sets 10 % missing ADC: exercised
    assert not ((truth_images["timepoint"] == "baseline") & (truth_images["modality"] == "ct")
                & (truth_images["present"] == 0)).any()
    assert set(images["path"]) == {str(p.relative_to(root)) for p in (root / "images").rglob("*.nii.gz")}
    assert not list(root.parent.glob(".*partial*"))  # the temporary build folder is gone
    # the recorded config rebuilds the same config
    assert config_from_dict(json.loads((root / "truth/config.json").read_text())) == cfg


def test_simulate_tables_equals_written_tables(tiny):
    cfg, root, _, _ = tiny
    sim = simulate_tables(cfg)
    for key, name in (("patients", schema.PATIENTS_CSV), ("lesions", schema.LESIONS_CSV),
                      ("outcomes", schema.OUTCOMES_CSV), ("readings", schema.READINGS_CSV),
                      ("images", schema.IMAGES_CSV), ("truth_lesions", "truth/lesions.csv")):
        assert sim[key].to_csv(index=False, lineterminator="\n") == (root / name).read_text(), name


# --- determinism --------------------------------------------------------------------------------

def test_same_seed_identical_different_seed_different(tiny):
    _, a, b, c = tiny
    for name in TABLES + ["truth/lesions.csv", "truth/patients.csv", "truth/images.csv"]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / schema.OUTCOMES_CSV).read_bytes() != (c / schema.OUTCOMES_CSV).read_bytes()
    assert (a / schema.LESIONS_CSV).read_bytes() != (c / schema.LESIONS_CSV).read_bytes()
    paths = _read(a, schema.IMAGES_CSV)["path"]
    for p in paths:
        assert np.array_equal(_array(a / p), _array(b / p)), p
    common = set(paths) & set(_read(c, schema.IMAGES_CSV)["path"])
    assert all(not np.array_equal(_array(a / p), _array(c / p)) for p in sorted(common)[:6])


def _digests(root: Path) -> dict[str, str]:
    """SHA-256 of every file of a cohort but truth/config.json (it records ``n_workers``)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.relative_to(root) != Path("truth/config.json")}


def test_process_pool_gives_identical_output(tmp_path):
    # per-patient seeds from SeedSequence.spawn: the number of workers must not matter, to the byte
    one = generate_cohort(tmp_path / "one", make_config("tiny", n_patients=4, n_workers=1), progress=False)
    two = generate_cohort(tmp_path / "two", make_config("tiny", n_patients=4, n_workers=2), progress=False)
    digests = _digests(one)
    assert sum(name.endswith(".nii.gz") for name in digests) > 4 * 4  # images and masks are compared
    assert digests == _digests(two)
    assert config_differences(two, make_config("tiny", n_patients=4, n_workers=1)) == []


def test_uncompressed_images_hold_the_same_voxels(tmp_path):
    # compress_images=false (every preset but tiny): CT and ADC as .nii, listed so in the tables;
    # masks stay .nii.gz; voxels and geometry are those of the compressed cohort
    packed = generate_cohort(tmp_path / "gz", make_config("tiny", n_patients=2), progress=False)
    plain = generate_cohort(tmp_path / "nii", make_config("tiny", n_patients=2, compress_images=False),
                            progress=False)
    packed_paths, plain_paths = _read(packed, schema.IMAGES_CSV)["path"], _read(plain, schema.IMAGES_CSV)["path"]
    assert packed_paths.str.endswith(".nii.gz").all() and plain_paths.str.endswith(".nii").all()
    assert set(plain_paths) == {str(p.relative_to(plain)) for p in (plain / "images").rglob("*") if p.is_file()}
    assert (plain_paths + ".gz").tolist() == packed_paths.tolist()
    assert _read(plain, "truth/images.csv")["path"].str.endswith(".nii").all()
    assert _read(plain, schema.LESIONS_CSV)["mask_path"].str.endswith(".nii.gz").all()
    for a, b in zip(packed_paths, plain_paths):
        one, two = sitk.ReadImage(str(packed / a)), sitk.ReadImage(str(plain / b))
        assert np.array_equal(sitk.GetArrayFromImage(one), sitk.GetArrayFromImage(two)), b
        assert (one.GetSpacing(), one.GetOrigin(), one.GetDirection()) == \
            (two.GetSpacing(), two.GetOrigin(), two.GetDirection()), b
    assert config_differences(plain, make_config("tiny", n_patients=2)) == \
        ["compress_images: recorded false, asked true"]


def test_larger_cohort_extends_smaller_one():
    small = simulate_tables(make_config("tiny", n_patients=3, seed=4))
    large = simulate_tables(make_config("tiny", n_patients=6, seed=4))
    first = large["outcomes"][large["outcomes"]["patient_id"].isin(small["patients"]["patient_id"])]
    assert first.reset_index(drop=True).equals(small["outcomes"])


# --- geometry -----------------------------------------------------------------------------------

def test_aligned_switch_keeps_first_version_geometry(tmp_path):
    # geometry.misalignment / vary_grids false: configured spacing, LPS axes, identity poses
    cfg = make_config("tiny", n_patients=3, seed=2, **{"geometry.ct.spacing_mm": (1.25, 1.5, 2.5),
                                                       "geometry.adc.spacing_mm": (2.5, 2.75, 5.0),
                                                       "missing.adc": 0.0, "geometry.misalignment": False,
                                                       "geometry.vary_grids": False})
    root = generate_cohort(tmp_path / "g", cfg, progress=False)
    images = _read(root, schema.IMAGES_CSV)
    lesions = _read(root, schema.LESIONS_CSV)
    truth = _true_positions(root)
    origins = {}
    for row in images.itertuples():
        img = sitk.ReadImage(str(root / row.path))
        want = getattr(cfg.geometry, row.modality).spacing_mm
        assert np.allclose(img.GetSpacing(), want), row.path
        assert img.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1), row.path
        assert img.GetPixelID() == (sitk.sitkInt16 if row.modality == "ct" else sitk.sitkUInt16)
        origins.setdefault(row.patient_id, []).append(img.GetOrigin())
        # every lesion lies inside every image of its patient, at its baseline position
        for les in lesions[lesions["patient_id"] == row.patient_id].itertuples():
            assert np.allclose(truth[(les.patient_id, les.lesion_id, row.timepoint, row.modality)],
                               (les.x_mm, les.y_mm, les.z_mm), atol=0.01)
            idx = img.TransformPhysicalPointToIndex((les.x_mm, les.y_mm, les.z_mm))
            assert all(0 <= i < n for i, n in zip(idx, img.GetSize())), (row.path, les.lesion_id)
    # grids do not coincide: six distinct origins per patient
    assert all(len(set(o)) == 6 for o in origins.values())
    for les in lesions.itertuples():
        point = (les.x_mm, les.y_mm, les.z_mm)
        liver = sitk.ReadImage(str(root / f"truth/masks/{les.patient_id}_liver.nii.gz"))
        mask = sitk.ReadImage(str(root / les.mask_path))
        assert liver[liver.TransformPhysicalPointToIndex(point)] == 1, les
        assert mask[mask.TransformPhysicalPointToIndex(point)] == les.mask_label, les


def test_misaligned_geometry_and_truth(tmp_path):
    """Second version (default): per-image grids with flipped axes, rigid motion between and
    within visits, breathing deformation; truth/ holds the poses and the lesion positions."""
    cfg = make_config("tiny", n_patients=4, seed=6, **{"missing.adc": 0.0, "geometry.ct.flip_probability": 0.5,
                                                       "geometry.adc.flip_probability": 0.5})
    root = generate_cohort(tmp_path / "m", cfg, progress=False)
    images = _read(root, schema.IMAGES_CSV)
    lesions = _read(root, schema.LESIONS_CSV)
    truth = _true_positions(root)
    poses = load_true_poses(root)
    mo = cfg.geometry.motion
    flips, moved = 0, []
    for row in images.itertuples():
        img = sitk.ReadImage(str(root / row.path))
        g = getattr(cfg.geometry, row.modality)
        sp = img.GetSpacing()
        assert g.inplane_spacing_mm[0] - 1e-3 <= sp[0] == sp[1] <= g.inplane_spacing_mm[1] + 1e-3, row.path
        assert g.slice_spacing_mm[0] - 0.01 <= sp[2] <= g.slice_spacing_mm[1] + 0.01, row.path
        flips += sum(v < 0 for v in np.diag(np.reshape(img.GetDirection(), (3, 3))))
        pose = poses[(row.patient_id, row.timepoint, row.modality)]
        if (row.timepoint, row.modality) == (schema.REFERENCE_TIMEPOINT, schema.REFERENCE_MODALITY):
            assert pose.is_identity  # the baseline CT defines lesions.csv's space
        else:
            assert not pose.is_identity
            assert pose.max_displacement_mm <= np.sqrt(1 + 0.4 ** 2 + 0.2 ** 2) * mo.breathing_mm
            if row.modality == "ct":
                assert rotation_angle_deg(pose.rotation) <= mo.rotation_deg + 1e-6
            else:  # the visit's rotation and the ADC's own
                assert rotation_angle_deg(pose.rotation) <= mo.rotation_deg + mo.adc_rotation_deg + 1e-6
        for les in lesions[lesions["patient_id"] == row.patient_id].itertuples():
            p = truth[(les.patient_id, les.lesion_id, row.timepoint, row.modality)]
            # the recorded position is the pose's inverse of the baseline position, inside the image
            assert np.allclose(pose.apply(np.asarray(p)), (les.x_mm, les.y_mm, les.z_mm), atol=0.01)
            idx = img.TransformPhysicalPointToIndex(tuple(p))
            assert all(0 <= i < n for i, n in zip(idx, img.GetSize())), (row.path, les.lesion_id)
            moved.append(np.linalg.norm(np.subtract(p, (les.x_mm, les.y_mm, les.z_mm))))
    assert flips > 0  # some images are stored with flipped axes
    assert np.median(moved) > 3.0  # images are really misaligned
    # the true transform explains the image content: the baseline CT resampled into a later CT
    # through it matches that CT far better than the untransformed one
    for pid in sorted(images.patient_id.unique())[:2]:
        base = sitk.ReadImage(str(root / f"images/{pid}/baseline_ct.nii.gz"), sitk.sitkFloat32)
        later = sitk.ReadImage(str(root / f"images/{pid}/presurgery_ct.nii.gz"), sitk.sitkFloat32)
        pose = poses[(pid, "presurgery", "ct")]
        arr = sitk.GetArrayFromImage(later)
        corr = {}
        for name, tx in (("true", true_transform(pose, later, to_image=False)), ("none", sitk.Transform())):
            moved_base = sitk.GetArrayFromImage(sitk.Resample(base, later, tx, sitk.sitkLinear, -2000.0))
            ok = (moved_base > -1500) & (arr > -500)
            corr[name] = np.corrcoef(arr[ok], moved_base[ok])[0, 1]
        assert corr["true"] > 0.9 and corr["true"] > corr["none"] + 0.1, (pid, corr)
    # switching misalignment off changes only the poses: the tables but positions are the same
    aligned = simulate_tables(make_config("tiny", n_patients=4, seed=6, **{
        "missing.adc": 0.0, "geometry.ct.flip_probability": 0.5, "geometry.adc.flip_probability": 0.5,
        "geometry.misalignment": False}))
    assert aligned["outcomes"].equals(_read(root, schema.OUTCOMES_CSV))
    assert aligned["readings"].to_csv(index=False) == _read(root, schema.READINGS_CSV).to_csv(index=False)


# --- intensities -------------------------------------------------------------------------------

def test_intensities_in_literature_ranges(measured):
    cfg, root = measured
    lesions = _read(root, schema.LESIONS_CSV)
    truth = _read(root, "truth/lesions.csv")
    positions = _true_positions(root)
    poses = load_true_poses(root)
    liver_hu = {"baseline": [], "presurgery": []}
    lesion_contrast, dlm_contrast, visible_contrast, adc_liver, adc_lesion, noise = [], [], [], [], [], []
    air, floor = [], []
    for pid, les in lesions.groupby("patient_id"):
        liver_mask = sitk.ReadImage(str(root / f"truth/masks/{pid}_liver.nii.gz"))
        lesion_mask = sitk.ReadImage(str(root / les["mask_path"].iloc[0]))
        labels = sitk.GetArrayFromImage(lesion_mask)
        # liver away from lesions: liver mask minus dilated lesion labels
        away = sitk.And(liver_mask, sitk.Not(sitk.BinaryDilate(lesion_mask > 0, [3, 3, 2])))
        away = sitk.BinaryErode(away, [2, 2, 1])
        for tp in ("baseline", "presurgery"):
            ct = sitk.ReadImage(str(root / f"images/{pid}/{tp}_ct.nii.gz"))
            arr = sitk.GetArrayFromImage(ct).astype(float)
            # the baseline-space mask brought onto this CT through its true pose
            to_ct = true_transform(poses[(pid, tp, "ct")], ct, to_image=False)
            on_grid = sitk.GetArrayFromImage(sitk.Resample(away, ct, to_ct, sitk.sitkNearestNeighbor)) > 0
            liver = arr[on_grid]
            liver_hu[tp].append(np.median(liver))
            if tp == "baseline":
                # robust SD: vessels run through the liver
                noise.append(1.4826 * np.median(np.abs(liver - np.median(liver))))
                air.append(np.mean(arr == cfg.intensity.ct_air_hu))  # air outside the body, noise-free
            for les_row in les.itertuples():
                t = truth[(truth.patient_id == pid) & (truth.lesion_id == les_row.lesion_id)].iloc[0]
                d = les_row.diameter_mm if tp == "baseline" else t.diameter_presurgery_mm
                hidden = tp == "presurgery" and t.visible_presurgery == 0  # near-zero contrast: wider ROI
                if tp == "baseline":  # the public label map lies on the baseline CT grid: every lesion voxel
                    vals = arr[labels == les_row.mask_label]
                else:
                    vals = _sphere_values(ct, arr, positions[(pid, les_row.lesion_id, tp, "ct")],
                                          3.0 if hidden else max(0.3 * d, 1.0))
                c = np.median(liver) - vals.mean()
                if tp == "baseline":
                    lesion_contrast.append(c)
                elif t.visible_presurgery == 0:
                    dlm_contrast.append(c)
                elif d >= 8:
                    visible_contrast.append(c)
        adc = sitk.ReadImage(str(root / f"images/{pid}/baseline_adc.nii.gz"))
        arr = sitk.GetArrayFromImage(adc).astype(float)
        floor.append(arr[arr < 150])  # outside the body: a low noise floor, not zeros
        to_adc = true_transform(poses[(pid, "baseline", "adc")], adc, to_image=False)
        on_grid = sitk.GetArrayFromImage(sitk.Resample(sitk.BinaryErode(away, [3, 3, 2]), adc, to_adc,
                                                       sitk.sitkNearestNeighbor)) > 0
        adc_liver.append(np.median(arr[on_grid]))
        for les_row in les[les["diameter_mm"] >= 12].itertuples():
            adc_lesion.append(_sphere_values(adc, arr, positions[(pid, les_row.lesion_id, "baseline", "adc")],
                                             2.0).mean())
    base, pre = np.array(liver_hu["baseline"]), np.array(liver_hu["presurgery"])
    # liver 105 ± 17 HU before chemotherapy (clipped at ±2.5 SD), about 12 HU lower after
    assert 90 < base.mean() < 120 and base.min() > 105 - 2.5 * 17 - 5 and base.max() < 105 + 2.5 * 17 + 5
    assert -20 < (pre - base).mean() < -5
    assert 8 < np.mean(noise) < 18  # CT noise 11-15 HU by site
    assert np.mean(air) > 0.001  # some exact air in the fields of view
    floor = np.concatenate(floor)
    assert floor.size > 1000 and 10 < floor.mean() < 80 and floor.std() > 10
    # metastases are hypoattenuating at baseline; disappeared lesions are drawn near liver contrast
    assert 25 < np.mean(lesion_contrast) < 60 and np.min(lesion_contrast) > 5
    assert visible_contrast and np.mean(visible_contrast) > 12
    assert dlm_contrast and abs(np.mean(dlm_contrast)) < 8
    assert 1000 < np.mean(adc_liver) < 1200 and 950 < np.min(adc_liver) and np.max(adc_liver) < 1300
    assert adc_lesion and 1000 < np.mean(adc_lesion) < 1500


# --- calibration on tables ------------------------------------------------------------------------

def test_default_calibration_matches_literature(large_tables):
    t, _ = large_tables
    s = summarize(t)
    assert 0.30 <= s["pcr_prevalence"] <= 0.40  # target 35 % of lesions
    assert 0.12 <= s["patients_with_disappeared"] <= 0.30  # median 19 % (7-48 %)
    assert 7 <= s["disappeared_median_baseline_mm"] <= 13  # DLM median baseline ≈ 10 mm
    assert 0.25 <= s["viable_among_disappeared"] <= 0.55  # CT alone ≈ 50 %
    for r in s["readers"]:  # DREAM CT+MRI: 62.5 % of CR calls pCR (the PPV of a CR call), 37.5 % still viable
        assert 0.25 <= r["viable_among_cr_calls"] <= 0.45, r
        assert 0.6 < r["auc"] < 0.85, r
    assert all(0.4 <= k["kappa"] <= 0.8 for k in s["kappa_calls"])
    tl = t["truth_lesions"]
    change = tl["adc_presurgery"] / tl["adc_baseline"] - 1
    by = tl.assign(change=change).groupby("pcr")[["adc_baseline", "change"]].mean()
    assert -200 < by.loc[1, "adc_baseline"] - by.loc[0, "adc_baseline"] < -50  # pooled −120
    assert 0.12 < by.loc[1, "change"] < 0.28 and by.loc[0, "change"] < 0.08  # + 15-25 % in responders
    assert 1000 < tl["adc_baseline"].mean() < 1500
    d0 = t["lesions"]["diameter_mm"]
    assert 14 <= d0.median() <= 20 and d0.min() >= 5 and d0.max() <= 60
    # neither size nor ADC alone decides pCR
    assert 0.6 < auc(tl["pcr"], change) < 0.95
    assert 0.6 < auc(tl["pcr"], tl["diameter_baseline_mm"] / tl["diameter_presurgery_mm"]) < 0.95
    # disappearing lesions are left in place more often
    assert t["outcomes"].loc[tl["visible_presurgery"] == 0, "resected"].mean() < 0.6
    assert t["outcomes"].loc[tl["visible_presurgery"] == 1, "resected"].mean() > 0.9


def test_null_preset_pcr_independent_of_what_is_seen(large_tables):
    default, null = large_tables
    # same images and readings as default: only pCR differs
    for key in ("patients", "lesions", "images", "readings"):
        assert null[key].equals(default[key]), key
    assert not null["outcomes"]["pcr"].equals(default["outcomes"]["pcr"])
    assert 0.30 <= null["outcomes"]["pcr"].mean() <= 0.40
    s = summarize(null)
    for r in s["readers"]:  # SE of an AUC on ~3000 clustered lesions ≈ 0.012
        assert abs(r["auc"] - 0.5) < 0.04, r
    tl = null["truth_lesions"]
    for feature in (tl["adc_presurgery"] / tl["adc_baseline"], tl["diameter_presurgery_mm"],
                    tl["visible_presurgery"], tl["ct_contrast_presurgery_hu"]):
        assert abs(auc(tl["pcr"], feature) - 0.5) < 0.04
    cea = null["patients"].set_index("patient_id")["cea_presurgery"].reindex(tl["patient_id"]).to_numpy()
    assert abs(auc(tl["pcr"], cea) - 0.5) < 0.05
    assert min(r["auc"] for r in summarize(default)["readers"]) > 0.6  # the same readers see signal on default


def test_easy_preset_is_separable_from_images(tmp_path):
    cfg = make_config("easy", n_patients=10, seed=5)
    tables = simulate_tables(make_config("easy", n_patients=400, seed=5))
    assert min(r["auc"] for r in summarize(tables)["readers"]) > 0.9
    root = generate_cohort(tmp_path / "easy", cfg, progress=False)
    lesions = _read(root, schema.LESIONS_CSV).merge(_read(root, schema.OUTCOMES_CSV))
    positions = _true_positions(root)
    contrast = []
    for les in lesions.itertuples():  # presurgery CT: lesion-centre HU relative to the liver around it
        ct = sitk.ReadImage(str(root / f"images/{les.patient_id}/presurgery_ct.nii.gz"))
        arr = sitk.GetArrayFromImage(ct)
        where = positions[(les.patient_id, les.lesion_id, "presurgery", "ct")]
        centre = _sphere_values(ct, arr, where, 3.0).mean()
        ring = np.median(_sphere_values(ct, arr, where, les.diameter_mm / 2 + 8))
        contrast.append(ring - centre)
    assert lesions["pcr"].nunique() == 2
    assert auc(lesions["pcr"], -np.asarray(contrast)) > 0.85


# --- writing: refusal, atomicity, CLI -------------------------------------------------------------

def test_refuses_non_empty_folder_and_leaves_no_partial_cohort(tmp_path, monkeypatch):
    target = tmp_path / "cohort"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        generate_cohort(target, make_config("tiny", n_patients=2), progress=False)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    generate_cohort(target, make_config("tiny", n_patients=2), progress=False, overwrite=True)
    assert (target / schema.COHORT_YAML).is_file() and not (target / "keep.txt").exists()

    calls = []

    def failing(spec, root, adc_max):  # crash while rendering the second patient
        calls.append(spec.patient_id)
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return 0

    monkeypatch.setattr(synth_writer, "render_patient", failing)
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="interrupted"):
        generate_cohort(fresh, make_config("tiny", n_patients=3, n_workers=1), progress=False)
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort"]  # no temporary folder left behind


def test_a_cohort_written_meanwhile_by_another_process_is_never_replaced(tmp_path, monkeypatch):
    target = tmp_path / "cohort"
    render = synth_writer.render_patient

    def another_process_finishes_first(spec, root, adc_max):
        if not target.exists():
            target.mkdir()
            (target / "theirs.txt").write_text("x")
        return render(spec, root, adc_max)

    monkeypatch.setattr(synth_writer, "render_patient", another_process_finishes_first)
    with pytest.raises(FileExistsError, match="written by another process"):
        generate_cohort(target, make_config("tiny", n_patients=2, n_workers=1), progress=False)
    assert [p.name for p in target.iterdir()] == ["theirs.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort"]  # no temporary folder left behind


def test_config_differences_name_each_setting_and_ignore_workers(tmp_path):
    config = make_config("tiny", n_patients=2, seed=3)
    root = generate_cohort(tmp_path / "c", config, progress=False)
    assert config_differences(root, make_config("tiny", n_patients=2, seed=3, n_workers=2)) == []
    easy = config_differences(root, make_config("easy", n_patients=3, seed=3))
    assert easy == sorted(easy)  # one line per setting, by key
    assert {"anatomy.scale: recorded 0.55, asked 0.8", 'preset: recorded "tiny", asked "easy"',
            "effects.adc_change: recorded 0.22, asked 0.45", "n_patients: recorded 2, asked 3"} <= set(easy)
    assert not [line for line in easy if line.startswith("n_workers")]
    assert "n_patients: recorded 2, asked 3" in config_differences(root, make_config("tiny", n_patients=3, seed=3))
    assert config_differences(tmp_path, config)[0].startswith("no generation settings recorded")


def test_cohort_folder_name_says_preset_size_and_seed():
    assert cohort_folder_name("tiny", None, 7) == "synthetic_tiny_n10_seed7"  # the preset's 10 patients
    assert cohort_folder_name("default", 24, 0) == "synthetic_default_n24_seed0"
    assert cohort_folder_name(None, None, 1) == "synthetic_null_n100_seed1"
    with pytest.raises(ValueError, match="seed must be a whole number"):
        cohort_folder_name("tiny", None, "1")
    with pytest.raises(KeyError, match="unknown preset"):
        cohort_folder_name("tny", None, 1)


def test_cli_writes_cohort_and_reports(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main([str(out), "--preset", "tiny", "--n-patients", "3", "--seed", "7", "--set", "effects.adc_change=0.3",
               "--set", "readers.n_readers=2", "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "pCR prevalence" in text and "PPV" in text and "NPV" not in text and "kappa R1-R2" in text
    saved = json.loads((out / "truth/config.json").read_text())
    assert saved["n_patients"] == 3 and saved["seed"] == 7 and saved["effects"]["adc_change"] == 0.3
    assert set(_read(out, schema.READINGS_CSV)["reader_id"]) == {"R1", "R2"}
    assert main([str(out), "--preset", "tiny", "--quiet"]) == 2  # refuses without --overwrite
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "x"), "--set", "effects.nope=1"])
    assert "Valid keys" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "x"), "--n-patients", "0"])
    assert "n_patients must be >= 1" in capsys.readouterr().err


def test_cli_help_describes_presets_and_lists_keys(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for name, about in preset_descriptions().items():
        assert f"{name} " in text and about in text
    assert "--list-keys" in text
    assert main(["--list-keys", "--preset", "tiny"]) == 0
    lines = {line.split()[0]: line.split(None, 2)[1:] for line in capsys.readouterr().out.splitlines()}
    assert set(lines) == {key for key, _, _ in settable_keys()}
    assert lines["n_patients"] == ["int", "10"] and lines["effects.adc_change"][0] == "float"

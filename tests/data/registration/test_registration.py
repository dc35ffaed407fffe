"""Registration into baseline CT space: recovery of a known transform, failure flags, the
content cache, composition of chains, and patches sampled through the composed transforms.

Images come from the synthetic generator's ``tiny`` preset (small grids, fast), moved by
transforms the tests choose, so the truth is known exactly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from omegaconf import OmegaConf

from dlm_ml.data.cohort import load_cohort, schema
from dlm_ml.data.patches import PatchConfig, build_patches
from dlm_ml.data.registration import (
    FailureThresholds,
    PairResult,
    RegistrationConfig,
    StageConfig,
    prepare,
    read_transform,
    register_cohort,
    register_pair,
    registration_config_from_cfg,
)
from dlm_ml.data.registration.accuracy import RigidMotion, move_image
from dlm_ml.data.registration.pair import jacobian_range, lesion_correlation
from dlm_ml.data.synthetic import generate_cohort, make_config
from dlm_ml.data.synthetic.anatomy import render
from dlm_ml.data.synthetic.geometry import VisitPose, build_grid, rigid_about, true_transform
from dlm_ml.data.synthetic.tables import simulate_cohort

REPO = Path(__file__).resolve().parents[3]
RIGID_AFFINE = RegistrationConfig(bspline=False, workers=1)


def _work(image: sitk.Image, modality: str, config: RegistrationConfig):
    """``image`` prepared as the moving image of a ``modality`` registration would be."""
    return prepare(image, modality, config, spacing_mm=config.working_spacing_for(modality))


TINY = make_config("tiny", n_patients=2, seed=1, **{"missing.adc": 0.0})


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory) -> Path:
    """Two tiny misaligned patients (every ADC present)."""
    return generate_cohort(tmp_path_factory.mktemp("reg") / "tiny", TINY, progress=False)


def _lesion_centres(root: Path, patient_id: str) -> np.ndarray:
    les = pd.read_csv(root / schema.LESIONS_CSV, dtype={"patient_id": str})
    return les[les.patient_id == patient_id][["x_mm", "y_mm", "z_mm"]].to_numpy(float)


def _known_pose(spec) -> VisitPose:
    """Image → anatomy: about 5° of rotation about the liver and a 12 mm shift (rigid)."""
    rotation = sitk.Euler3DTransform()
    rotation.SetRotation(0.06, -0.05, 0.07)
    rot, shift = rigid_about(np.reshape(rotation.GetMatrix(), (3, 3)), np.array([7.0, -5.0, 8.0]),
                             np.asarray(spec.anatomy.right_lobe.center))
    return VisitPose(tuple(rot.ravel()), tuple(shift))


def _render_moved(patient_index: int = 0, marker: int | None = None) -> tuple[sitk.Image, VisitPose]:
    """The patient's baseline CT anatomy rendered again by the generator, as a scanner sees it
    after the patient moved by a known rigid pose, on its own grid (other spacing, flipped x):
    an exact pair with the cohort's baseline CT. ``marker``: lesion index drawn as a bright
    6 mm sphere, a lesion whose position can be found by looking."""
    spec = simulate_cohort(TINY).specs[patient_index]
    pose = _known_pose(spec)
    centre = pose.inverse_apply(np.asarray(spec.anatomy.fov_center))
    grid = build_grid(centre, (180.0, 140.0, 80.0), (1.3, 1.3, 2.5), 0.0, np.random.default_rng(0),
                      direction=(-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    lesions = list(spec.lesion_draws[("baseline", "ct")])
    if marker is not None:
        lesions.append((lesions[marker][0], 6.0, 1200.0))
    vol = render(spec.anatomy, spec.tissues[("baseline", "ct")], lesions, grid, pose, spec.edge_mm,
                 np.random.default_rng(1))
    return grid.to_sitk(np.rint(vol).astype(np.int16)), pose


# --- one pair -----------------------------------------------------------------------------------

def test_known_transform_recovered_within_1mm(cohort_dir):
    fixed = sitk.ReadImage(str(cohort_dir / "images/P0001/baseline_ct.nii.gz"))
    moving, pose = _render_moved()
    truth = true_transform(pose, fixed)  # baseline points → moving points, exact (rigid)
    centres = _lesion_centres(cohort_dir, "P0001")
    result = register_pair(_work(fixed, "ct", RIGID_AFFINE), _work(moving, "ct", RIGID_AFFINE), RIGID_AFFINE)
    # points in and around the lesions: every lesion centre and a 20 mm cube about them
    probe = np.vstack([centres, centres.mean(axis=0) + 20 * np.array(list(np.ndindex(2, 2, 2))) - 10])
    error = [np.linalg.norm(np.subtract(result.transform.TransformPoint(tuple(p)), truth.TransformPoint(tuple(p))))
             for p in probe]
    assert max(error) < 1.0, error
    before = [np.linalg.norm(np.subtract(p, truth.TransformPoint(tuple(p)))) for p in probe]
    assert min(before) > 5.0  # the pair really was misaligned
    assert not result.reasons(RIGID_AFFINE.failure, "ct"), result
    assert result.metric < result.metric_before  # the registration improved the metric
    assert 0.9 < result.jacobian_min <= result.jacobian_max < 1.1


def test_registration_against_blank_or_unrelated_image_is_flagged(cohort_dir):
    fixed = sitk.ReadImage(str(cohort_dir / "images/P0001/baseline_ct.nii.gz"))
    blank = sitk.Image(fixed.GetSize(), sitk.sitkFloat32) + 40.0  # uniform soft tissue: nothing to align
    blank.CopyInformation(fixed)
    noise = sitk.AdditiveGaussianNoise(blank, standardDeviation=200.0, seed=3)
    f = _work(fixed, "ct", RIGID_AFFINE)
    for name, moving in (("blank", blank), ("noise", noise)):
        result = register_pair(f, _work(moving, "ct", RIGID_AFFINE), RIGID_AFFINE, name=f"P0001 {name}")
        reasons = result.reasons(RIGID_AFFINE.failure, "ct")
        assert any("final metric" in r for r in reasons), (name, result.metric, reasons)


def test_jacobian_and_overlap_checks():
    ref = sitk.Image([40, 40, 40], sitk.sitkUInt8) + 1
    ref.SetSpacing((3.0, 3.0, 3.0))
    scale = sitk.ScaleTransform(3, (1.5, 1.5, 1.5))
    lo, hi = jacobian_range(scale, ref)
    assert lo == pytest.approx(1.5 ** 3, rel=1e-3) and hi == pytest.approx(1.5 ** 3, rel=1e-3)
    failure = FailureThresholds()
    plausible = PairResult(sitk.Transform(), -0.9, -0.5, 0.95, 1.05, 0.98)
    assert plausible.reasons(failure, "ct") == []
    assert any("Jacobian" in r for r in PairResult(sitk.Transform(), -0.9, -0.5, 0.95, lo, 0.98).reasons(failure, "ct"))
    folded = PairResult(sitk.Transform(), -0.9, -0.5, -0.2, 1.0, 0.98)
    assert any("Jacobian" in r for r in folded.reasons(failure, "ct"))
    outside = PairResult(sitk.Transform(), -0.9, -0.5, 1.0, 1.0, 0.1)
    assert any("maps inside" in r for r in outside.reasons(failure, "adc"))
    failed = PairResult(sitk.Transform(), -0.9, -0.5, 1.0, 1.0, 1.0, error="x failed")
    assert failed.reasons(failure, "ct") == ["x failed"]


def test_config_from_yaml_and_validation():
    data = OmegaConf.create({"registration": OmegaConf.load(REPO / "dlm_ml/conf/data/registration/default.yaml")})
    config = registration_config_from_cfg(data)
    assert config == RegistrationConfig()  # the YAML spells out the defaults
    assert [s.transform for s in config.stages_for("ct")] == ["rigid", "affine", "bspline"]
    assert [s.transform for s in RegistrationConfig(bspline=False).stages_for("ct")] == ["rigid", "affine"]
    data.registration.enabled = False
    assert registration_config_from_cfg(data) is None
    assert registration_config_from_cfg(OmegaConf.create({"n_folds": 5})) is None
    with pytest.raises(ValueError, match="transform"):
        StageConfig("elastic")
    with pytest.raises(ValueError, match="rigid stage"):
        RegistrationConfig(ct_stages=[{"transform": "affine"}])
    with pytest.raises(ValueError, match="then affine"):
        RegistrationConfig(ct_stages=[{"transform": "rigid"}, {"transform": "bspline"}, {"transform": "affine"}])


# --- a cohort: chains, cache, patches --------------------------------------------------------------

def test_cohort_chains_cache_and_flags(cohort_dir, tmp_path):
    cohort = load_cohort(cohort_dir)
    cache = tmp_path / "cache"
    channels = [("baseline", "ct"), ("baseline", "adc"), ("presurgery", "ct"), ("presurgery", "adc")]
    first = register_cohort(cohort, RIGID_AFFINE, cache, channels=channels, patients=["P0001"], progress=False,
                            log=lambda m: None)
    t = first.table
    assert list(zip(t.timepoint, t.modality)) == [("baseline", "adc"), ("presurgery", "adc"), ("presurgery", "ct")]
    assert not t.cached.any() and not t.flagged.any(), t[["timepoint", "modality", "reasons"]]
    assert first.transform_path("P0001", "baseline", "ct") is None  # the reference space itself
    assert dict(zip(t.modality + "@" + t.timepoint, t.fixed)) == {
        "adc@baseline": "baseline/ct", "adc@presurgery": "presurgery/ct", "ct@presurgery": "baseline/ct"}
    # the presurgery ADC's composed transform is its own registration after the visit CT's
    composed = read_transform(first.transform_path("P0001", "presurgery", "adc"))
    adc_pair = read_transform(t[(t.timepoint == "presurgery") & (t.modality == "adc")].pair_transform_path.iloc[0])
    ct_pair = read_transform(first.transform_path("P0001", "presurgery", "ct"))
    for q in _lesion_centres(cohort_dir, "P0001"):
        assert np.allclose(composed.TransformPoint(tuple(q)), adc_pair.TransformPoint(ct_pair.TransformPoint(tuple(q))),
                           atol=1e-6)
    # the composed transforms bring the true lesion positions together (ADC within 3 mm, CT 2 mm)
    truth = pd.read_csv(cohort_dir / "truth/lesion_positions.csv", dtype={"patient_id": str})
    truth = truth[truth.patient_id == "P0001"]
    base = truth[(truth.timepoint == "baseline") & (truth.modality == "ct")][["x_mm", "y_mm", "z_mm"]].to_numpy()
    for (tp, mod), limit in {("presurgery", "ct"): 2.0, ("presurgery", "adc"): 3.0, ("baseline", "adc"): 3.0}.items():
        tx = read_transform(first.transform_path("P0001", tp, mod))
        want = truth[(truth.timepoint == tp) & (truth.modality == mod)][["x_mm", "y_mm", "z_mm"]].to_numpy()
        got = np.array([tx.TransformPoint(tuple(q)) for q in base])
        assert np.median(np.linalg.norm(got - want, axis=1)) < limit, (tp, mod)
        assert np.median(np.linalg.norm(base - want, axis=1)) > 4.0  # misaligned before registration

    # the same inputs and settings: everything from the cache, identical transforms
    second = register_cohort(cohort, RIGID_AFFINE, cache, channels=channels, patients=["P0001"], progress=False,
                             log=lambda m: None)
    assert second.table.cached.all()
    assert second.content_hashes() == first.content_hashes()
    # thresholds are applied when reading: tighter ones flag without registering again
    strict = RegistrationConfig(bspline=False, workers=1, failure=FailureThresholds(ct_metric_max=-5.0))
    third = register_cohort(cohort, strict, cache, channels=channels, patients=["P0001"], progress=False,
                            log=lambda m: None)
    assert third.table.cached.all()
    flagged = third.table.set_index(["timepoint", "modality"]).flagged
    assert flagged[("presurgery", "ct")] and flagged[("presurgery", "adc")]  # via its visit CT
    assert not flagged[("baseline", "adc")]
    assert "via presurgery/ct" in third.table.set_index(["timepoint", "modality"]).reasons[("presurgery", "adc")]
    assert third.summary()["n_flagged"] == 2 and third.summary()["n_excluded"] == 0
    # deterministic: a fresh cache gives the same transforms (fixed sampling seed; threads may
    # reorder floating-point sums, hence a tolerance rather than identical bytes)
    fresh = register_cohort(cohort, RIGID_AFFINE, tmp_path / "cache2", channels=channels, patients=["P0001"],
                            progress=False, log=lambda m: None)
    assert not fresh.table.cached.any()
    for tp, mod in channels[1:]:
        a = read_transform(first.transform_path("P0001", tp, mod))
        b = read_transform(fresh.transform_path("P0001", tp, mod))
        for q in _lesion_centres(cohort_dir, "P0001"):
            assert np.allclose(a.TransformPoint(tuple(q)), b.TransformPoint(tuple(q)), atol=1e-6), (tp, mod)
    # a setting that changes a result registers again, the pairs it does not touch stay cached:
    # the CT working spacing is the CT -> CT pairs', the ADC one the ADC -> CT pairs'
    def cached_after(**setting) -> dict[str, bool]:
        again = register_cohort(cohort, RegistrationConfig(bspline=False, workers=1, **setting), cache,
                                channels=channels, patients=["P0001"], progress=False, log=lambda m: None)
        return again.table.groupby("modality").cached.any().to_dict()

    assert cached_after(working_spacing_mm=3.0) == {"ct": False, "adc": True}
    assert cached_after(adc_working_spacing_mm=3.0) == {"ct": True, "adc": False}


def _marker_cohort(src: Path, dst: Path) -> tuple[Path, np.ndarray]:
    """A copy of ``src`` (patient P0001, CTs only) whose presurgery CT is the baseline anatomy
    rendered after a known rigid motion, lesion L1 drawn as a bright marker: a lesion at a
    known position in a misaligned image."""
    shutil.copytree(src, dst)
    images = pd.read_csv(dst / schema.IMAGES_CSV, dtype={"patient_id": str})
    keep = (images.patient_id == "P0001") & images.timepoint.isin(["baseline", "presurgery"])
    keep &= images.modality == "ct"
    images[keep].to_csv(dst / schema.IMAGES_CSV, index=False)
    for name in (schema.PATIENTS_CSV, schema.LESIONS_CSV, schema.OUTCOMES_CSV, schema.READINGS_CSV):
        table = pd.read_csv(dst / name, dtype={"patient_id": str})
        table[table.patient_id == "P0001"].to_csv(dst / name, index=False)
    moved, _ = _render_moved(marker=0)
    sitk.WriteImage(moved, str(dst / "images/P0001/presurgery_ct.nii.gz"))
    return dst, _lesion_centres(dst, "P0001")[0]


def test_patches_sampled_through_composed_transform(cohort_dir, tmp_path):
    root, lesion = _marker_cohort(cohort_dir, tmp_path / "marker")
    cohort = load_cohort(root)
    config = PatchConfig(timepoints=("baseline", "presurgery"), modalities=("ct",), patch_size_mm=30, spacing_mm=1.5)
    lesions = cohort.labelled_lesions().sort_values("lesion_id").reset_index(drop=True)
    at_lesion = np.isclose(lesions[["x_mm", "y_mm", "z_mm"]].to_numpy(float), lesion, atol=0.01).all(1)
    row = int(np.flatnonzero(at_lesion)[0])
    mid = config.size_voxels // 2

    def peak_offset(patches) -> np.ndarray:
        """Centroid (voxels, z y x) of the brightest blob of the presurgery CT channel relative to
        the patch centre. The marker (1200 HU) saturates the normalisation window, like bone
        would, so the centroid of the saturated voxels nearest the brightest one is taken."""
        vol = patches.image[row, 1]
        top = np.argwhere(vol >= vol.max() - 1e-6)
        first = top[0]
        blob = top[np.linalg.norm(top - first, axis=1) <= 6]  # the marker spans ~4 voxels
        return blob.mean(axis=0) - (config.size_voxels - 1) / 2

    registered = build_patches(cohort, config, tmp_path / "cache", progress=False, log=lambda m: None,
                               registration=RIGID_AFFINE)
    assert registered.registration is not None and registered.registration.summary()["n_flagged"] == 0
    # the marker (true position truth(lesion) in the moved image) lands at the patch centre
    assert np.all(np.abs(peak_offset(registered)) <= 1.0), peak_offset(registered)
    assert registered.image[row, 1, mid, mid, mid] >= config.normaliser("ct").clip - 1e-3  # the marker itself
    # without registration the same image is sampled where the lesion is not
    unregistered = build_patches(cohort, config, tmp_path / "cache", progress=False, log=lambda m: None)
    assert unregistered.cache_key != registered.cache_key
    assert np.abs(peak_offset(unregistered)).max() > 3.0
    # the patch cache key follows the registration settings
    again = build_patches(cohort, config, tmp_path / "cache", progress=False, log=lambda m: None,
                          registration=RegistrationConfig(bspline=False, workers=1, exclude_flagged=True))
    assert again.cache_key != registered.cache_key and len(again.excluded_images) == 0


def test_flagged_images_excluded_only_when_configured(cohort_dir, tmp_path):
    cohort = load_cohort(cohort_dir)
    config = PatchConfig(patch_size_mm=20, spacing_mm=2.0)
    never = FailureThresholds(ct_metric_max=-5.0)  # no CT registration can pass
    messages: list[str] = []
    kept = build_patches(cohort, config, tmp_path / "cache", progress=False, log=messages.append,
                         registration=RegistrationConfig(bspline=False, workers=1, failure=never))
    pre_ct = kept.channel_names.index("presurgery_ct")
    assert kept.present[:, pre_ct].all() and len(kept.excluded_images) == 0
    assert kept.registration.summary()["n_flagged"] >= 2 and any("flagged: patient" in m for m in messages)
    dropped = build_patches(cohort, config, tmp_path / "cache", progress=False, log=messages.append,
                            registration=RegistrationConfig(bspline=False, workers=1, failure=never,
                                                            exclude_flagged=True))
    assert not dropped.present[:, pre_ct].any() and np.all(dropped.image[:, pre_ct] == 0)
    assert dropped.present[:, kept.channel_names.index("baseline_adc")].all()  # not flagged: kept
    assert set(zip(dropped.excluded_images.timepoint, dropped.excluded_images.modality)) == {
        ("presurgery", "ct"), ("presurgery", "adc")}
    assert dropped.registration.summary()["n_excluded"] == len(dropped.excluded_images)
    assert any("excluded from the patches" in m for m in messages)


# --- residual misalignment at the lesions -----------------------------------------------------------

def test_lesion_region_correlation_flags_a_shift_of_millimetres(cohort_dir):
    """The CT → CT check around the lesions: the same CT scores 1 through the identity, and a
    6 mm shift along x and z (8.5 mm), which the whole-body checks let pass, is flagged."""
    fixed = _work(sitk.ReadImage(str(cohort_dir / "images/P0001/baseline_ct.nii.gz")), "ct", RIGID_AFFINE)
    centres = _lesion_centres(cohort_dir, "P0001")
    aligned = lesion_correlation(fixed, fixed, sitk.TranslationTransform(3, (0.0, 0.0, 0.0)), centres, 50.0)
    shifted = lesion_correlation(fixed, fixed, sitk.TranslationTransform(3, (6.0, 0.0, 6.0)), centres, 50.0)
    assert aligned > 0.99 and shifted < RIGID_AFFINE.failure.ct_lesion_correlation_min, (aligned, shifted)
    failure = RIGID_AFFINE.failure
    good = PairResult(sitk.Transform(), -0.9, -0.5, 1.0, 1.0, 0.98, lesion_correlation=aligned)
    off = PairResult(sitk.Transform(), -0.9, -0.5, 1.0, 1.0, 0.98, lesion_correlation=shifted)
    assert good.reasons(failure, "ct") == []
    assert any("around the lesions" in r for r in off.reasons(failure, "ct"))
    assert off.reasons(failure, "adc") == []  # two modalities: not measured, not judged
    unmeasured = PairResult(sitk.Transform(), -0.9, -0.5, 1.0, 1.0, 0.98)  # NaN: no lesions
    assert unmeasured.reasons(failure, "ct") == []
    # across modalities the correlation is not defined
    adc = _work(sitk.ReadImage(str(cohort_dir / "images/P0001/baseline_adc.nii.gz")), "adc", RIGID_AFFINE)
    assert np.isnan(lesion_correlation(fixed, adc, sitk.Transform(), centres, 50.0))
    with pytest.raises(ValueError, match="ct_lesion_correlation_min"):
        RegistrationConfig(failure={"ct_lesion_correlation_min": 1.5})


# Patient motion between visits of up to 12 mm and 5° about every axis, the scanner's field of
# view staying where it was: the presurgery CT resampled through the motion on its own grid, what
# left the field of view filled with air. Measured with the default preset, seed 3, no motion of
# the generator's own between visits: P0003 was left 4.5-6.2 mm off at its lesion by every motion
# tried, with a whole-body Mattes MI of -0.7 to -0.8 (nothing flagged it before the lesion-region
# check). P0001 and P0002 come within 2.8-3.2 mm, unflagged (lesion-region correlation 0.94-1.0),
# depending on the noise drawn: the check catches gross failures, it is no millimetre gauge, so
# the promise per lesion is the TRE target's p95, 4 mm, or a flag (docs/benchmarks.md).
MOTION_CASE = make_config("default", n_patients=3, seed=3, **{"missing.adc": 0.0,
                                                               "geometry.motion.rotation_deg": 0.0,
                                                               "geometry.motion.translation_mm": 0.0})


@pytest.mark.slow
@pytest.mark.parametrize("patient_id", ["P0001", "P0002", "P0003"])
def test_motion_of_12mm_and_5deg_is_recovered_or_flagged(tmp_path_factory, patient_id):
    root = tmp_path_factory.getbasetemp() / "motion_case"
    if not (root / schema.COHORT_YAML).is_file():
        generate_cohort(root, MOTION_CASE, progress=False, overwrite=True)
    truth = pd.read_csv(root / "truth/lesion_positions.csv", dtype={"patient_id": str})
    truth = truth[truth.patient_id == patient_id]
    base = truth[(truth.timepoint == "baseline") & (truth.modality == "ct")][["x_mm", "y_mm", "z_mm"]].to_numpy()
    pre = truth[(truth.timepoint == "presurgery") & (truth.modality == "ct")][["x_mm", "y_mm", "z_mm"]].to_numpy()
    config = RegistrationConfig(workers=1)
    fixed = _work(sitk.ReadImage(str(root / f"images/{patient_id}/baseline_ct.nii.gz")), "ct", config)
    motion = RigidMotion(rotation_deg=(5.0, 5.0, -5.0), shift_mm=(7.0, -7.0, 7.0))  # 12.1 mm
    moved, anatomy_to_scanner = move_image(sitk.ReadImage(str(root / f"images/{patient_id}/presurgery_ct.nii.gz")),
                                           motion, "ct", margin_mm=0.0)
    result = register_pair(fixed, _work(moved, "ct", config), config, roi_mm=_lesion_centres(root, patient_id))
    want = np.array([anatomy_to_scanner.TransformPoint(tuple(p)) for p in pre])
    got = np.array([result.transform.TransformPoint(tuple(q)) for q in base])
    error = np.linalg.norm(got - want, axis=1)
    assert np.linalg.norm(base - want, axis=1).min() > 5.0  # the motion really moved the lesions
    reasons = result.reasons(config.failure, "ct")
    # the guarantee: within 4 mm at every lesion, or flagged
    assert error.max() < 4.0 or reasons, (error, result.lesion_correlation)
    if error.max() < 2.0:  # a good registration raises no alarm around the lesions
        assert not any("around the lesions" in r for r in reasons), (error, reasons)

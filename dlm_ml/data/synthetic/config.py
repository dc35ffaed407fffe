"""Every parameter of the synthetic cohort generator, presets and dotted overrides.

Units: millimetres, Hounsfield units (HU) for CT, µm²/s (1e-6 mm²/s) for ADC.
Coordinates are LPS (x to the patient's left, y posterior, z superior).

The latent response model (see ``biology.py``): each lesion has a standard-normal
latent response ``L`` (patient random effect + lesion term). Imaging (shrinkage,
visibility, CT contrast, ADC) and clinical covariates are driven by the *response
degree* ``R = Phi((L - q) / response_width)`` in [0, 1], ``q`` the
``(1 - prevalence.pcr)`` quantile. pCR is ``rho * L + sqrt(1 - rho**2) * L' + pcr_noise * eps > tau``
with ``L'`` an independent latent of the same structure, so ``effects.pcr_coupling = 0``
(the ``null`` preset) makes pCR independent of everything images and readers see,
while leaving every image identical for a given seed.

The dataclasses below hold every default. A preset is a YAML file in ``dlm_ml/conf/synthetic/``
holding only what it changes, plus a one-line ``about``; presets and dotted overrides are merged
onto ``OmegaConf.structured(SynthConfig)``, so a misspelt key or a value of the wrong type is
refused by OmegaConf (reworded here to name the key).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

Vec3 = tuple[float, float, float]


@dataclass
class ImageGeometry:
    """Grid of one modality. Every (timepoint, modality) image gets its own grid.

    With ``geometry.vary_grids`` (second version, the default) each image draws its
    in-plane spacing and slice spacing uniformly from the two ranges, scales each axis
    of ``fov_mm`` by a factor uniform in 1 ± ``fov_jitter``, and flips each axis of its
    direction with ``flip_probability`` (stored like RAS / feet-first series). Without
    it, every image has exactly ``spacing_mm`` and ``fov_mm`` and LPS axes (version 1).
    The grid's centre is shifted by ± ``origin_jitter_mm`` per axis in either case."""

    spacing_mm: Vec3 = (1.0, 1.0, 2.5)
    fov_mm: Vec3 = (220.0, 180.0, 150.0)
    origin_jitter_mm: float = 3.0  # uniform ±, per axis, per image
    inplane_spacing_mm: tuple[float, float] = (0.7, 1.0)  # range (vary_grids)
    slice_spacing_mm: tuple[float, float] = (1.0, 5.0)  # range (vary_grids)
    fov_jitter: float = 0.08  # relative, per axis (vary_grids)
    flip_probability: float = 0.25  # per axis (vary_grids)


@dataclass
class MotionConfig:
    """True motion of the patient between and within visits (``geometry.misalignment``).

    Between visits: a rigid motion about the liver (rotation by an angle uniform in
    [0, ``rotation_deg``] about a random axis, a shift uniform in the ball of radius
    ``translation_mm``). Within a visit the ADC map is displaced against the CT (another
    scanner and breath-hold): a further rigid motion bounded by ``adc_rotation_deg`` and
    ``adc_translation_mm``. Every image except the baseline CT also has its own
    breath-hold: a Gaussian bump of displacement centred on the liver, of width
    ``breathing_sigma_mm`` (times ``anatomy.scale``), whose craniocaudal amplitude is
    uniform in ± ``breathing_mm`` (anterior-posterior ± 40 %, left-right ± 20 % of it).
    """

    rotation_deg: float = 8.0
    translation_mm: float = 20.0
    adc_rotation_deg: float = 4.0
    adc_translation_mm: float = 12.0
    breathing_mm: float = 5.0
    breathing_sigma_mm: float = 80.0


@dataclass
class GeometryConfig:
    misalignment: bool = True  # false: every pose is the identity (aligned cohort, version 1)
    vary_grids: bool = True  # false: fixed spacing / field of view, LPS axes (version 1)
    ct: ImageGeometry = field(default_factory=ImageGeometry)
    adc: ImageGeometry = field(default_factory=lambda: ImageGeometry(
        spacing_mm=(2.0, 2.0, 5.0), fov_mm=(240.0, 200.0, 170.0), inplane_spacing_mm=(1.5, 2.5),
        slice_spacing_mm=(4.0, 6.0)))
    motion: MotionConfig = field(default_factory=MotionConfig)


@dataclass
class AnatomyConfig:
    scale: float = 1.0  # global size factor of body and liver (small presets shrink it)
    scale_sd: float = 0.05  # between-patient variation of liver / body size
    liver_semi_axes_mm: Vec3 = (80.0, 65.0, 65.0)  # right lobe
    left_lobe_semi_axes_mm: Vec3 = (50.0, 32.0, 35.0)
    body_semi_axes_mm: tuple[float, float] = (160.0, 115.0)
    fat_thickness_mm: float = 18.0
    fat_thickness_sd_mm: float = 4.0
    edge_mm: float = 1.0  # organ and lesion edge smoothness (partial volume is added per grid)
    position_jitter_mm: float = 5.0
    # Landmarks that registration can lock on, beside the body outline and the liver:
    body_taper_per_100mm: float = 0.06  # the abdomen widens cranially: the outline changes along z
    vertebra_period_mm: float = 32.0  # vertebral bodies separated by lower-density discs
    disc_thickness_mm: float = 7.0
    kidney_semi_axes_mm: Vec3 = (28.0, 20.0, 52.0)
    n_vessels: int = 3  # portal / hepatic vein branches through the right lobe
    vessel_radius_mm: tuple[float, float] = (2.5, 4.5)  # range


@dataclass
class IntensityConfig:
    ct_air_hu: float = -1000.0
    ct_fat_hu: float = -100.0
    ct_soft_tissue_hu: float = 40.0
    ct_bone_hu: float = 300.0
    ct_cortex_hu: float = 700.0
    ct_aorta_hu: float = 160.0
    liver_hu_mean: float = 105.0  # portal venous, before chemotherapy (Bethke 2011)
    liver_hu_sd: float = 17.0
    liver_hu_chemo_change: float = -12.0  # ≈ 93 HU after chemotherapy
    liver_hu_chemo_change_sd: float = 5.0
    lesion_contrast_hu_mean: float = 45.0  # liver minus metastasis at baseline
    lesion_contrast_hu_sd: float = 10.0
    lesion_contrast_hu_min: float = 20.0
    cavity_hu: float = 15.0  # fluid in a resection cavity at follow-up
    ct_kidney_hu: float = 160.0  # portal venous phase
    ct_disc_hu: float = 80.0
    ct_vessel_hu: float = 175.0  # portal / hepatic veins, portal venous phase
    adc_liver_mean: float = 1100.0
    adc_liver_sd: float = 50.0
    adc_lesion_mean: float = 1330.0  # baseline ADC of a non-responding metastasis
    adc_lesion_sd: float = 110.0
    adc_fat: float = 250.0
    adc_soft_tissue: float = 1400.0
    adc_bone: float = 450.0
    adc_aorta: float = 2200.0
    adc_cavity: float = 2400.0
    adc_kidney: float = 2000.0
    adc_disc: float = 1600.0
    adc_vessel: float = 2000.0
    adc_background: float = 40.0  # SD of the rectified noise floor outside the body, µm²/s
    adc_noise: float = 70.0  # voxel noise, µm²/s (test–retest SD ≈ 70)
    adc_max: float = 4000.0


@dataclass
class LesionConfig:
    count_weights: tuple[float, ...] = (0.3, 0.25, 0.2, 0.15, 0.1)  # P(1..5 lesions)
    diameter_median_mm: float = 16.0  # disappearing lesions then have median ≈ 10–11 mm
    diameter_log_sd: float = 0.5
    diameter_min_mm: float = 5.0
    diameter_max_mm: float = 60.0
    min_gap_mm: float = 3.0
    liver_margin_mm: float = 2.0
    regrowth_log_mean: float = 0.5  # viable lesions left in place, presurgery → follow-up
    regrowth_log_sd: float = 0.2
    # the site's presurgery CT measurement of a lesion still seen (lesions.csv diameter_presurgery_mm)
    measurement_sd_mm: float = 1.0


@dataclass
class EffectsConfig:
    """How strongly the latent response shows, and the noise around it."""

    icc: float = 0.4  # share of latent variance shared by the lesions of a patient
    pcr_coupling: float = 1.0  # rho: 0 = pCR independent of all imaging (null)
    pcr_noise: float = 0.4
    response_width: float = 0.4
    shrink_responder: float = 0.4  # mean log(d0 / d1) of a full responder
    shrink_nonresponder: float = 0.0
    shrink_noise: float = 0.15
    adc_baseline_shift: float = -150.0  # baseline ADC of full responders vs non-responders
    adc_change: float = 0.22  # relative ADC rise of full responders at presurgery
    adc_change_nonresponder: float = 0.02
    adc_change_noise: float = 0.07
    ct_contrast_residual_responder: float = 0.4  # fraction of baseline contrast left
    ct_contrast_residual_nonresponder: float = 0.9
    ct_contrast_noise: float = 0.2


@dataclass
class VisibilityConfig:
    """CT detection probability by presurgery diameter: logistic fitted to Ko 2017
    (8 % at 1–5 mm, 55 % at 6–10 mm, 91 % at 11–15 mm, ≈100 % > 20 mm)."""

    d50_mm: float = 7.6
    slope_per_mm: float = 0.47
    visible_min_contrast_hu: float = 15.0
    invisible_contrast_hu: float = 3.0  # a non-visible lesion: uniform 0..this below liver


@dataclass
class OutcomeConfig:
    pcr_prevalence: float = 0.35  # target among lesions (sets the pCR threshold)
    resect_visible: float = 0.97
    resect_disappeared: float = 0.35  # disappeared lesions are left in place more often


@dataclass
class MissingConfig:
    adc: float = 0.03  # probability an ADC map is missing (any timepoint)
    ct: float = 0.0  # probability a non-baseline CT is missing (baseline CT is never missing)


@dataclass
class ReaderConfig:
    """Reader latent z = w_invisible*(not visible) - w_size*visible*log(d1/10 mm)
    + w_adc*(ADC1/ADC0 - 1 - adc_change_ref)/0.1 + shared noise + own noise + own bias; score =
    1 + number of cutpoints below z; call = score >= call_min_score."""

    n_readers: int = 3
    w_invisible: float = 2.4
    w_size: float = 0.8
    w_adc: float = 0.6
    adc_change_ref: float = 0.1
    shared_noise: float = 0.3  # case difficulty seen by all readers
    noise: float = 0.8
    noise_spread: float = 0.3  # readers' noise from noise*(1-spread) to noise*(1+spread)
    bias_spread: float = 0.3  # readers' bias from -spread to +spread
    cutpoints: tuple[float, ...] = (-0.5, 0.6, 1.5, 2.3)
    call_min_score: int = 4


@dataclass
class ClinicalConfig:
    sites: tuple[str, ...] = ("S1", "S2", "S3")
    site_weights: tuple[float, ...] = (0.5, 0.3, 0.2)
    site_ct_noise_hu: tuple[float, ...] = (11.0, 13.0, 15.0)
    site_adc_scale: tuple[float, ...] = (1.0, 1.04, 0.96)  # scanner bias of ADC
    regimens: tuple[str, ...] = ("FOLFOX", "CAPOX", "FOLFIRI", "FOLFOXIRI", "FOLFOX+bevacizumab",
                                 "FOLFIRI+cetuximab")
    regimen_weights: tuple[float, ...] = (0.3, 0.15, 0.15, 0.1, 0.2, 0.1)
    cea_median: float = 12.0
    cea_log_sd: float = 1.2
    cea_response: float = 1.0  # log drop of CEA for a full-responder patient
    cea_noise: float = 0.5
    # patients.csv enrolment_date: patient i enrols i * days_per_patient (+ up to one interval) after the start,
    # so a larger cohort extends a smaller one and a date cut-off splits early from late patients
    enrolment_start: str = "2017-01-02"
    enrolment_days_per_patient: float = 14.0


@dataclass
class SynthConfig:
    name: str = "synthetic"
    preset: str = "default"
    n_patients: int = 100
    seed: int = 0
    n_workers: int = 0  # 0 = automatic; does not change the output
    # CT and ADC files as .nii.gz instead of .nii: about 1.8x less disk, but gzip of their noise
    # was half of the generator's CPU time (docs/benchmarks.md, Synthetic cohort).
    # Masks are always compressed (mostly zeros: a few kB each, written in milliseconds).
    compress_images: bool = False
    lesions: LesionConfig = field(default_factory=LesionConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    anatomy: AnatomyConfig = field(default_factory=AnatomyConfig)
    intensity: IntensityConfig = field(default_factory=IntensityConfig)
    effects: EffectsConfig = field(default_factory=EffectsConfig)
    visibility: VisibilityConfig = field(default_factory=VisibilityConfig)
    outcomes: OutcomeConfig = field(default_factory=OutcomeConfig)
    missing: MissingConfig = field(default_factory=MissingConfig)
    readers: ReaderConfig = field(default_factory=ReaderConfig)
    clinical: ClinicalConfig = field(default_factory=ClinicalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


#: The preset files: ``<name>.yaml``, shipped with the package configuration.
PRESET_DIR = Path(__file__).resolve().parents[2] / "conf" / "synthetic"
#: The key of a preset file that describes it (one line); not a generator setting.
ABOUT_KEY = "about"


def preset_names() -> list[str]:
    """Every preset, by file name."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_name(preset: str | None) -> str:
    """The name of the preset ``preset`` chooses, checked against the preset files.

    ``None`` is the preset named ``null``: YAML and the Hydra command line read an unquoted
    ``null`` (``data.synthetic.preset=null``) as no value, and a cohort always has a preset, so
    no value can only have meant that one. Raises ``KeyError`` for an unknown name."""
    name = "null" if preset is None else str(preset)
    if name not in preset_names():
        raise KeyError(f"unknown preset {name!r}; presets: {', '.join(preset_names())}")
    return name


def _preset_file(preset: str | None) -> tuple[DictConfig, str]:
    """A preset's settings (without ``about``) and its one-line description."""
    node = OmegaConf.load(PRESET_DIR / f"{preset_name(preset)}.yaml")
    about = str(node.pop(ABOUT_KEY, "") or "")
    return node, about


def preset_descriptions() -> dict[str, str]:
    """Preset name → its one-line description."""
    return {name: _preset_file(name)[1] for name in preset_names()}


def _key_error(err: Exception, where: str) -> Exception:
    """An OmegaConf error reworded to name the dotted key (and, for an unknown key, its siblings)."""
    key = getattr(err, "full_key", None) or "?"
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)):
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        siblings = [k for k, _, _ in settable_keys() if k.rsplit(".", 1)[0] == parent] if parent else \
            [k for k, _, _ in settable_keys() if "." not in k]
        return KeyError(f"unknown synthetic config key {key!r} ({where}). Valid keys"
                        f"{' under ' + parent if parent else ''}: {', '.join(siblings)}. "
                        "`dlm-synth --list-keys` lists every key with its type and default")
    reason = str(err).splitlines()[0]
    return ValueError(f"invalid value for synthetic config key {key!r} ({where}): {reason}")


def _as_declared(obj: Any, prefix: str = "") -> None:
    """Give tuple-typed fields back their tuples (OmegaConf holds them as lists), checking the
    length of fixed-size ones (a point in mm has 3 coordinates, a range 2 ends)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, tp = getattr(obj, f.name), hints[f.name]
        if dataclasses.is_dataclass(value):
            _as_declared(value, f"{prefix}{f.name}.")
        elif typing.get_origin(tp) is tuple and isinstance(value, (list, tuple)):
            args = typing.get_args(tp)
            if not (len(args) == 2 and args[1] is Ellipsis) and len(value) != len(args):
                raise ValueError(f"invalid value for synthetic config key {prefix + f.name!r}: "
                                 f"expected {len(args)} values, got {len(value)}")
            setattr(obj, f.name, tuple(value))


def _merge(base: DictConfig, update: Any, where: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, update)
    except (ConfigKeyError, ConfigAttributeError, ValidationError) as err:
        raise _key_error(err, where) from None


def _to_config(node: DictConfig) -> SynthConfig:
    config = OmegaConf.to_object(node)
    _as_declared(config)
    validate(config)
    return config


def validate(config: SynthConfig) -> None:
    """Reject configurations the generator cannot honour, with a clear message."""
    problems = []
    if config.n_patients < 1:
        problems.append("n_patients must be >= 1")
    if not 1 <= len(config.lesions.count_weights) <= 5 or min(config.lesions.count_weights) < 0 \
            or sum(config.lesions.count_weights) <= 0:
        problems.append("lesions.count_weights: 1 to 5 non-negative weights (P of 1..5 lesions)")
    if not 0.0 <= config.effects.pcr_coupling <= 1.0:
        problems.append("effects.pcr_coupling must lie in [0, 1]")
    if not 0.0 <= config.effects.icc < 1.0:
        problems.append("effects.icc must lie in [0, 1)")
    if not 0.0 < config.outcomes.pcr_prevalence < 1.0:
        problems.append("outcomes.pcr_prevalence must lie in (0, 1)")
    c = config.clinical
    if not (len(c.sites) == len(c.site_weights) == len(c.site_ct_noise_hu) == len(c.site_adc_scale)):
        problems.append("clinical.sites, site_weights, site_ct_noise_hu, site_adc_scale need equal lengths")
    if len(c.regimens) != len(c.regimen_weights):
        problems.append("clinical.regimens and regimen_weights need equal lengths")
    r = config.readers
    if r.n_readers < 1 or list(r.cutpoints) != sorted(r.cutpoints) or not 2 <= r.call_min_score <= len(r.cutpoints) + 1:
        problems.append("readers: n_readers >= 1, increasing cutpoints, 2 <= call_min_score <= len(cutpoints)+1")
    for m in ("ct", "adc"):
        g = getattr(config.geometry, m)
        if min(g.spacing_mm) <= 0 or min(g.fov_mm) <= 0:
            problems.append(f"geometry.{m}: spacing and field of view must be positive")
        for name in ("inplane_spacing_mm", "slice_spacing_mm"):
            lo, hi = getattr(g, name)
            if not 0 < lo <= hi:
                problems.append(f"geometry.{m}.{name}: a range 0 < low <= high")
        if not (0 <= g.fov_jitter < 0.5 and 0 <= g.flip_probability <= 1 and g.origin_jitter_mm >= 0):
            problems.append(f"geometry.{m}: fov_jitter in [0, 0.5), flip_probability in [0, 1], origin_jitter_mm >= 0")
    mo = config.geometry.motion
    if min(mo.rotation_deg, mo.translation_mm, mo.adc_rotation_deg, mo.adc_translation_mm, mo.breathing_mm) < 0 \
            or mo.breathing_sigma_mm <= 0 or mo.rotation_deg > 45 or mo.adc_rotation_deg > 45:
        problems.append("geometry.motion: non-negative bounds, rotations <= 45 degrees, breathing_sigma_mm > 0")
    elif mo.breathing_mm > 0.3 * mo.breathing_sigma_mm:
        problems.append("geometry.motion.breathing_mm must stay below 0.3 * breathing_sigma_mm (invertible)")
    if not (0 <= config.missing.adc < 1 and 0 <= config.missing.ct < 1):
        problems.append("missing.adc and missing.ct must lie in [0, 1)")
    if problems:
        raise ValueError("invalid synthetic config: " + "; ".join(problems))


def make_config(preset: str | None = "default", dotlist: Sequence[str] = (), **overrides: Any) -> SynthConfig:
    """The config of a preset, then command-line style ``dotlist`` overrides (``"effects.adc_change=0.2"``),
    then dotted keyword overrides with Python values, e.g.
    ``make_config("tiny", **{"n_patients": 12, "effects.adc_change": 0.2})`` (``__`` also separates levels).

    Raises ``KeyError`` for an unknown preset or key, ``ValueError`` for a value of the wrong type or
    a configuration the generator cannot honour; both name the key."""
    preset = preset_name(preset)
    settings, _ = _preset_file(preset)
    node = _merge(OmegaConf.structured(SynthConfig), settings, f"preset {preset}")
    node.preset = preset
    node = _merge(node, OmegaConf.from_dotlist(list(dotlist)), "override")
    for key, value in overrides.items():
        key = key.replace("__", ".")
        if isinstance(value, tuple):
            value = list(value)  # OmegaConf holds sequences as lists
        try:
            OmegaConf.update(node, key, value, merge=True)
        except (ConfigKeyError, ConfigAttributeError, ValidationError) as err:
            raise _key_error(err, "override") from None
    if node.preset != preset:  # the recorded preset must be the one whose settings were used
        raise ValueError(f"the preset is chosen, not overridden: preset={node.preset} would label the settings "
                         f"of preset {preset!r} with another name; pass it as the preset instead "
                         f"(dlm-synth --preset {node.preset})")
    return _to_config(node)


def cohort_folder_name(preset: str | None, n_patients: int | None = None, seed: int = 0) -> str:
    """``synthetic_<preset>_n<patients>_seed<seed>``: the folder a synthetic cohort with these
    generation settings is written to by the training configuration (``n_patients`` None: the
    preset's), so that cohorts of different settings never share a folder."""
    name = preset_name(preset)
    if n_patients is None:
        n_patients = _preset_file(name)[0].get("n_patients", SynthConfig.n_patients)
    for key, value in (("n_patients", n_patients), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"synthetic {key} must be a whole number, got {value!r}")
    return f"synthetic_{name}_n{n_patients}_seed{seed}"


def config_from_dict(data: dict[str, Any]) -> SynthConfig:
    """Rebuild a config from ``SynthConfig.to_dict()`` (e.g. ``truth/config.json``)."""
    return _to_config(_merge(OmegaConf.structured(SynthConfig), data, "recorded config"))


def settable_keys(preset: str | None = None) -> list[tuple[str, str, Any]]:
    """``(dotted key, type, value)`` of every generator setting: the defaults, or ``preset``'s values
    (``preset`` itself is chosen, not set)."""
    config = make_config(preset) if preset is not None else SynthConfig()

    def walk(obj: Any, prefix: str):
        hints = typing.get_type_hints(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                yield from walk(value, f"{prefix}{f.name}.")
            else:
                tp = hints[f.name]
                yield prefix + f.name, tp.__name__ if isinstance(tp, type) else str(tp), value

    return [item for item in walk(config, "") if item[0] != "preset"]

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
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

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


@dataclass
class SynthConfig:
    name: str = "synthetic"
    preset: str = "default"
    n_patients: int = 100
    seed: int = 0
    n_workers: int = 0  # 0 = automatic; does not change the output
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


# Presets: dotted overrides applied to the defaults.
_SMALL_GEOMETRY = {
    "anatomy.scale": 0.55,
    "anatomy.position_jitter_mm": 3.0,
    # wide enough in-plane for the body outline, which registration locks on
    "geometry.ct.fov_mm": (180.0, 140.0, 80.0),
    "geometry.ct.spacing_mm": (1.5, 1.5, 3.0),
    "geometry.adc.fov_mm": (180.0, 140.0, 80.0),
    "geometry.adc.spacing_mm": (3.0, 3.0, 6.0),
    "geometry.ct.origin_jitter_mm": 2.0,
    "geometry.adc.origin_jitter_mm": 2.0,
    "geometry.ct.inplane_spacing_mm": (1.3, 1.7),
    "geometry.ct.slice_spacing_mm": (2.0, 4.0),
    "geometry.adc.inplane_spacing_mm": (2.5, 3.5),
    "geometry.adc.slice_spacing_mm": (5.0, 7.0),
    "geometry.motion.translation_mm": 12.0,
    "geometry.motion.adc_translation_mm": 8.0,
    "geometry.motion.breathing_mm": 3.0,
    "lesions.diameter_max_mm": 22.0,
    "lesions.diameter_median_mm": 12.0,
}

PRESETS: dict[str, dict[str, Any]] = {
    # The demo cohort: ~100 patients, ~250 lesions, literature-calibrated.
    "default": {},
    # Imaging carries no information on pCR: identical images and readings, pCR
    # drawn from a latent independent of everything they show.
    "null": {"effects.pcr_coupling": 0.0},
    # Strong effects: pCR lesions vanish or fade with a marked ADC rise, viable
    # lesions stay; a small CNN separates them from few patients.
    "easy": {
        "n_patients": 40,
        "anatomy.scale": 0.8,
        "geometry.ct.fov_mm": (240.0, 184.0, 120.0),
        "geometry.ct.spacing_mm": (1.5, 1.5, 3.0),
        "geometry.adc.fov_mm": (240.0, 184.0, 120.0),
        "geometry.adc.spacing_mm": (2.5, 2.5, 5.0),
        "geometry.ct.inplane_spacing_mm": (1.3, 1.7),
        "geometry.ct.slice_spacing_mm": (2.5, 3.5),
        "geometry.adc.inplane_spacing_mm": (2.2, 2.8),
        "geometry.adc.slice_spacing_mm": (4.5, 5.5),
        "lesions.diameter_min_mm": 10.0,
        "lesions.diameter_median_mm": 18.0,
        "lesions.diameter_max_mm": 35.0,
        "effects.pcr_noise": 0.15,
        "effects.response_width": 0.2,
        "effects.shrink_responder": 1.6,
        "effects.shrink_nonresponder": 0.0,
        "effects.shrink_noise": 0.1,
        "effects.adc_change": 0.45,
        "effects.adc_change_nonresponder": 0.0,
        "effects.adc_change_noise": 0.04,
        "effects.ct_contrast_residual_responder": 0.05,
        "effects.ct_contrast_residual_nonresponder": 1.0,
        "effects.ct_contrast_noise": 0.1,
        "visibility.d50_mm": 5.0,
        "intensity.lesion_contrast_hu_mean": 60.0,
        "intensity.lesion_contrast_hu_min": 35.0,
        "outcomes.pcr_prevalence": 0.4,
        "readers.noise": 0.3,
        "readers.shared_noise": 0.2,
    },
    # Unit tests: 10 small patients, generated in about a second.
    "tiny": {"n_patients": 10, "missing.adc": 0.1, **_SMALL_GEOMETRY},
}


def _leaf_fields(cls: type, prefix: str = "") -> dict[str, Any]:
    """Map every dotted leaf name of a config dataclass to its resolved type."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        name = prefix + f.name
        if dataclasses.is_dataclass(tp):
            out.update(_leaf_fields(tp, name + "."))
        else:
            out[name] = tp
    return out


def valid_keys() -> list[str]:
    """Every dotted key ``make_config`` accepts."""
    return sorted(_leaf_fields(SynthConfig))


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Convert ``value`` (a Python value, or a string from the command line) to ``tp``."""
    if isinstance(value, str) and tp is not str:
        value = yaml.safe_load(value)
    origin = typing.get_origin(tp)
    try:
        if origin is tuple:
            items = list(value) if isinstance(value, (list, tuple)) else None
            if items is None:
                raise TypeError("expected a list")
            args = typing.get_args(tp)
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_coerce(key, args[0], v) for v in items)
            if len(items) != len(args):
                raise TypeError(f"expected {len(args)} values, got {len(items)}")
            return tuple(_coerce(key, a, v) for a, v in zip(args, items))
        if tp is bool:
            if not isinstance(value, bool):
                raise TypeError("expected true/false")
            return value
        if tp is int:
            if isinstance(value, bool) or float(value) != int(value):
                raise TypeError("expected an integer")
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise TypeError("expected a number")
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"invalid value {value!r} for {key}: {err}") from None
    raise ValueError(f"unsupported type {tp} for {key}")


def _set(config: SynthConfig, key: str, value: Any) -> None:
    obj = config
    *parents, leaf = key.split(".")
    for p in parents:
        obj = getattr(obj, p)
    setattr(obj, leaf, value)


def apply_overrides(config: SynthConfig, overrides: dict[str, Any]) -> SynthConfig:
    """Set dotted keys (``"effects.adc_change"``; ``__`` also separates levels) in place."""
    fields = _leaf_fields(SynthConfig)
    unknown = [k for k in overrides if k.replace("__", ".") not in fields]
    if unknown:
        raise KeyError(f"unknown synthetic config key(s): {', '.join(sorted(unknown))}. "
                       f"Valid keys: {', '.join(sorted(fields))}")
    for key, value in overrides.items():
        key = key.replace("__", ".")
        _set(config, key, _coerce(key, fields[key], value))
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


def make_config(preset: str = "default", **overrides: Any) -> SynthConfig:
    """The config of a preset with dotted overrides, e.g.
    ``make_config("tiny", **{"n_patients": 12, "effects.adc_change": 0.2})``."""
    if preset not in PRESETS:
        raise KeyError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    config = SynthConfig()
    apply_overrides(config, PRESETS[preset])
    config.preset = preset
    apply_overrides(config, overrides)
    validate(config)
    return config


def config_from_dict(data: dict[str, Any]) -> SynthConfig:
    """Rebuild a config from ``SynthConfig.to_dict()`` (e.g. ``truth/config.json``)."""
    flat: dict[str, Any] = {}

    def walk(d: dict[str, Any], prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, prefix + k + ".")
            else:
                flat[prefix + k] = v

    walk(data, "")
    config = apply_overrides(SynthConfig(), flat)
    validate(config)
    return config

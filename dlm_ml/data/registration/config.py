"""Registration settings: stages, multi-resolution, sampling, optimiser, failure thresholds.

Everything here is part of the cache key of a registration (and so of the patch cache),
except ``workers`` and ``threads_per_worker``, which change only how fast it runs.
Built by ``hydra.utils.instantiate(cfg.data.registration)``: the config group
``dlm_ml/conf/data/registration/`` names :class:`RegistrationConfig` as its ``_target_``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

TRANSFORMS = ("rigid", "affine", "bspline")
METRICS = ("mattes", "correlation", "mean_squares")
OPTIMIZERS = ("regular_step", "gradient_descent", "lbfgsb")
MASKS = ("body", "lesions", "none")


@dataclass(frozen=True)
class StageConfig:
    """One stage of a registration; each stage starts from the previous one's result.

    Attributes
    ----------
    transform : {"rigid", "affine", "bspline"}
        What is optimised. ``bspline`` is optimised on top of the previous (affine) stage.
    metric : {"mattes", "correlation", "mean_squares"}
        Mattes mutual information works across modalities (ADC → CT) and across contrast
        changes (liver attenuation drops after chemotherapy); the others need the same modality.
    histogram_bins : int
        Bins of Mattes mutual information.
    sampling_fraction : float
        Fraction of the fixed image's voxels sampled at random (fixed seed) per iteration.
    optimizer : {"regular_step", "gradient_descent", "lbfgsb"}
        ``regular_step``: regular-step gradient descent with parameter scales from physical
        shift (steps in mm), robust for rigid and affine; ``lbfgsb`` for B-splines.
    learning_rate : float
        Initial step (mm) of ``regular_step``; learning rate of ``gradient_descent``.
    min_step : float
        Smallest step (mm) of ``regular_step`` before it stops.
    iterations : int
        Most iterations per resolution level.
    shrink_factors : tuple of int
        Multi-resolution pyramid, relative to the registration's working spacing
        (``RegistrationConfig.working_spacing_for``), coarse → fine.
    smoothing_sigmas_mm : tuple of float
        Gaussian smoothing per level, in mm.
    mask : {"body", "lesions", "none"}
        Fixed-image mask: the body (dilated, so the outline counts), spheres of
        ``RegistrationConfig.lesion_roi_mm`` around the patient's lesions (the region that
        matters for patches: the liver around them), or none.
    mesh_spacing_mm : float
        B-spline control point spacing over the mask's bounding box (``bspline`` only).
    max_displacement_mm : float
        Bound on each B-spline coefficient (a displacement in mm) given to L-BFGS-B: without
        it a line search occasionally leapt to a folded, far-off deformation.
    gradient_filter : bool
        ``True``: the metric's image gradients come from filtering both whole images (a
        Gaussian-derivative filter, ITK's default) before each resolution level; ``False``:
        central differences at the sampled points only. With a few percent of the voxels
        sampled the filter costs more than the optimisation it serves: ``False`` halves a
        rigid or affine stage with the same TRE (docs/benchmarks.md, Registration).
    """

    transform: str = "rigid"
    metric: str = "mattes"
    histogram_bins: int = 32
    sampling_fraction: float = 0.05
    optimizer: str = "regular_step"
    learning_rate: float = 2.0
    min_step: float = 0.01
    iterations: int = 200
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas_mm: tuple[float, ...] = (4.0, 2.0, 0.0)
    mask: str = "body"
    mesh_spacing_mm: float = 50.0
    max_displacement_mm: float = 15.0
    gradient_filter: bool = False

    def __post_init__(self):
        object.__setattr__(self, "shrink_factors", tuple(int(v) for v in self.shrink_factors))
        object.__setattr__(self, "smoothing_sigmas_mm", tuple(float(v) for v in self.smoothing_sigmas_mm))
        problems = []
        for name, allowed in (("transform", TRANSFORMS), ("metric", METRICS), ("optimizer", OPTIMIZERS),
                              ("mask", MASKS)):
            if getattr(self, name) not in allowed:
                problems.append(f"{name} {getattr(self, name)!r} not one of {allowed}")
        if len(self.shrink_factors) != len(self.smoothing_sigmas_mm) or not self.shrink_factors:
            problems.append("shrink_factors and smoothing_sigmas_mm need the same, non-zero length")
        if min(self.shrink_factors, default=1) < 1:
            problems.append("shrink_factors must be >= 1")
        if not 0 < self.sampling_fraction <= 1:
            problems.append("sampling_fraction must lie in (0, 1]")
        if self.iterations < 1 or self.learning_rate <= 0 or self.mesh_spacing_mm <= 0 or self.max_displacement_mm <= 0:
            problems.append("iterations >= 1, learning_rate > 0, mesh_spacing_mm > 0, max_displacement_mm > 0")
        if problems:
            raise ValueError(f"invalid registration stage ({self.transform}): " + "; ".join(problems))


@dataclass(frozen=True)
class FailureThresholds:
    """When a registration is implausible, hence flagged.

    Attributes
    ----------
    ct_metric_max, adc_metric_max : float
        Mattes mutual information (negative; lower = better) of the final transform, measured
        over the fixed body, must be below this for CT → CT and ADC → CT. An unrelated or
        blank image gives about 0.
    jacobian_min, jacobian_max : float
        Determinant of the Jacobian of a registration's transform inside the fixed body, where
        the moving image covers it: volume change. One patient's abdomen does not halve or
        double in volume anywhere between visits, and a folding deformation has a determinant
        <= 0. (A good B-spline result on the default cohort stays within about [0.74, 1.27].)
    min_overlap : float
        Fraction of the fixed body that must map inside the moving image's field of view.
    ct_lesion_correlation_min : float
        CT → CT only: Pearson correlation of the two CTs over spheres of
        ``RegistrationConfig.lesion_roi_mm`` around the patient's lesions after registration
        (``pair.lesion_correlation``) must reach this. A registration that leaves the lesions
        several millimetres off can keep a good whole-body metric; this region cannot. (Default
        preset, 10 patients: the 20 CT registrations, TRE <= 3.7 mm, scored 0.925-1.0; lesions
        left 4.5-6.2 mm off by a 12 mm / 5° motion scored 0.68-0.78; docs/benchmarks.md.)
        -1 turns the check off.
    """

    ct_metric_max: float = -0.3
    adc_metric_max: float = -0.3
    jacobian_min: float = 0.5
    jacobian_max: float = 2.0
    min_overlap: float = 0.4
    ct_lesion_correlation_min: float = 0.9


def _default_ct_stages() -> tuple[StageConfig, ...]:
    # Same modality, calibrated HU: normalised correlation is smooth and exact where Mattes
    # mutual information, binned and sampled, left millimetres of error on small fields of
    # view. Rigid on the whole body, affine, then a coarse B-spline (70 mm mesh) for the
    # smooth breathing deformation of the liver. A lesion-centred mask looked attractive but
    # the liver around a small lesion is nearly featureless, and masked stages drifted there.
    return (
        StageConfig("rigid", metric="correlation", shrink_factors=(4, 2), smoothing_sigmas_mm=(4.0, 2.0)),
        # the affine stage at 4 mm only: its 2 mm level was most of the stage's time, and without
        # it TRE at the lesions stays within the targets (docs/benchmarks.md, Registration)
        StageConfig("affine", metric="correlation", shrink_factors=(2,), smoothing_sigmas_mm=(2.0,),
                    learning_rate=1.0),
        # one level at 4 mm: the deformation is smooth, and the 2 mm level tripled the time
        # (L-BFGS-B evaluates the metric many times per iteration) for no gain at the lesions;
        # 10 iterations, not 20: a third less time per CT pair, TRE no worse (docs/benchmarks.md)
        StageConfig("bspline", metric="correlation", optimizer="lbfgsb", iterations=10, sampling_fraction=0.05,
                    mesh_spacing_mm=70.0, shrink_factors=(2,), smoothing_sigmas_mm=(1.0,)),
    )


def _default_adc_stages() -> tuple[StageConfig, ...]:
    # Rigid only: at 4-6 mm slices an affine or B-spline stage fitted ADC/CT mutual
    # information no better (affine) or clearly worse (B-spline) at the lesions. 64 bins
    # resolve the liver / lesion / vessel levels of both maps better than 32. Levels of 8 and
    # 4 mm (shrink 2 and 1 of adc_working_spacing_mm): ADC voxels are 1.5-2.5 mm by 4-6 mm, so
    # a 2 mm level added cost, not detail.
    return (StageConfig("rigid", histogram_bins=64, shrink_factors=(2, 1), smoothing_sigmas_mm=(4.0, 2.0)),)


@dataclass(frozen=True)
class RegistrationConfig:
    """How every image is brought into its patient's baseline CT space.

    Attributes
    ----------
    enabled : bool
        False: no registration; patches read every image in its own physical space.
    ct_stages : tuple of StageConfig
        A later visit's CT → the baseline CT (fixed).
    adc_stages : tuple of StageConfig
        An ADC map → the CT of the same visit (fixed); composed with that CT's transform.
    working_spacing_mm : float
        Both images of a CT → CT registration are smoothed and resampled to this isotropic
        spacing before registering (speed; the transform is then applied to the original
        images, never to these copies). The stages' shrink factors are relative to it.
    adc_working_spacing_mm : float
        The same for an ADC → CT registration (the ADC map and its visit's CT). ADC maps are
        1.5-2.5 mm in plane with 4-6 mm slices, and their stages' finest level is 4 mm: a 4 mm
        grid holds what they use, and the quality checks, which read every working voxel of
        the fixed body, cost an eighth of a 2 mm grid's (docs/benchmarks.md, Registration).
    ct_clip_hu : (float, float)
        CT intensities are clipped to this window before registering (metal, air noise).
    lesion_roi_mm : float
        Radius of the spheres around the lesions forming the ``lesions`` mask.
    bspline : bool
        Run the ``bspline`` stages of ``ct_stages`` / ``adc_stages`` (false drops them).
    failure : FailureThresholds
        What flags a registration.
    exclude_flagged : bool
        Treat a flagged image as missing in the patches (counted and reported). False keeps
        it (flagged in the output and the tracked run).
    workers : int
        Patients registered in parallel (process pool).
    threads_per_worker : int
        ITK threads per worker; 0 = the machine's cores divided by ``workers``.
    seed : int
        Seed of the random metric sampling, >= 1 (ITK reads 0 as "seed from the wall clock",
        which would make every run differ). Results are deterministic for a seed and a
        number of threads.
    """

    enabled: bool = True
    ct_stages: tuple[StageConfig, ...] = field(default_factory=_default_ct_stages)
    adc_stages: tuple[StageConfig, ...] = field(default_factory=_default_adc_stages)
    working_spacing_mm: float = 2.0
    adc_working_spacing_mm: float = 4.0
    ct_clip_hu: tuple[float, float] = (-1000.0, 1500.0)
    lesion_roi_mm: float = 50.0
    bspline: bool = True
    failure: FailureThresholds = field(default_factory=FailureThresholds)
    exclude_flagged: bool = False
    workers: int = 2
    threads_per_worker: int = 0
    seed: int = 1

    def __post_init__(self):
        def stages(value) -> tuple[StageConfig, ...]:
            return tuple(s if isinstance(s, StageConfig) else StageConfig(**_plain(s)) for s in value)

        object.__setattr__(self, "ct_stages", stages(self.ct_stages))
        object.__setattr__(self, "adc_stages", stages(self.adc_stages))
        if not isinstance(self.failure, FailureThresholds):
            object.__setattr__(self, "failure", FailureThresholds(**_plain(self.failure)))
        object.__setattr__(self, "ct_clip_hu", tuple(float(v) for v in self.ct_clip_hu))
        problems = []
        for name in ("ct_stages", "adc_stages"):
            seq = getattr(self, name)
            order = [TRANSFORMS.index(s.transform) for s in seq]
            if not seq:
                problems.append(f"{name} is empty")
            elif seq[0].transform != "rigid":
                problems.append(f"{name} must start with a rigid stage")
            elif order != sorted(order):
                problems.append(f"{name}: stages go rigid, then affine, then bspline")
        if min(self.working_spacing_mm, self.adc_working_spacing_mm, self.lesion_roi_mm) <= 0:
            problems.append("working_spacing_mm, adc_working_spacing_mm and lesion_roi_mm must be positive")
        if self.workers < 1 or self.threads_per_worker < 0:
            problems.append("workers >= 1 and threads_per_worker >= 0")
        if self.seed < 1:
            problems.append("seed must be >= 1 (ITK takes 0 as a wall-clock seed: non-deterministic)")
        f = self.failure
        if not 0 <= f.jacobian_min < 1 < f.jacobian_max or not 0 <= f.min_overlap <= 1:
            problems.append("failure: 0 <= jacobian_min < 1 < jacobian_max, min_overlap in [0, 1]")
        if not -1 <= f.ct_lesion_correlation_min <= 1:
            problems.append("failure: ct_lesion_correlation_min in [-1, 1]")
        if problems:
            raise ValueError("invalid registration config: " + "; ".join(problems))

    def stages_for(self, moving_modality: str) -> tuple[StageConfig, ...]:
        """Stages of a registration of a ``moving_modality`` image, B-splines dropped unless enabled."""
        seq = self.adc_stages if moving_modality == "adc" else self.ct_stages
        return tuple(s for s in seq if self.bspline or s.transform != "bspline")

    def working_spacing_for(self, moving_modality: str) -> float:
        """The working spacing (mm) of both images of a registration of a ``moving_modality`` image."""
        return self.adc_working_spacing_mm if moving_modality == "adc" else self.working_spacing_mm

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key_dict(self) -> dict[str, Any]:
        """What registration results depend on: everything but workers and threads."""
        d = self.to_dict()
        for k in ("workers", "threads_per_worker", "exclude_flagged", "enabled"):
            d.pop(k)
        return d


def _plain(value) -> dict:
    """A mapping (dict, OmegaConf DictConfig) as a dict without Hydra's ``_target_``-style keys."""
    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value, resolve=True)
    return {k: v for k, v in dict(value).items() if not str(k).startswith("_")}


def registration_config_from_cfg(data_cfg) -> RegistrationConfig | None:
    """``instantiate(data_cfg.registration)``, or ``None`` when the block is absent or
    ``enabled: false`` (then images are used as they lie)."""
    block = data_cfg.get("registration")
    if block is None:
        return None
    config = hydra.utils.instantiate(block)
    return config if config.enabled else None

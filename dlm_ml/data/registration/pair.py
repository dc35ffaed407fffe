"""Register one moving image onto one fixed image, and judge the result.

The transform returned maps *fixed* physical points to *moving* physical points (ITK's
convention), which is what resampling the moving image onto the fixed grid needs, and
what :func:`dlm_ml.data.patches.resample_patch` takes.

Registration runs on smoothed copies of both images resampled to an isotropic working
spacing on LPS-aligned grids; the transform found is physical, so it is then applied to
the original images (one interpolation, never through these copies).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from dlm_ml.data.registration.config import FailureThresholds, RegistrationConfig, StageConfig

# Intensity below which a voxel is outside the body: CT in HU; ADC in µm²/s (fat ≈ 250,
# the noise floor outside the body ≈ 30 after smoothing).
BODY_THRESHOLD = {"ct": -400.0, "adc": 120.0}
# The body mask is dilated by this much (at least a working voxel), so that the outline counts.
BODY_DILATION_MM = 4.0


class RegistrationError(RuntimeError):
    """A registration that could not run at all (no overlap, empty image); names the pair."""


@dataclass
class WorkingImage:
    """An image prepared for registration.

    Attributes
    ----------
    image : sitk.Image, float32
        Smoothed, clipped, resampled to the working spacing, identity direction.
    body : sitk.Image, uint8
        Body mask (largest connected component above the modality's threshold, dilated).
    domain : sitk.Image, uint8
        Voxels inside the source image's field of view.
    modality : str
    """

    image: sitk.Image
    body: sitk.Image
    domain: sitk.Image
    modality: str


def working_grid(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """An LPS-aligned grid of ``spacing_mm`` covering ``image``'s physical bounding box."""
    size = image.GetSize()
    corners = np.array([image.TransformContinuousIndexToPhysicalPoint(
        [c * (n - 1) for c, n in zip(k, size)]) for k in np.ndindex(2, 2, 2)])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    n = np.maximum(np.floor((hi - lo) / spacing_mm).astype(int) + 1, 1)
    grid = sitk.Image([int(v) for v in n], sitk.sitkFloat32)
    grid.SetSpacing([spacing_mm] * 3)
    grid.SetOrigin(tuple(float(v) for v in lo))
    return grid


def prepare(image: sitk.Image, modality: str, config: RegistrationConfig, *, spacing_mm: float) -> WorkingImage:
    """Smooth (Gaussian anti-aliasing to ``spacing_mm``), clip CT, resample to an isotropic grid of
    ``spacing_mm`` (the registration's, ``RegistrationConfig.working_spacing_for``), find the body."""
    img = sitk.Cast(image, sitk.sitkFloat32)
    if modality == "ct":
        img = sitk.Clamp(img, sitk.sitkFloat32, *config.ct_clip_hu)
    ones = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(image)
    return _working_copy(img, ones, modality, config, spacing_mm)


def coarsen(working: WorkingImage, config: RegistrationConfig, *, spacing_mm: float) -> WorkingImage:
    """``working`` (prepared at a finer spacing) as :func:`prepare` would give it at ``spacing_mm``,
    at a fraction of the cost (about 0.05 s against 0.4-0.6 s to prepare a thin-slice CT of 8
    million voxels on one thread): Gaussian smoothing adds in quadrature, so smoothing the
    finer copy by ``0.5 * sqrt(spacing_mm² - finer²)`` gives the same anti-aliasing as smoothing
    the original by ``0.5 * sqrt(spacing_mm² - original²)``. The field of view is the finer copy's
    (its grid covers the original's bounding box)."""
    finer = working.image.GetSpacing()[0]
    if spacing_mm < finer:
        raise ValueError(f"coarsen: {spacing_mm} mm is finer than the working copy's {finer} mm")
    return _working_copy(working.image, working.domain, working.modality, config, spacing_mm)


def _working_copy(img: sitk.Image, inside: sitk.Image, modality: str, config: RegistrationConfig,
                  spacing_mm: float) -> WorkingImage:
    """``img`` (float32, clipped) anti-aliased and resampled to ``spacing_mm``, ``inside`` (uint8,
    1 in the field of view, on ``img``'s grid) resampled as the domain, and the body found."""
    sigmas = [0.5 * math.sqrt(max(spacing_mm ** 2 - s ** 2, 0.0)) for s in img.GetSpacing()]
    if max(sigmas) > 0:
        img = sitk.SmoothingRecursiveGaussian(img, [max(s, 1e-3) for s in sigmas])
    grid = working_grid(inside, spacing_mm)
    pad = config.ct_clip_hu[0] if modality == "ct" else 0.0
    work = sitk.Resample(img, grid, sitk.Transform(), sitk.sitkLinear, pad, sitk.sitkFloat32)
    domain = sitk.Resample(inside, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    body = sitk.BinaryThreshold(work, BODY_THRESHOLD[modality], 1e9, 1, 0)
    components = sitk.RelabelComponent(sitk.ConnectedComponent(body), sortByObjectSize=True)
    body = sitk.Cast(components == 1, sitk.sitkUInt8)
    radius = max(1, round(BODY_DILATION_MM / spacing_mm))
    body = sitk.BinaryDilate(body, [radius] * 3) * domain  # the outline itself is informative
    return WorkingImage(work, sitk.Cast(body, sitk.sitkUInt8), domain, modality)


def lesion_mask(reference: WorkingImage, centres_mm, radius_mm: float) -> sitk.Image | None:
    """Union of spheres of ``radius_mm`` around ``centres_mm`` (physical, reference space),
    inside the reference's body; ``None`` when it would be (nearly) empty."""
    if centres_mm is None or len(centres_mm) == 0:
        return None
    img = reference.image
    size = np.array(img.GetSize())
    origin, sp = np.array(img.GetOrigin()), np.array(img.GetSpacing())
    axes = [origin[a] + np.arange(size[a]) * sp[a] for a in range(3)]
    near = np.zeros(size[::-1], bool)
    for c in np.asarray(centres_mm, float):
        dz = (axes[2] - c[2]) ** 2
        dy = (axes[1] - c[1]) ** 2
        dx = (axes[0] - c[0]) ** 2
        near |= (dz[:, None, None] + dy[None, :, None] + dx[None, None, :]) <= radius_mm ** 2
    mask = sitk.GetImageFromArray(near.astype(np.uint8))
    mask.CopyInformation(img)
    mask = mask * reference.body
    if sitk.GetArrayViewFromImage(mask).sum() < 200:
        return None
    return mask


def _crop_to_mask(image: sitk.Image, mask: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """``image`` and ``mask`` cropped to the mask's bounding box. Sampling percentages apply
    to the fixed image's voxels, so a small mask on a large image would otherwise leave a
    few hundred samples; cropping also makes the stage cheaper."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    x, y, z, sx, sy, sz = stats.GetBoundingBox(1)
    return (sitk.RegionOfInterest(image, [sx, sy, sz], [x, y, z]),
            sitk.RegionOfInterest(mask, [sx, sy, sz], [x, y, z]))


def _configure(reg: sitk.ImageRegistrationMethod, stage: StageConfig, seed: int) -> None:
    if stage.metric == "mattes":
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=stage.histogram_bins)
    elif stage.metric == "correlation":
        reg.SetMetricAsCorrelation()
    else:
        reg.SetMetricAsMeanSquares()
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(stage.sampling_fraction, seed)
    reg.SetInterpolator(sitk.sitkLinear)
    if not stage.gradient_filter:
        reg.MetricUseFixedImageGradientFilterOff()
        reg.MetricUseMovingImageGradientFilterOff()
    if stage.optimizer == "lbfgsb":
        bound = stage.max_displacement_mm
        reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=stage.iterations,
                                 maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=4 * stage.iterations,
                                 lowerBound=-bound, upperBound=bound)
    elif stage.optimizer == "gradient_descent":
        reg.SetOptimizerAsGradientDescent(learningRate=stage.learning_rate, numberOfIterations=stage.iterations,
                                          convergenceMinimumValue=1e-6, convergenceWindowSize=10)
        reg.SetOptimizerScalesFromPhysicalShift()
    else:
        reg.SetOptimizerAsRegularStepGradientDescent(learningRate=stage.learning_rate, minStep=stage.min_step,
                                                     numberOfIterations=stage.iterations, relaxationFactor=0.5,
                                                     gradientMagnitudeTolerance=1e-8)
        reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(stage.shrink_factors))
    reg.SetSmoothingSigmasPerLevel(list(stage.smoothing_sigmas_mm))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()


def initial_rigid(fixed: WorkingImage, moving: WorkingImage) -> sitk.Euler3DTransform:
    """Rigid start: the centroids of the two body masks aligned (robust to scanner coordinates
    that differ between sessions), no rotation."""
    try:
        tx = sitk.CenteredTransformInitializer(sitk.Cast(fixed.body, sitk.sitkFloat32),
                                               sitk.Cast(moving.body, sitk.sitkFloat32), sitk.Euler3DTransform(),
                                               sitk.CenteredTransformInitializerFilter.MOMENTS)
    except RuntimeError:  # an empty mask: fall back to the field-of-view centres
        tx = sitk.CenteredTransformInitializer(fixed.image, moving.image, sitk.Euler3DTransform(),
                                               sitk.CenteredTransformInitializerFilter.GEOMETRY)
    return sitk.Euler3DTransform(tx)


def _as_affine(tx: sitk.Transform) -> sitk.AffineTransform:
    """An affine transform equal to a rigid/affine one (same centre), to optimise further."""
    if tx.GetName() == "AffineTransform":
        return sitk.AffineTransform(tx)
    rigid = sitk.Euler3DTransform(tx)
    aff = sitk.AffineTransform(3)
    aff.SetCenter(rigid.GetCenter())
    aff.SetMatrix(rigid.GetMatrix())
    aff.SetTranslation(rigid.GetTranslation())
    return aff


@dataclass
class StageResult:
    transform: str
    metric: float
    iterations: int
    stop: str
    seconds: float


def run_stages(fixed: WorkingImage, moving: WorkingImage, stages: tuple[StageConfig, ...], config: RegistrationConfig,
               *, roi_mm=None, name: str = "") -> tuple[sitk.Transform, list[StageResult]]:
    """Run ``stages`` in order, each starting from the previous result.

    ``roi_mm``: lesion centres (fixed physical space) for stages with ``mask: lesions``;
    without them (or when the region is empty) those stages use the body mask.
    Returns the final transform (fixed → moving points) and one result per stage.
    """
    current: sitk.Transform = initial_rigid(fixed, moving)
    results: list[StageResult] = []
    roi = lesion_mask(fixed, roi_mm, config.lesion_roi_mm)
    for stage in stages:
        started = time.perf_counter()
        reg = sitk.ImageRegistrationMethod()
        _configure(reg, stage, config.seed)
        mask = {"body": fixed.body, "lesions": roi if roi is not None else fixed.body, "none": None}[stage.mask]
        fixed_image = fixed.image
        if mask is not None:
            fixed_image, mask = _crop_to_mask(fixed.image, mask)
            reg.SetMetricFixedMask(mask)
        reg.SetMetricMovingMask(moving.domain)  # never sample the padding beyond the field of view
        # stages come ordered rigid → affine → bspline (RegistrationConfig checks it), so a
        # rigid or affine stage always starts from a rigid or affine transform
        if stage.transform == "rigid":
            tx = sitk.Euler3DTransform(current)
            reg.SetInitialTransform(tx, inPlace=True)
        elif stage.transform == "affine":
            tx = _as_affine(current)
            reg.SetInitialTransform(tx, inPlace=True)
        else:  # optimised on top of the affine result: total = current(bspline(x))
            extent = np.array(fixed_image.GetSize()) * np.array(fixed_image.GetSpacing())
            mesh = [max(1, int(round(e / stage.mesh_spacing_mm))) for e in extent]
            tx = sitk.BSplineTransformInitializer(fixed_image, mesh, 3)
            reg.SetMovingInitialTransform(current)
            reg.SetInitialTransform(tx, inPlace=True)
        try:
            reg.Execute(fixed_image, moving.image)
        except RuntimeError as err:
            raise RegistrationError(f"{name}: {stage.transform} stage failed: {str(err).strip().splitlines()[-1]}") \
                from err
        if stage.transform == "bspline":
            current = sitk.CompositeTransform([current, tx])
            current.FlattenTransform()
        else:
            current = tx
        results.append(StageResult(stage.transform, float(reg.GetMetricValue()),
                                   int(reg.GetOptimizerIteration()), reg.GetOptimizerStopConditionDescription(),
                                   time.perf_counter() - started))
    return current, results


# --- quality -------------------------------------------------------------------------------------

def mattes_metric(fixed: WorkingImage, moving: WorkingImage, transform: sitk.Transform) -> float:
    """Mattes mutual information (negative; lower = better) of ``moving`` through ``transform``
    against ``fixed`` over every voxel of the fixed body, 32 bins: deterministic, no sampling
    (ITK's ``MetricEvaluate`` ignores a sampling percentage; measured, the value was the same
    at 1 %, 20 % and 100 %)."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricFixedMask(fixed.body)
    reg.SetMetricMovingMask(moving.domain)
    reg.SetInterpolator(sitk.sitkLinear)
    # A value needs no derivative: without these, ITK filters both whole images for gradients
    # first, half the cost of the evaluation (the value is the same to the last digit).
    reg.MetricUseFixedImageGradientFilterOff()
    reg.MetricUseMovingImageGradientFilterOff()
    # as the moving initial transform: ITK takes a dense (displacement field) transform being
    # optimised to define the virtual domain, and refuses a fixed image on another grid
    reg.SetMovingInitialTransform(transform)
    reg.SetInitialTransform(sitk.TranslationTransform(3))
    try:
        return float(reg.MetricEvaluate(fixed.image, moving.image))
    except RuntimeError:  # no sample maps inside the moving image
        return 0.0


def overlap(fixed: WorkingImage, moving: WorkingImage, transform: sitk.Transform) -> tuple[float, sitk.Image]:
    """Fraction of the fixed body that ``transform`` maps inside the moving field of view, and
    that part of the body as a mask (where the moving image constrained the registration)."""
    mapped = sitk.Resample(moving.domain, fixed.body, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    seen = sitk.Cast(fixed.body * mapped, sitk.sitkUInt8)
    body = sitk.GetArrayViewFromImage(fixed.body).astype(bool)
    if not body.any():
        return 0.0, seen
    return float(sitk.GetArrayViewFromImage(mapped)[body].mean()), seen


def lesion_correlation(fixed: WorkingImage, moving: WorkingImage, transform: sitk.Transform, centres_mm,
                       radius_mm: float) -> float:
    """Pearson correlation of the fixed image and the moving image through ``transform`` over
    spheres of ``radius_mm`` around ``centres_mm`` (fixed physical space, mm), inside the fixed
    body and the moving field of view: how well the region the patches are cut from matches.

    Only meaningful for images of one modality (CT → CT). The whole-body metric can be good
    while the lesions sit millimetres off (the body outline dominates it); here liver, vessels
    and lesions dominate. NaN without lesions, for two modalities, or when fewer than 200
    working voxels remain."""
    if fixed.modality != moving.modality:
        return float("nan")
    roi = lesion_mask(fixed, centres_mm, radius_mm)
    if roi is None:
        return float("nan")
    fixed_image, roi = _crop_to_mask(fixed.image, roi)
    warped = sitk.Resample(moving.image, fixed_image, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    seen = sitk.Resample(moving.domain, fixed_image, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    inside = (sitk.GetArrayViewFromImage(roi) > 0) & (sitk.GetArrayViewFromImage(seen) > 0)
    if inside.sum() < 200:
        return float("nan")
    a = sitk.GetArrayViewFromImage(fixed_image)[inside].astype(np.float64)
    b = sitk.GetArrayViewFromImage(warped)[inside].astype(np.float64)
    if a.std() == 0 or b.std() == 0:  # a uniform region: nothing to align, nothing matches
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def jacobian_range(transform: sitk.Transform, region: sitk.Image, spacing_mm: float = 6.0) -> tuple[float, float]:
    """(min, max) of the Jacobian determinant of ``transform`` over the voxels of the mask
    ``region`` (uint8), sampled every ``spacing_mm``. The field is computed one sample
    beyond the region on every side: finite differences at a field's border are one-sided
    and would halve the derivative there."""
    src_sp = np.array(region.GetSpacing())
    size = np.maximum((np.array(region.GetSize()) * src_sp / spacing_mm).astype(int), 2) + 2
    direction = np.reshape(region.GetDirection(), (3, 3))
    origin = np.array(region.GetOrigin()) - direction @ np.full(3, spacing_mm)
    field = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, [int(v) for v in size],
                                              tuple(origin), [spacing_mm] * 3, region.GetDirection())
    det = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(field))[1:-1, 1:-1, 1:-1]
    ref = sitk.Image([int(v) - 2 for v in size], sitk.sitkUInt8)
    ref.SetOrigin(tuple(origin + direction @ np.full(3, spacing_mm)))
    ref.SetSpacing([spacing_mm] * 3)
    ref.SetDirection(region.GetDirection())
    inside = sitk.GetArrayViewFromImage(sitk.Resample(region, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                                      sitk.sitkUInt8)) > 0
    values = det[inside] if inside.any() else det.ravel()
    return float(values.min()), float(values.max())


@dataclass
class PairResult:
    """A registered pair: the transform (fixed → moving points) and how good it looks."""

    transform: sitk.Transform
    metric: float  # Mattes MI after registration (see mattes_metric)
    metric_before: float  # ... with the initial (centroid) alignment
    jacobian_min: float
    jacobian_max: float
    overlap: float
    stages: list[StageResult] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0
    lesion_correlation: float = float("nan")  # see lesion_correlation; NaN: not measured

    def reasons(self, failure: FailureThresholds, moving_modality: str) -> list[str]:
        """Why this result is implausible (empty: plausible)."""
        out = [self.error] if self.error else []
        limit = failure.adc_metric_max if moving_modality == "adc" else failure.ct_metric_max
        if not self.metric < limit:
            out.append(f"final metric {self.metric:.3f} not below {limit:g}")
        if not failure.jacobian_min <= self.jacobian_min <= self.jacobian_max <= failure.jacobian_max:
            out.append(f"Jacobian determinant range [{self.jacobian_min:.2f}, {self.jacobian_max:.2f}] outside "
                       f"[{failure.jacobian_min:g}, {failure.jacobian_max:g}]")
        if self.overlap < failure.min_overlap:
            out.append(f"only {self.overlap:.0%} of the fixed body maps inside the moving image")
        if moving_modality == "ct" and self.lesion_correlation < failure.ct_lesion_correlation_min:
            out.append(f"correlation {self.lesion_correlation:.2f} around the lesions below "
                       f"{failure.ct_lesion_correlation_min:g}: lesions may be misaligned by millimetres")
        return out


def qa_transform(transform: sitk.Transform, reference: sitk.Image) -> sitk.Transform:
    """``transform`` as the quality checks evaluate it on ``reference``'s grid (fixed space).

    A rigid or affine transform is returned as it is. A deformable one (a composite holding a
    B-spline) costs a cubic B-spline evaluation per point, and the checks (Mattes MI, overlap,
    lesion-region correlation) evaluated it over the working grid four times, as long as the
    registration itself took; it is returned as its displacement field sampled once at the
    voxels of ``reference``, linearly interpolated between them: exact at every voxel (where
    overlap and correlation resample), within hundredths of a millimetre between them (where
    Mattes MI samples), except within a voxel of the edge of the B-spline's domain, beyond
    which its displacement drops to zero. Valid only inside ``reference``'s grid."""
    if transform.GetName() != "CompositeTransform" and "BSpline" not in transform.GetName():
        return transform
    field = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, reference.GetSize(),
                                              reference.GetOrigin(), reference.GetSpacing(), reference.GetDirection())
    return sitk.DisplacementFieldTransform(field)


def register_pair(fixed: WorkingImage, moving: WorkingImage, config: RegistrationConfig, *, roi_mm=None,
                  name: str = "") -> PairResult:
    """Register ``moving`` onto ``fixed`` with the stages for the moving modality and measure the
    result. A registration that cannot run returns the initial alignment with ``error`` set
    (flagged downstream), never raises for image content."""
    started = time.perf_counter()
    stages = config.stages_for(moving.modality)
    before = mattes_metric(fixed, moving, initial_rigid(fixed, moving))
    try:
        transform, results = run_stages(fixed, moving, stages, config, roi_mm=roi_mm, name=name)
        error = ""
    except RegistrationError as err:
        transform, results, error = initial_rigid(fixed, moving), [], str(err)
    # Jacobian where the moving image was seen: beyond its field of view a B-spline is
    # unconstrained, and a fold there harms no patch
    checked = qa_transform(transform, fixed.image)
    fraction, seen = overlap(fixed, moving, checked)
    # the Jacobian samples one step beyond the region, outside the field: the transform itself
    jmin, jmax = jacobian_range(transform, seen if fraction > 0 else fixed.body)
    local = lesion_correlation(fixed, moving, checked, roi_mm, config.lesion_roi_mm)
    return PairResult(transform, mattes_metric(fixed, moving, checked), before, jmin, jmax,
                      fraction, results, error, time.perf_counter() - started, local)

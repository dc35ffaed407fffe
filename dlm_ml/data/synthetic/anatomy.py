"""Patient anatomy (body, fat, spine with discs, aorta, kidneys, two-lobed liver with
vessels), lesion placement and voxel rendering of one image.

Shapes are analytic, evaluated at voxel centres in anatomy space (= baseline CT
physical space) with a smooth edge whose width grows with the voxel size, which
stands in for partial volume. Renderers take coordinate arrays broadcastable to
the output shape: 1-D vectors for an aligned image, full arrays for a moved one.

The anatomy around the liver is what registration locks on: the body outline
(which narrows caudally, so it fixes z too), the vertebral bodies and their discs,
the kidneys and the vessels inside the liver. A lesion that disappears leaves
nothing to see; its position follows from that anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from dlm_ml.data.synthetic.config import SynthConfig
from dlm_ml.data.synthetic.geometry import ImageGrid, VisitPose, VoxelCoordinates, anatomy_box_to_slices

Segment = tuple[tuple[float, float, float], tuple[float, float, float], float]  # start, end, radius (mm)


def _floats(values) -> tuple[float, ...]:
    """Plain Python floats: a NumPy float64 scalar would promote float32 voxel arrays to float64."""
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class Ellipsoid:
    center: tuple[float, float, float]
    semi_axes: tuple[float, float, float]

    def __post_init__(self):
        object.__setattr__(self, "center", _floats(self.center))
        object.__setattr__(self, "semi_axes", _floats(self.semi_axes))

    def norm_radius(self, x, y, z):
        c, a = self.center, self.semi_axes
        return np.sqrt(((x - c[0]) / a[0]) ** 2 + ((y - c[1]) / a[1]) ** 2 + ((z - c[2]) / a[2]) ** 2)

    def signed_distance(self, x, y, z):
        """Approximate signed distance (mm; negative inside)."""
        return (self.norm_radius(x, y, z) - 1.0) * min(self.semi_axes)


@dataclass(frozen=True)
class Anatomy:
    """One patient's anatomy, in anatomy space (mm, LPS)."""

    fov_center: tuple[float, float, float]
    right_lobe: Ellipsoid
    left_lobe: Ellipsoid
    body_center: tuple[float, float]
    body_semi_axes: tuple[float, float]
    fat_mm: float
    spine_center: tuple[float, float]
    spine_radius: float
    aorta_center: tuple[float, float]
    aorta_radius: float
    body_taper: float = 0.0  # relative change of the body's semi-axes per mm of z above fov_center
    vertebra_period_mm: float = 0.0  # 0: no discs
    vertebra_phase_mm: float = 0.0
    disc_thickness_mm: float = 0.0
    kidneys: tuple[Ellipsoid, ...] = ()
    vessels: tuple[Segment, ...] = ()

    def __post_init__(self):
        for name in ("fov_center", "body_center", "body_semi_axes", "spine_center", "aorta_center"):
            object.__setattr__(self, name, _floats(getattr(self, name)))
        for name in ("fat_mm", "spine_radius", "aorta_radius", "body_taper", "vertebra_period_mm",
                     "vertebra_phase_mm", "disc_thickness_mm"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def _ellipse_sds(self, x, y, z, shrinks: tuple[float, ...]) -> list:
        """Approximate signed distances (mm) to the body's elliptic cross-section shrunk by each of
        ``shrinks`` (mm); the offsets and the taper are computed once for all."""
        k = 1.0 if z is None or self.body_taper == 0 else 1.0 + self.body_taper * (z - self.fov_center[2])
        dx, dy = x - self.body_center[0], y - self.body_center[1]
        out = []
        for shrink in shrinks:
            a, b = self.body_semi_axes[0] * k - shrink, self.body_semi_axes[1] * k - shrink
            r = np.sqrt((dx / a) ** 2 + (dy / b) ** 2)
            out.append((r - 1.0) * np.minimum(a, b))
        return out

    def inner_sd(self, x, y, z=None):
        """Signed distance to the inside of the abdominal wall (the body shrunk by the fat layer)."""
        return self._ellipse_sds(x, y, z, (self.fat_mm,))[0]

    def body_and_inner_sd(self, x, y, z=None):
        """Signed distances to the body outline and to the inside of the abdominal wall
        (:meth:`inner_sd`) at the same points, for the cost of about one and a half."""
        return tuple(self._ellipse_sds(x, y, z, (0.0, self.fat_mm)))

    def liver_sd(self, x, y, z, inner_sd=None):
        """Approximate signed distance to the liver: union of two lobes, clipped to
        stay inside the abdominal wall (``inner_sd``: :meth:`inner_sd` at these points, when
        already computed)."""
        lobes = np.minimum(self.right_lobe.signed_distance(x, y, z), self.left_lobe.signed_distance(x, y, z))
        return np.maximum(lobes, (self.inner_sd(x, y, z) if inner_sd is None else inner_sd) + 3.0)

    def disc_sd(self, z):
        """Signed distance (mm, along z) to the nearest intervertebral disc."""
        p = self.vertebra_period_mm
        phase = (z - self.vertebra_phase_mm) / p
        return np.abs(phase - np.round(phase)) * p - self.disc_thickness_mm / 2

    def liver_contains(self, pts: np.ndarray) -> np.ndarray:
        return self.liver_sd(pts[..., 0], pts[..., 1], pts[..., 2]) < 0

    def liver_box(self) -> tuple[np.ndarray, np.ndarray]:
        los, his = [], []
        for e in (self.right_lobe, self.left_lobe):
            c, a = np.asarray(e.center), np.asarray(e.semi_axes)
            los.append(c - a - 3)
            his.append(c + a + 3)
        return np.min(los, axis=0), np.max(his, axis=0)

    def as_record(self) -> dict[str, float]:
        rec: dict[str, float] = {}
        named = [("right_lobe", self.right_lobe), ("left_lobe", self.left_lobe)]
        named += [(f"kidney{i + 1}", k) for i, k in enumerate(self.kidneys)]
        for name, e in named:
            for ax, v in zip("xyz", e.center):
                rec[f"{name}_c{ax}"] = v
            for ax, v in zip("xyz", e.semi_axes):
                rec[f"{name}_a{ax}"] = v
        for name in ("body_center", "body_semi_axes", "spine_center", "aorta_center"):
            for ax, v in zip("xy", getattr(self, name)):
                rec[f"{name}_{ax}"] = v
        rec.update(fat_mm=self.fat_mm, spine_radius=self.spine_radius, aorta_radius=self.aorta_radius,
                   body_taper=self.body_taper, vertebra_period_mm=self.vertebra_period_mm,
                   vertebra_phase_mm=self.vertebra_phase_mm, n_vessels=len(self.vessels))
        return {k: round(float(v), 4) for k, v in rec.items()}


def _vessels(right: Ellipsoid, hilum: np.ndarray, n: int, radius_range, scale: float,
             rng: np.random.Generator) -> tuple[Segment, ...]:
    """``n`` straight branches from the hilum into the right lobe, ending at 75 % of its
    semi-axes in a random direction (kept inside the lobe)."""
    out = []
    for _ in range(n):
        d = rng.standard_normal(3)
        d /= np.linalg.norm(d)
        end = np.asarray(right.center) + 0.75 * d * np.asarray(right.semi_axes)
        r = rng.uniform(*radius_range) * scale
        out.append((tuple(float(v) for v in hilum), tuple(float(v) for v in end), float(r)))
    return tuple(out)


def sample_anatomy(config: SynthConfig, rng: np.random.Generator) -> Anatomy:
    """Draw one patient's anatomy; the baseline CT field of view is centred near the liver."""
    an = config.anatomy
    s = an.scale
    # Arbitrary table position: world coordinates differ between patients, as in real CT.
    fov_center = np.round(np.array([rng.uniform(-80, -40), rng.uniform(-10, 30), rng.uniform(-250, -100)]), 1)
    liver_c = fov_center + rng.uniform(-an.position_jitter_mm, an.position_jitter_mm, 3) * s
    k_liver = max(0.8, 1 + an.scale_sd * rng.standard_normal())
    k_body = max(0.8, 1 + an.scale_sd * rng.standard_normal())
    right = Ellipsoid(tuple(liver_c), tuple(np.asarray(an.liver_semi_axes_mm) * s * k_liver))
    left = Ellipsoid(tuple(liver_c + np.array([70.0, -25.0, 18.0]) * s * k_liver),
                     tuple(np.asarray(an.left_lobe_semi_axes_mm) * s * k_liver))
    body_c = liver_c[:2] + np.array([60.0, 12.0]) * s
    fat = max(4.0, an.fat_thickness_mm + an.fat_thickness_sd_mm * rng.standard_normal()) * s
    spine_c = body_c + np.array([0.0, 75.0]) * s * k_body
    # Landmarks added in the second version; drawn after the first version's draws, so
    # those keep their values.
    taper = an.body_taper_per_100mm / 100.0 * (0.7 + 0.6 * rng.uniform()) / s
    phase = rng.uniform(0, an.vertebra_period_mm * s)
    kid = np.asarray(an.kidney_semi_axes_mm) * s * k_body
    kidneys = (Ellipsoid((spine_c[0] - 58 * s, spine_c[1] - 8 * s, liver_c[2] - 62 * s), tuple(kid)),
               Ellipsoid((spine_c[0] + 58 * s, spine_c[1] - 8 * s, liver_c[2] - 42 * s), tuple(kid)))
    hilum = liver_c + np.array([28.0, 12.0, -8.0]) * s * k_liver
    vessels = _vessels(right, hilum, an.n_vessels, an.vessel_radius_mm, s, rng)
    return Anatomy(
        fov_center=tuple(fov_center), right_lobe=right, left_lobe=left,
        body_center=tuple(body_c), body_semi_axes=tuple(np.asarray(an.body_semi_axes_mm) * s * k_body),
        fat_mm=float(fat), spine_center=tuple(spine_c), spine_radius=17.0 * s,
        aorta_center=tuple(body_c + np.array([18.0, 50.0]) * s * k_body), aorta_radius=11.0 * s,
        body_taper=float(taper), vertebra_period_mm=an.vertebra_period_mm * s, vertebra_phase_mm=float(phase),
        disc_thickness_mm=an.disc_thickness_mm * s, kidneys=kidneys, vessels=vessels,
    )


def _sphere_directions(n: int = 48) -> np.ndarray:
    """Fibonacci sphere: ``n`` near-uniform unit vectors."""
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5 ** 0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)


_DIRS = np.vstack([_sphere_directions(), np.zeros((1, 3))])


def place_lesions(anatomy: Anatomy, extents_mm: np.ndarray, grids: list[tuple[ImageGrid, VisitPose]],
                  config: SynthConfig, rng: np.random.Generator, max_tries: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Centres for lesions whose rendered extent (largest diameter over all
    timepoints) is ``extents_mm``: each sphere (plus margins) inside the liver and
    inside every image grid (seen through the image's pose), none overlapping. Largest first; a lesion that
    cannot be placed after ``max_tries`` batches is shrunk by 15 % and retried.
    Returns (centres (n, 3), scale factor applied to each lesion's sizes)."""
    cfg = config.lesions
    n = len(extents_mm)
    order = np.argsort(-extents_mm, kind="stable")
    centres = np.zeros((n, 3))
    factor = np.ones(n)
    lo, hi = anatomy.liver_box()
    placed: list[int] = []
    for i in order:
        for attempt in range(max_tries * 4):
            r = factor[i] * extents_mm[i] / 2
            cand = rng.uniform(lo, hi, size=(32, 3))
            # inside the liver: the centre and 48 points of the enlarged sphere
            pts = cand[:, None, :] + _DIRS[None] * (r + cfg.liver_margin_mm)
            ok = anatomy.liver_contains(pts).all(axis=1)
            for g, pose in grids:
                ok &= g.contains(pose.inverse_apply(cand), margin_mm=r + 1.0)
            for j in placed:
                rj = factor[j] * extents_mm[j] / 2
                ok &= np.linalg.norm(cand - centres[j], axis=1) >= r + rj + cfg.min_gap_mm
            if ok.any():
                centres[i] = cand[np.argmax(ok)]
                placed.append(i)
                break
            if attempt % max_tries == max_tries - 1:
                factor[i] *= 0.85
        else:
            raise RuntimeError("could not place lesions in the liver; field of view or liver too small "
                               "for lesions.diameter_max_mm")
    return centres, factor


@dataclass(frozen=True)
class Tissue:
    """Values of one modality at one timepoint (HU or µm²/s). ``background_sd``: SD of the
    rectified noise floor outside the body (ADC maps); 0 keeps air exact (CT)."""

    air: float
    fat: float
    soft: float
    bone: float
    cortex: float
    aorta: float
    liver: float
    noise_sd: float
    kidney: float = 0.0
    disc: float = 0.0
    vessel: float = 0.0
    background_sd: float = 0.0


def _normal_quantiles(levels: int = 1 << 16) -> np.ndarray:
    """``levels`` float32 values of a standard normal, one per equal-probability bin (its
    midpoint quantile), rescaled to variance exactly 1; symmetric, so mean 0. They reach ±4.3."""
    q = ndtri((np.arange(levels) + 0.5) / levels)
    return (q / np.sqrt(np.mean(q ** 2))).astype(np.float32)


_NORMAL_QUANTILES = _normal_quantiles()


def image_noise(rng: np.random.Generator, shape, levels: np.ndarray = _NORMAL_QUANTILES) -> np.ndarray:
    """Standard normal float32 noise of ``shape`` by inverse-CDF lookup of 16-bit random
    integers (four from each 64-bit word of ``rng``'s bit generator): about 8× cheaper than
    NumPy's float32 ziggurat, which was a quarter of the render time. Quantised to 65,536
    equal-probability levels and cut at ±4.3 SD: for image noise that is rounded to whole HU
    (or µm²/s) afterwards, neither is visible. ``levels``: the quantiles already transformed
    (scaled by an SD, rectified), to save a pass per voxel."""
    n = int(np.prod(shape))
    words = rng.bit_generator.random_raw(-(-n // 4))
    # little-endian order on every platform, so a seed gives the same image everywhere
    return levels.take(words.astype("<u8", copy=False).view("<u2")[:n]).reshape(shape)


def _membership(sd, width):
    """expit(-sd / width) in float32 (1 inside, 0 outside, 0.5 on the surface), as
    0.5 + 0.5 tanh(-sd / (2 width)): NumPy's vectorised float32 tanh makes this about 3× faster
    than 1 / (1 + exp(sd / width)) (the two differ by float32 rounding, < 2e-7), and tanh cannot
    overflow."""
    t = np.multiply(sd, np.float32(-0.5 / width), dtype=np.float32)
    np.tanh(t, out=t)
    t *= np.float32(0.5)
    t += np.float32(0.5)
    return t


def _segment_distance(X, Y, Z, seg: Segment):
    a, b, _ = seg
    a, d = np.asarray(a, np.float32), np.asarray(b, np.float32) - np.asarray(a, np.float32)
    px, py, pz = X - a[0], Y - a[1], Z - a[2]
    t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / np.float32(d @ d), 0.0, 1.0)
    return np.sqrt((px - t * d[0]) ** 2 + (py - t * d[1]) ** 2 + (pz - t * d[2]) ** 2)


def _paint(vol, box, value, membership):
    """Blend ``value`` into ``vol[box]`` with weight ``membership`` (in place)."""
    sub = vol[box]
    vol[box] = sub + (value - sub) * membership


#: A membership of a structure whose edge is farther than this many edge widths is 0 or 1 to
#: within e^-25 ≈ 1e-11 of the value blended in, far below a voxel value's float32 rounding: the
#: spine and aorta are painted in that box only.
_SATURATION_WIDTHS = 25.0
#: Voxels per z-slab rendered at once: the slab's float32 temporaries (0.5 MB each) stay in the CPU
#: cache, where each array operation runs several times faster than over a whole image.
_SLAB_VOXELS = 1 << 17


def _local(box, z0: int, z1: int):
    """The part of ``box`` (z, y, x slices of the image) inside the z-slab [z0, z1), in slab
    indices; ``None`` when they do not meet."""
    zs = slice(max(box[0].start, z0) - z0, min(box[0].stop, z1) - z0)
    return None if zs.stop <= zs.start else (zs, box[1], box[2])


def _view(arr, box):
    """``arr[box]`` of an array broadcastable to the slab (its length-1 axes stay whole)."""
    return arr[tuple(s if n > 1 else slice(None) for s, n in zip(box, arr.shape))]


def _within(region, box):
    """``region``'s array (``(box, array)``, the array filling its box) over ``box``, when ``box``
    lies inside the region's box; else ``None``."""
    if region is None:
        return None
    outer, arr = region
    if arr.shape != tuple(o.stop - o.start for o in outer):
        return None
    if any(b.start < o.start or b.stop > o.stop for b, o in zip(box, outer)):
        return None
    return arr[tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(box, outer))]


def _grid_z_range(grid: ImageGrid, pose: VisitPose) -> tuple[float, float]:
    """Anatomy-space z range (mm) of the image's field of view, widened by the breathing bump."""
    corners = grid.index_to_world(np.array(list(np.ndindex(2, 2, 2))) * (np.asarray(grid.size) - 1))
    z = pose.rigid_apply(corners)[:, 2]
    pad = pose.max_displacement_mm + 1.0
    return float(z.min() - pad), float(z.max() + pad)


def render(anatomy: Anatomy, tissue: Tissue, lesions: list[tuple[np.ndarray, float, float]],
           grid: ImageGrid, pose: VisitPose, edge_mm: float, rng: np.random.Generator,
           with_masks: bool = False):
    """Render one image as a float32 (z, y, x) array.

    ``lesions``: (centre, diameter_mm, value) drawn in order over the liver.
    Noise is added inside the body only; outside, air stays exactly ``tissue.air``
    unless ``tissue.background_sd`` adds a rectified noise floor (ADC).
    With ``with_masks``: also the liver mask (uint8) and a lesion label map
    (uint8, label = 1 + position in ``lesions``; diameter 0 → no label).

    Rendered one z-slab at a time (every voxel's value is computed by the same operations
    whatever the slab); each structure but the body outline is computed only in its own box.
    """
    w = float(np.hypot(edge_mm, 0.35 * np.mean(grid.spacing)))
    shape = tuple(reversed(grid.size))
    coords = VoxelCoordinates(grid, pose)
    vol = np.empty(shape, np.float32)
    liver_mask = np.zeros(shape, np.uint8) if with_masks else None
    labels = np.zeros(shape, np.uint8) if with_masks else None

    margin = _SATURATION_WIDTHS * w
    z_lo, z_hi = _grid_z_range(grid, pose)
    cylinders = []
    for centre, radius, value, rim in ((anatomy.spine_center, anatomy.spine_radius, tissue.bone, True),
                                       (anatomy.aorta_center, anatomy.aorta_radius, tissue.aorta, False)):
        reach = radius + margin
        box = anatomy_box_to_slices(grid, pose, (centre[0] - reach, centre[1] - reach, z_lo),
                                    (centre[0] + reach, centre[1] + reach, z_hi))
        if box is not None:
            cylinders.append((box, centre, radius, value, rim))
    kidneys = []
    for kidney in anatomy.kidneys:
        c, a = np.asarray(kidney.center), np.asarray(kidney.semi_axes)
        box = anatomy_box_to_slices(grid, pose, c - a - 4 * w, c + a + 4 * w)
        if box is not None:
            kidneys.append((box, kidney))
    liver_box = anatomy_box_to_slices(grid, pose, *anatomy.liver_box())
    vessels = []
    for seg in anatomy.vessels:  # inside the liver only (drawn over it, under the lesions)
        r = seg[2]
        box = anatomy_box_to_slices(grid, pose, np.minimum(seg[0], seg[1]) - r - 4 * w,
                                    np.maximum(seg[0], seg[1]) + r + 4 * w)
        if box is not None:
            vessels.append((box, seg))
    spheres = []
    for k, (centre, diameter, value) in enumerate(lesions):
        if diameter <= 0:
            continue
        r = diameter / 2
        box = anatomy_box_to_slices(grid, pose, np.asarray(centre) - r - 4 * w, np.asarray(centre) + r + 4 * w)
        if box is not None:
            spheres.append((box, k, centre, r, value))

    noise_levels = _NORMAL_QUANTILES * np.float32(tissue.noise_sd) if tissue.noise_sd > 0 else None
    floor_levels = np.abs(_NORMAL_QUANTILES) * np.float32(tissue.background_sd) if tissue.background_sd > 0 else None
    step = max(1, _SLAB_VOXELS // (shape[1] * shape[2]))
    for z0 in range(0, shape[0], step):
        z1 = min(z0 + step, shape[0])
        X, Y, Z = coords.slab(z0, z1)
        v = vol[z0:z1]
        body_sd, inner_sd = anatomy.body_and_inner_sd(X, Y, Z)
        body = _membership(body_sd, w)
        background = tissue.air + (tissue.fat - tissue.air) * body
        v[...] = background + (tissue.soft - background) * _membership(inner_sd, w)
        for box, centre, radius, value, rim in cylinders:
            b = _local(box, z0, z1)
            if b is None:
                continue
            Xb, Yb, Zb, vb = _view(X, b), _view(Y, b), _view(Z, b), v[b]
            r = np.sqrt((Xb - centre[0]) ** 2 + (Yb - centre[1]) ** 2)
            inside = _membership(r - radius, w)
            if rim and anatomy.vertebra_period_mm > 0:  # vertebral bodies alternate with discs along z
                disc = _membership(anatomy.disc_sd(Zb), w)
                vb = vb + (value + (tissue.disc - value) * disc - vb) * inside
                v[b] = vb + (tissue.cortex - vb) * _membership(np.abs(r - radius + 1.5) - 1.5, w) * (1 - disc)
            else:
                vb = vb + (value - vb) * inside
                if rim:  # cortical shell of the vertebral body
                    vb = vb + (tissue.cortex - vb) * _membership(np.abs(r - radius + 1.5) - 1.5, w)
                v[b] = vb
        for box, kidney in kidneys:
            if (b := _local(box, z0, z1)) is not None:
                _paint(v, b, tissue.kidney, _membership(kidney.signed_distance(_view(X, b), _view(Y, b),
                                                                               _view(Z, b)), w))
        liver = None  # (slab box, liver signed distance there), reused for the vessels
        if liver_box is not None and (b := _local(liver_box, z0, z1)) is not None:
            liver = (b, anatomy.liver_sd(_view(X, b), _view(Y, b), _view(Z, b), _view(inner_sd, b)))
            m = _membership(liver[1], w)
            _paint(v, b, tissue.liver, m)
            if with_masks:
                liver_mask[z0:z1][b] = m > 0.5
        for box, seg in vessels:
            if (b := _local(box, z0, z1)) is None:
                continue
            Xb, Yb, Zb = _view(X, b), _view(Y, b), _view(Z, b)
            liver_sd = _within(liver, b)
            if liver_sd is None:
                liver_sd = anatomy.liver_sd(Xb, Yb, Zb, _view(inner_sd, b))
            in_liver = _membership(liver_sd + 2 * w, w)
            _paint(v, b, tissue.vessel, _membership(_segment_distance(Xb, Yb, Zb, seg) - seg[2], w) * in_liver)
        for box, k, centre, r, value in spheres:
            if (b := _local(box, z0, z1)) is None:
                continue
            Xb, Yb, Zb = _view(X, b), _view(Y, b), _view(Z, b)
            m = _membership(np.sqrt((Xb - centre[0]) ** 2 + (Yb - centre[1]) ** 2 + (Zb - centre[2]) ** 2) - r, w)
            _paint(v, b, value, m)
            if with_masks:
                labels[z0:z1][b][m > 0.5] = k + 1
        # one stream, drawn slab by slab (the slabs depend on the shape only): the noise, then
        # the background floor; drawn here, each slab's noise is still in the CPU cache when added
        # (a masked add, ``np.add(..., where=)``, is several times slower than multiplying by the mask)
        if noise_levels is not None:
            noise = image_noise(rng, v.shape, noise_levels)
            noise *= body > 0.5
            v += noise
        if floor_levels is not None:
            floor = image_noise(rng, v.shape, floor_levels)
            floor *= body <= 0.5
            v += floor
    return (vol, liver_mask, labels) if with_masks else vol

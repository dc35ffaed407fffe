"""Image grids and the true mapping from an image's voxels to the patient's anatomy.

All geometry of one image lives in :class:`ImageGrid` (its voxel lattice in the
image's own physical space: spacing, field of view, origin, direction with flipped
axes) and :class:`VisitPose` (image physical space → anatomy space, where anatomy
space is the baseline CT's physical space, the space of ``lesions.csv``).

A pose is a rigid motion followed by a smooth breathing-like deformation::

    x       = R @ p + t                                  (rigid: patient position on the table)
    anatomy = x + a * exp(-|x - c|² / (2 s²))            (breathing: a Gaussian bump of displacement)

The bump moves the liver, centred at ``c``, by ``a`` (a few mm, mostly
craniocaudal) and fades with distance, so the map is smooth and invertible
(its largest strain, ``0.61 |a| / s``, is a few per cent). The baseline CT's pose
is the identity. Renderers take broadcastable coordinate arrays, so the identity
pose keeps the cheap 1-D-vector path of an aligned cohort.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import SimpleITK as sitk

IDENTITY3 = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class ImageGrid:
    """Voxel lattice: ``size`` and ``spacing`` in (x, y, z) order, ``direction``
    row-major 3×3 (columns = image axes in physical space), like SimpleITK."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...] = IDENTITY3

    @property
    def matrix(self) -> np.ndarray:
        """Index (x, y, z) → physical offset from the origin: direction @ diag(spacing)."""
        return np.asarray(self.direction, float).reshape(3, 3) @ np.diag(self.spacing)

    @property
    def axis_aligned(self) -> bool:
        return tuple(self.direction) == IDENTITY3

    def index_to_world(self, ijk: np.ndarray) -> np.ndarray:
        return np.asarray(self.origin) + np.asarray(ijk, float) @ self.matrix.T

    def world_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Continuous index (x, y, z) of physical points ``xyz`` (..., 3)."""
        return (np.asarray(xyz, float) - np.asarray(self.origin)) @ np.linalg.inv(self.matrix).T

    def contains(self, xyz: np.ndarray, margin_mm: float = 0.0) -> np.ndarray:
        """Whether points lie inside the voxel-centre box shrunk by ``margin_mm``."""
        idx = self.world_to_index(xyz)
        m = margin_mm / np.asarray(self.spacing)
        return np.all((idx >= m) & (idx <= np.asarray(self.size) - 1 - m), axis=-1)

    def to_sitk(self, array_zyx: np.ndarray) -> sitk.Image:
        """Wrap a (z, y, x) array on this grid as a SimpleITK image."""
        if array_zyx.shape != tuple(reversed(self.size)):
            raise ValueError(f"array shape {array_zyx.shape} does not match grid size {self.size}")
        img = sitk.GetImageFromArray(array_zyx)
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction)
        return img

    def as_record(self) -> dict[str, float | int | str]:
        rec: dict[str, float | int | str] = {}
        for name, vals in (("size", self.size), ("spacing", self.spacing), ("origin", self.origin)):
            for ax, v in zip("xyz", vals):
                rec[f"{name}_{ax}"] = v
        rec["direction"] = " ".join(f"{v:g}" for v in self.direction)
        return rec


def _words(values) -> str:
    return " ".join(f"{float(v):.10g}" for v in values)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in str(text).split())


@dataclass(frozen=True)
class VisitPose:
    """Map from an image's physical space to anatomy (baseline CT) space (module docstring).

    Attributes
    ----------
    rotation : 9 floats
        Row-major 3×3 rotation ``R``.
    translation : 3 floats, mm
        ``t`` of the rigid part ``x = R @ p + t``.
    breathing_mm : 3 floats, mm
        Displacement ``a`` at the bump's centre (anatomy space).
    breathing_center : 3 floats, mm
        Centre ``c`` of the bump, anatomy space.
    breathing_sigma_mm : float
        Width ``s`` of the bump.
    """

    rotation: tuple[float, ...] = IDENTITY3
    translation: Vec3 = (0.0, 0.0, 0.0)
    breathing_mm: Vec3 = (0.0, 0.0, 0.0)
    breathing_center: Vec3 = (0.0, 0.0, 0.0)
    breathing_sigma_mm: float = 80.0

    @property
    def is_rigid_identity(self) -> bool:
        return tuple(self.rotation) == IDENTITY3 and tuple(self.translation) == (0.0, 0.0, 0.0)

    @property
    def has_breathing(self) -> bool:
        return any(v != 0.0 for v in self.breathing_mm)

    @property
    def is_identity(self) -> bool:
        return self.is_rigid_identity and not self.has_breathing

    @property
    def max_displacement_mm(self) -> float:
        """Largest displacement of the breathing part (its value at the bump centre)."""
        return float(np.linalg.norm(self.breathing_mm))

    @property
    def R(self) -> np.ndarray:
        return np.asarray(self.rotation, float).reshape(3, 3)

    def breathing(self, x: np.ndarray) -> np.ndarray:
        """Displacement of the breathing bump at anatomy-side points ``x`` (..., 3), mm."""
        d2 = ((np.asarray(x, float) - np.asarray(self.breathing_center)) ** 2).sum(-1)
        return np.exp(-d2 / (2 * self.breathing_sigma_mm ** 2))[..., None] * np.asarray(self.breathing_mm)

    def rigid_apply(self, xyz: np.ndarray) -> np.ndarray:
        return np.asarray(xyz, float) @ self.R.T + np.asarray(self.translation)

    def apply(self, xyz: np.ndarray) -> np.ndarray:
        """Image physical points (..., 3) → anatomy points."""
        x = self.rigid_apply(xyz)
        return x + self.breathing(x) if self.has_breathing else x

    def inverse_apply(self, xyz: np.ndarray, iterations: int = 30) -> np.ndarray:
        """Anatomy points (..., 3) → image physical points. The breathing part is inverted
        by fixed-point iteration ``x = q - u(x)``: a contraction (strain ≪ 1), converged to
        far below a micrometre."""
        q = np.asarray(xyz, float)
        x = q.copy()
        if self.has_breathing:
            for _ in range(iterations):
                x = q - self.breathing(x)
        return (x - np.asarray(self.translation)) @ self.R

    def compose_rigid(self, inner_rotation: np.ndarray, inner_translation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rigid part of ``self ∘ inner``: (R_self @ R_in, R_self @ t_in + t_self)."""
        return self.R @ inner_rotation, self.R @ inner_translation + np.asarray(self.translation)

    def as_record(self) -> dict[str, str | float]:
        return {"pose_rotation": _words(self.rotation), "pose_translation": _words(self.translation),
                "pose_breathing_mm": _words(self.breathing_mm),
                "pose_breathing_center": _words(self.breathing_center),
                "pose_breathing_sigma_mm": float(self.breathing_sigma_mm)}

    @classmethod
    def from_record(cls, rec) -> VisitPose:
        """Rebuild a pose from a ``truth/images.csv`` row (mapping or namedtuple)."""
        get = rec.get if hasattr(rec, "get") else lambda k, d=None: getattr(rec, k, d)
        return cls(rotation=_floats(get("pose_rotation")), translation=_floats(get("pose_translation")),
                   breathing_mm=_floats(get("pose_breathing_mm", "0 0 0")),
                   breathing_center=_floats(get("pose_breathing_center", "0 0 0")),
                   breathing_sigma_mm=float(get("pose_breathing_sigma_mm", 80.0)))


@dataclass(frozen=True)
class ImageSpec:
    """One image to render: which, where on disk, and its geometry."""

    timepoint: str
    modality: str
    grid: ImageGrid
    pose: VisitPose = field(default_factory=VisitPose)
    present: bool = True  # False: a missing image (no file, no row in images.csv)
    path: str = field(kw_only=True)  # relative to the cohort folder (image_relpath)


def image_relpath(patient_id: str, timepoint: str, modality: str, *, compressed: bool) -> str:
    """Where one image is written: ``images/<patient>/<timepoint>_<modality>.nii`` (``.nii.gz``
    when ``compressed``)."""
    return f"images/{patient_id}/{timepoint}_{modality}.nii{'.gz' if compressed else ''}"


def build_grid(center_mm: np.ndarray, fov_mm, spacing_mm, jitter_mm: float, rng: np.random.Generator,
               direction: tuple[float, ...] = IDENTITY3) -> ImageGrid:
    """The grid of one image: ``fov_mm`` around ``center_mm`` (physical) at ``spacing_mm``,
    its centre shifted uniformly by ±``jitter_mm`` per axis so grids never coincide.
    ``direction`` may flip axes: the origin is then the voxel at the flipped corner."""
    spacing = np.asarray(spacing_mm, float)
    size = np.maximum(np.round(np.asarray(fov_mm, float) / spacing).astype(int), 1)
    jitter = rng.uniform(-jitter_mm, jitter_mm, 3)
    d = np.asarray(direction, float).reshape(3, 3)
    half = d @ ((size - 1) * spacing / 2)  # physical offset from the first voxel to the centre
    origin = np.round(np.asarray(center_mm) + jitter - half, 3)
    return ImageGrid(size=tuple(int(s) for s in size), spacing=tuple(float(s) for s in spacing),
                     origin=tuple(float(o) for o in origin), direction=tuple(float(v) for v in direction))


def random_rotation(max_deg: float, rng: np.random.Generator) -> np.ndarray:
    """A rotation about a uniformly random axis by an angle uniform in [0, max_deg]."""
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.uniform(0.0, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k  # Rodrigues


def random_vector(max_norm: float, rng: np.random.Generator) -> np.ndarray:
    """A vector uniform in the ball of radius ``max_norm``."""
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v) * max_norm * rng.uniform() ** (1 / 3)


def rigid_about(rotation: np.ndarray, shift: np.ndarray, center: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) of ``x = R (p - c) + c + shift``: a rotation about ``center`` (not the far-away
    physical origin), then a shift."""
    return rotation, np.asarray(center) + np.asarray(shift) - rotation @ np.asarray(center)


def rotation_angle_deg(rotation) -> float:
    r = np.asarray(rotation, float).reshape(3, 3)
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))))


def _index_affine(grid: ImageGrid, pose: VisitPose) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) with rigid-mapped coordinates ``x = A @ ijk + b`` of voxel index ``ijk``."""
    return pose.R @ grid.matrix, pose.R @ np.asarray(grid.origin) + np.asarray(pose.translation)


class VoxelCoordinates:
    """Anatomy-space coordinates (X, Y, Z) of the voxels of ``grid`` inside ``box`` (slices in
    z, y, x order; default the whole grid), produced one z-slab at a time so that a renderer's
    float32 temporaries stay small enough for the CPU cache.

    Identity pose on a grid with diagonal (LPS or flipped) axes: three 1-D vectors (cheap).
    Otherwise full arrays, each built from a precomputed (y, x) plane plus a z vector (one
    addition per voxel and coordinate), then moved by the breathing bump. Every voxel's value is
    computed by the same float32 operations whatever the slab, so slabs of any thickness give
    identical coordinates.
    """

    def __init__(self, grid: ImageGrid, pose: VisitPose, box: tuple[slice, slice, slice] | None = None):
        if box is None:
            box = tuple(slice(0, n) for n in reversed(grid.size))
        kz, jy, ix = (np.arange(s.start, s.stop, dtype=np.float64) for s in box)
        self.shape = (len(kz), len(jy), len(ix))
        self.pose = pose
        A, b = _index_affine(grid, pose)
        self.separable = pose.is_identity and np.count_nonzero(A - np.diag(np.diag(A))) == 0
        if self.separable and grid.axis_aligned:
            self._axes = ((b[0] + A[0, 0] * ix).astype(np.float32)[None, None, :],
                          (b[1] + A[1, 1] * jy).astype(np.float32)[None, :, None],
                          (b[2] + A[2, 2] * kz).astype(np.float32)[:, None, None])
            return
        if self.separable:
            # flipped axes: the full path's terms off the diagonal are zeros, so these vectors
            # hold its values exactly (y and z: the offset and the step rounded apart, as there)
            self._axes = ((b[0] + A[0, 0] * ix).astype(np.float32)[None, None, :],
                          np.float32(b[1]) + (A[1, 1] * jy).astype(np.float32)[None, :, None],
                          np.float32(b[2]) + (A[2, 2] * kz).astype(np.float32)[:, None, None])
            return
        self._planes = [(b[r] + A[r, 0] * ix).astype(np.float32)[None, None, :]
                        + (A[r, 1] * jy).astype(np.float32)[None, :, None] for r in range(3)]
        self._z = [(A[r, 2] * kz).astype(np.float32)[:, None, None] for r in range(3)]

    def slab(self, z0: int, z1: int):
        """(X, Y, Z) of the box's z-slab [z0, z1) (box-local indices), float32, broadcastable
        to the slab's (z, y, x) shape."""
        if self.separable:
            x, y, z = self._axes
            return x, y, z[z0:z1]
        coords = [plane + z[z0:z1] for plane, z in zip(self._planes, self._z)]
        pose = self.pose
        if pose.has_breathing:
            c = np.asarray(pose.breathing_center, np.float32)
            d2 = (coords[0] - c[0]) ** 2
            d2 += (coords[1] - c[1]) ** 2
            d2 += (coords[2] - c[2]) ** 2
            g = np.exp(d2 * np.float32(-0.5 / pose.breathing_sigma_mm ** 2))
            for r in range(3):
                if pose.breathing_mm[r] != 0.0:
                    coords[r] += np.float32(pose.breathing_mm[r]) * g
        return tuple(coords)


def voxel_anatomy_coords(grid: ImageGrid, pose: VisitPose, box: tuple[slice, slice, slice] | None = None):
    """Anatomy-space coordinates (X, Y, Z) of the voxels of ``grid`` inside ``box``
    (slices in z, y, x order), as float32 arrays broadcastable to the box's (z, y, x) shape
    (:class:`VoxelCoordinates` in one slab)."""
    coords = VoxelCoordinates(grid, pose, box)
    return coords.slab(0, coords.shape[0])


def anatomy_box_to_slices(grid: ImageGrid, pose: VisitPose, lo: np.ndarray, hi: np.ndarray):
    """Voxel slices (z, y, x) of ``grid`` covering the anatomy-space box [lo, hi];
    ``None`` when the box misses the grid. The box is widened by the largest breathing
    displacement, so the inverse of the bump can only move points inside it."""
    pad = pose.max_displacement_mm
    lo, hi = np.asarray(lo, float) - pad, np.asarray(hi, float) + pad
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    rigid_inv = (corners - np.asarray(pose.translation)) @ pose.R
    idx = grid.world_to_index(rigid_inv)
    start = np.maximum(np.floor(idx.min(axis=0)).astype(int), 0)
    stop = np.minimum(np.ceil(idx.max(axis=0)).astype(int) + 1, np.asarray(grid.size))
    if np.any(stop <= start):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(reversed(start), reversed(stop)))


def true_transform(pose: VisitPose, reference: sitk.Image, spacing_mm: float = 4.0, *,
                   to_image: bool = True) -> sitk.Transform:
    """The true transform of ``pose`` as a SimpleITK transform.

    ``to_image`` (default): maps anatomy (baseline CT) points to the image's physical points,
    the convention of a registration with the baseline CT as fixed image and of
    ``patches.resample_patch``; ``reference`` is then an image in baseline space (the region
    the transform is needed over). ``to_image=False``: the inverse, image points to anatomy
    points (to resample a baseline-space mask onto the image; ``reference`` = the image).

    A rigid pose gives an exact :class:`sitk.AffineTransform`; a breathing pose a
    :class:`sitk.DisplacementFieldTransform` sampled every ``spacing_mm`` over ``reference``'s
    extent plus 20 mm, whose linear interpolation errs by well under 0.1 mm.
    """
    rot = pose.R.T if to_image else pose.R
    shift = -pose.R.T @ np.asarray(pose.translation) if to_image else np.asarray(pose.translation)
    rigid = sitk.AffineTransform(3)
    rigid.SetMatrix(tuple(rot.ravel()))
    rigid.SetTranslation(tuple(shift))
    if not pose.has_breathing:
        return rigid
    size_in = reference.GetSize()
    corners = np.array([reference.TransformContinuousIndexToPhysicalPoint([c * (n - 1) for c, n in zip(k, size_in)])
                        for k in np.ndindex(2, 2, 2)])
    lo = corners.min(axis=0) - 20.0
    hi = corners.max(axis=0) + 20.0
    size = np.ceil((hi - lo) / spacing_mm).astype(int) + 1
    axes = [lo[a] + np.arange(size[a]) * spacing_mm for a in range(3)]
    Z, Y, X = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    q = np.stack([X, Y, Z], axis=-1)
    disp = (pose.inverse_apply(q) if to_image else pose.apply(q)) - q
    field = sitk.GetImageFromArray(disp.astype(np.float64), isVector=True)
    field.SetOrigin(tuple(lo))
    field.SetSpacing((spacing_mm,) * 3)
    return sitk.DisplacementFieldTransform(field)


def load_true_poses(cohort_root) -> dict[tuple[str, str, str], VisitPose]:
    """(patient_id, timepoint, modality) → true pose, from a synthetic cohort's ``truth/images.csv``."""
    table = pd.read_csv(f"{cohort_root}/truth/images.csv", dtype={"patient_id": str})
    return {(r.patient_id, r.timepoint, r.modality): VisitPose.from_record(r) for r in table.itertuples()}

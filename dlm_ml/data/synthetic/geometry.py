"""Image grids and the mapping from an image's voxels to the patient's anatomy.

All geometry of one image lives in :class:`ImageGrid` (its voxel lattice in the
image's physical space) and :class:`VisitPose` (image physical space → anatomy
space = baseline CT physical space). In this version every pose is the identity
and every direction axis-aligned; per-visit rigid motion, breathing deformation
or oblique directions only need a non-identity ``VisitPose`` / ``direction``:
:func:`voxel_anatomy_coords` then returns full coordinate arrays instead of
broadcastable axis vectors, and the renderers, which take broadcastable arrays,
are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

IDENTITY3 = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


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


@dataclass(frozen=True)
class VisitPose:
    """Rigid map from an image's physical space to anatomy (baseline CT) space:
    ``anatomy = rotation @ physical + translation``. Identity in this version."""

    rotation: tuple[float, ...] = IDENTITY3
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def is_identity(self) -> bool:
        return tuple(self.rotation) == IDENTITY3 and tuple(self.translation) == (0.0, 0.0, 0.0)

    def apply(self, xyz: np.ndarray) -> np.ndarray:
        return np.asarray(xyz, float) @ np.asarray(self.rotation).reshape(3, 3).T + np.asarray(self.translation)

    def inverse_apply(self, xyz: np.ndarray) -> np.ndarray:
        r = np.asarray(self.rotation).reshape(3, 3)
        return (np.asarray(xyz, float) - np.asarray(self.translation)) @ r

    def as_record(self) -> dict[str, str]:
        return {"pose_rotation": " ".join(f"{v:g}" for v in self.rotation),
                "pose_translation": " ".join(f"{v:g}" for v in self.translation)}


@dataclass(frozen=True)
class ImageSpec:
    """One image to render: which, where on disk, and its geometry."""

    timepoint: str
    modality: str
    grid: ImageGrid
    pose: VisitPose = field(default_factory=VisitPose)
    present: bool = True  # False: a missing image (no file, no row in images.csv)


def image_relpath(patient_id: str, timepoint: str, modality: str) -> str:
    return f"images/{patient_id}/{timepoint}_{modality}.nii.gz"


def build_grid(center_mm: np.ndarray, fov_mm, spacing_mm, jitter_mm: float, rng: np.random.Generator) -> ImageGrid:
    """The grid of one image: ``fov_mm`` around ``center_mm`` at ``spacing_mm``, its
    origin shifted uniformly by ±``jitter_mm`` per axis so grids never coincide."""
    spacing = np.asarray(spacing_mm, float)
    size = np.maximum(np.round(np.asarray(fov_mm, float) / spacing).astype(int), 1)
    extent = (size - 1) * spacing
    jitter = rng.uniform(-jitter_mm, jitter_mm, 3)
    origin = np.round(np.asarray(center_mm) - extent / 2 + jitter, 3)
    return ImageGrid(size=tuple(int(s) for s in size), spacing=tuple(float(s) for s in spacing),
                     origin=tuple(float(o) for o in origin))


def voxel_anatomy_coords(grid: ImageGrid, pose: VisitPose, box: tuple[slice, slice, slice] | None = None):
    """Anatomy-space coordinates (X, Y, Z) of the voxels of ``grid`` inside ``box``
    (slices in z, y, x order), as arrays broadcastable to the box's (z, y, x) shape.

    Axis-aligned grid and identity pose: three 1-D vectors (cheap). Otherwise full arrays.
    """
    if box is None:
        box = tuple(slice(0, n) for n in reversed(grid.size))
    kz, jy, ix = (np.arange(s.start, s.stop) for s in box)
    if grid.axis_aligned and pose.is_identity:
        x = (grid.origin[0] + ix * grid.spacing[0]).astype(np.float32)
        y = (grid.origin[1] + jy * grid.spacing[1]).astype(np.float32)
        z = (grid.origin[2] + kz * grid.spacing[2]).astype(np.float32)
        return x[None, None, :], y[None, :, None], z[:, None, None]
    K, J, I = np.meshgrid(kz, jy, ix, indexing="ij")
    pts = grid.index_to_world(np.stack([I, J, K], axis=-1))
    pts = pose.apply(pts).astype(np.float32)
    return pts[..., 0], pts[..., 1], pts[..., 2]


def anatomy_box_to_slices(grid: ImageGrid, pose: VisitPose, lo: np.ndarray, hi: np.ndarray):
    """Voxel slices (z, y, x) of ``grid`` covering the anatomy-space box [lo, hi];
    ``None`` when the box misses the grid."""
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    idx = grid.world_to_index(pose.inverse_apply(corners))
    start = np.maximum(np.floor(idx.min(axis=0)).astype(int), 0)
    stop = np.minimum(np.ceil(idx.max(axis=0)).astype(int) + 1, np.asarray(grid.size))
    if np.any(stop <= start):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(reversed(start), reversed(stop)))

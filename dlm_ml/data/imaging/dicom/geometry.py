"""Image grids in SimpleITK conventions (x, y, z order; LPS mm), and the slice axes of
ImageOrientationPatient."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class Geometry:
    """Image grid in SimpleITK conventions (x, y, z order; LPS mm).

    ``direction`` is the row-major 3×3 matrix whose columns are the i, j, k axes.
    """

    size: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: tuple[float, ...]

    def matches(self, other: Geometry, tol_mm: float = 1e-2, tol_dir: float = 1e-4) -> bool:
        """Same grid within tolerances (origin and spacing in mm, direction cosines)."""
        return (
            self.size == other.size
            and np.allclose(self.spacing_mm, other.spacing_mm, atol=tol_mm * 0.1)
            and np.allclose(self.origin_mm, other.origin_mm, atol=tol_mm)
            and np.allclose(self.direction, other.direction, atol=tol_dir)
        )


def image_geometry(image: sitk.Image) -> Geometry:
    """Geometry of a 3-D SimpleITK image."""
    return Geometry(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                    tuple(image.GetDirection()))



def orthonormal_axes(orientation: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and normal unit vectors (3,) from ImageOrientationPatient (6,).

    Scanners round the cosines, so row·col is often ~1e-5 instead of 0. Like
    ITK/GDCM (and hence NRRD/NIfTI written from them), the column cosine and the
    normal are kept and the row is recomputed as column × normal, so grids made
    here equal those of other tools to machine precision.
    """
    row = np.asarray(orientation[:3], float)
    col = np.asarray(orientation[3:], float)
    col = col / np.linalg.norm(col)
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    row = np.cross(col, normal)
    row /= np.linalg.norm(row)
    return row, col, normal

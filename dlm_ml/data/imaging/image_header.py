"""Image geometry without voxels, for validating every image of a cohort cheaply.

The header pass refuses what a header can show (:func:`dlm_ml.data.imaging.integrity.read_checked_header`):
a vector image, a size over the limits, voxel data shorter than declared. Non-finite voxels
need the voxels; the first full read (:func:`~dlm_ml.data.imaging.imageio.read_image`) refuses them.
"""

from __future__ import annotations

import os
from pathlib import Path

import SimpleITK as sitk

from dlm_ml.data.imaging.imageio import read_image
from dlm_ml.data.imaging.integrity import read_checked_header

# Formats whose header SimpleITK reads without the voxels.
_HEADER_SUFFIXES = (".nii", ".gz", ".nrrd", ".nhdr", ".mha", ".mhd")


class ImageHeader:
    """Size, spacing, origin and direction of a 3-D image, with the physical ↔ index mapping."""

    def __init__(self, size, spacing, origin, direction):
        self._geometry = sitk.Image([1] * len(size), sitk.sitkUInt8)
        self._geometry.SetSpacing(spacing)
        self._geometry.SetOrigin(origin)
        self._geometry.SetDirection(direction)
        self._size = tuple(int(s) for s in size)

    def GetSize(self):
        return self._size

    def GetSpacing(self):
        return self._geometry.GetSpacing()

    def GetOrigin(self):
        return self._geometry.GetOrigin()

    def GetDirection(self):
        return self._geometry.GetDirection()

    def TransformPhysicalPointToContinuousIndex(self, point):
        return self._geometry.TransformPhysicalPointToContinuousIndex(point)


def read_image_header(path: str | os.PathLike) -> ImageHeader:
    """Geometry of the image at ``path``; reads only the header for NIfTI/NRRD/MHA files,
    the whole image otherwise (DICOM folders, zips).

    Raises
    ------
    ValueError
        Unreadable, or not 3-D; :class:`~dlm_ml.data.imaging.integrity.ImageIntegrityError`
        (every reason at once) for a vector image, a size over the limits or truncated data.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    if path.is_file() and path.suffix.lower() in _HEADER_SUFFIXES:
        reader = read_checked_header(path)
        if reader.GetDimension() != 3:
            raise ValueError(f"image {path} has {reader.GetDimension()} dimensions; a 3-D volume is required")
        return ImageHeader(reader.GetSize(), reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())
    image = read_image(path)
    if image.GetDimension() != 3:
        raise ValueError(f"image {path} has {image.GetDimension()} dimensions; a 3-D volume is required")
    return ImageHeader(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())

"""Reading and writing images with SimpleITK."""

from __future__ import annotations

import os
from pathlib import Path

import SimpleITK as sitk


def read_image(path: str | os.PathLike) -> sitk.Image:
    """Read one image volume (NIfTI, NRRD, MHA) and return it in LPS physical space."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise ValueError(f"cannot read image {path}: {err}") from err


def read_image_header(path: str | os.PathLike):
    """Return an object with the image geometry (size, spacing, origin, direction and
    ``TransformPhysicalPointToContinuousIndex``) without reading voxels where the format
    allows it. Used by cohort validation, which opens every image."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    if path.is_file() and path.suffix.lower() not in (".zip", ".dcm"):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError as err:
            raise ValueError(f"cannot read image header {path}: {err}") from err
        if reader.GetDimension() != 3:
            raise ValueError(f"image {path} has {reader.GetDimension()} dimensions; a 3-D volume is required")
        return _Header(reader.GetSize(), reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())
    image = read_image(path)
    return _Header(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())


class _Header:
    """Geometry of an image without its voxels."""

    def __init__(self, size, spacing, origin, direction):
        self._image = sitk.Image([1] * len(size), sitk.sitkUInt8)
        self._image.SetSpacing(spacing)
        self._image.SetOrigin(origin)
        self._image.SetDirection(direction)
        self._size = tuple(int(s) for s in size)

    def GetSize(self):
        return self._size

    def GetSpacing(self):
        return self._image.GetSpacing()

    def GetOrigin(self):
        return self._image.GetOrigin()

    def GetDirection(self):
        return self._image.GetDirection()

    def TransformPhysicalPointToContinuousIndex(self, point):
        return self._image.TransformPhysicalPointToContinuousIndex(point)


def write_image(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> None:
    """Write ``image`` atomically: to a temporary name beside ``path``, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    tmp = path.with_name(f".{path.name[: -len(suffix)] if suffix else path.name}.tmp{os.getpid()}{suffix}")
    sitk.WriteImage(image, str(tmp), useCompression=compress)
    os.replace(tmp, path)

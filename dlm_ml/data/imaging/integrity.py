"""Refusing a broken image file before its voxels are used.

The readers are lenient where a cohort must not be: ITK's NIfTI reader fills the voxels
missing from a truncated ``.nii`` / ``.nii.gz`` with zeros and turns NaN and infinite voxels
into 0, both without a word; NRRD and MetaImage keep NaN, which then reaches the patches and
the loss. A vector-valued image, or a header declaring an absurd size, is read until something
far downstream fails. This module states what an image file must be:

* :func:`shape_problems`: one component per voxel, at most :data:`MAX_AXIS_VOXELS` along any
  axis and :data:`MAX_VOXELS_PER_IMAGE` in all (from the header alone);
* :func:`stored_length_problem`: the stored voxel data is as long as the header declares
  (NIfTI, NRRD, MetaImage; from file sizes and, for gzip, the stream's trailer);
* :func:`nonfinite_problem`: every voxel is finite (only a full read can tell).

:func:`read_checked_header` applies the first two (cohort validation: header only);
:func:`dlm_ml.data.imaging.imageio.read_image` applies all three to every full read.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from dlm_ml.data.imaging.stored_data import StoredData, count_gzip_bytes, gzip_trailer_size, stored_data

#: Most voxels (all axes together) an image may declare: 2^30 (1024³; a 4 GiB float32 volume),
#: about 7× a 512 × 512 × 600 abdominal CT. A larger header is a corrupt or foreign file, and
#: reading it would exhaust memory in a worker rather than fail with the file's name.
MAX_VOXELS_PER_IMAGE = 2 ** 30

#: Most voxels along one axis: 16384 (8 m at 0.5 mm). No CT or MR axis comes near it.
MAX_AXIS_VOXELS = 16384


class ImageIntegrityError(ValueError):
    """An image file that must not be used: ``problems`` says every reason, ``path`` which file."""

    def __init__(self, path: str | os.PathLike, problems: list[str], where: str = ""):
        self.path = Path(path)
        self.problems = list(problems)
        self.where = where  # whose image, when the caller knows: "patient P0001, presurgery adc"
        super().__init__((f"{where}: " if where else "") + f"image {path}: " + "; ".join(self.problems))

    def __reduce__(self):
        # Raised in pool workers (registration, patches): it must cross back to the parent intact.
        return type(self), (self.path, self.problems, self.where)


def shape_problems(size, n_components: int) -> list[str]:
    """What is wrong with a declared voxel grid ``size`` (x, y, z[, t]) of ``n_components`` per
    voxel; empty when nothing is."""
    problems = []
    if n_components != 1:
        problems.append(f"{n_components} components per voxel (a vector or colour image); "
                        "a single-component (scalar) volume is required")
    size = [int(s) for s in size]
    if any(s < 1 for s in size):
        problems.append(f"header declares an empty axis (size {tuple(size)})")
    too_long = [s for s in size if s > MAX_AXIS_VOXELS]
    if too_long:
        problems.append(f"header declares {max(too_long)} voxels along an axis (size {tuple(size)}); "
                        f"at most {MAX_AXIS_VOXELS} (MAX_AXIS_VOXELS) are accepted")
    n = math.prod(size)
    if n > MAX_VOXELS_PER_IMAGE:
        problems.append(f"header declares {n:.3g} voxels; at most {MAX_VOXELS_PER_IMAGE} "
                        "(MAX_VOXELS_PER_IMAGE) are accepted")
    return problems


def stored_length_problem(path: str | os.PathLike, layout: StoredData | None = None) -> str | None:
    """Whether the file (or its detached data file) holds fewer voxel bytes than its header
    declares; ``None`` when it holds enough or the format is not one this module parses
    (DICOM: each slice is its own file; bzip2/ASCII NRRD: the reader itself fails).

    Uncompressed data is judged by file size. A gzip stream is judged by its trailer (ISIZE,
    the uncompressed length modulo 2^32): when it equals the declared length the file is whole
    (a truncated stream ends in arbitrary compressed bytes, which match by chance with
    probability 2^-32); otherwise the stream is decompressed once to count exactly, so a
    multi-member stream (bgzip, pigz -i) or a file above 4 GiB is never refused wrongly.
    """
    layout = layout if layout is not None else stored_data(path)
    if layout is None:
        return None
    need = layout.skip + layout.declared_bytes
    where = "" if layout.data_path == Path(path) else f" (data file {layout.data_path.name})"
    try:
        file_size = layout.data_path.stat().st_size
    except OSError:
        return f"data file {layout.data_path} not found"
    if layout.compression == "raw":
        have = file_size - layout.start
        if have < need:
            return (f"truncated: the header declares {need} bytes of voxel data, the file holds {max(have, 0)}"
                    f"{where}")
        return None
    if layout.compression == "zlib":
        if layout.compressed_bytes is not None and file_size - layout.start < layout.compressed_bytes:
            return (f"truncated: the header declares {layout.compressed_bytes} bytes of compressed voxel data, "
                    f"the file holds {max(file_size - layout.start, 0)}{where}")
        return None
    if gzip_trailer_size(layout.data_path) == need % 2 ** 32:
        return None
    have, complete = count_gzip_bytes(layout.data_path, layout.start)
    if not complete:
        return (f"truncated: the gzip stream ends early, after {have} of the {need} bytes its header declares"
                f"{where}")
    if have < need:
        return f"truncated: the header declares {need} bytes of voxel data, the gzip stream holds {have}{where}"
    return None


def read_checked_header(path: str | os.PathLike) -> sitk.ImageFileReader:
    """An ``ImageFileReader`` on ``path`` that has read the header only, after checking the
    declared shape and the stored length (every problem at once).

    Raises
    ------
    ValueError
        The header cannot be read (naming ``path``);
        :class:`ImageIntegrityError` for a shape or length problem.
    """
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise ValueError(f"cannot read image header {path}: {err}") from err
    problems = shape_problems(reader.GetSize(), reader.GetNumberOfComponents())
    short = stored_length_problem(path)
    if short:
        problems.append(short)
    if problems:
        raise ImageIntegrityError(path, problems)
    return reader


def nonfinite_problem(voxels: np.ndarray) -> str | None:
    """How many voxels of ``voxels`` (array in (…, z, y, x) order) are NaN or infinite, and the
    (x, y, z) index of the first; ``None`` when all are finite (always, for integer types)."""
    if voxels.dtype.kind not in "fc":
        return None
    # A float64 sum is finite exactly when every float32 voxel is (no sum of finite float32
    # values overflows float64), and costs no voxel-sized boolean array; only a non-finite sum
    # (or a float64 volume overflowing) pays for the exact count below.
    if voxels.dtype.kind == "f" and math.isfinite(np.sum(voxels, dtype=np.float64)):
        return None
    bad = ~np.isfinite(voxels)
    n = int(np.count_nonzero(bad))
    if n == 0:
        return None
    first = np.unravel_index(int(np.argmax(bad.ravel())), voxels.shape)[::-1]
    return (f"{n} voxel(s) are not finite (NaN or infinite), the first at voxel index "
            f"{tuple(int(i) for i in first)} (x, y, z); fill or mask them before use")


def check_image(image: sitk.Image, path: str | os.PathLike) -> None:
    """Refuse an already read ``image`` that is vector-valued, over the size limits or holds a
    non-finite voxel (:class:`ImageIntegrityError` naming ``path``)."""
    problems = shape_problems(image.GetSize(), image.GetNumberOfComponentsPerPixel())
    if not problems:
        nonfinite = nonfinite_problem(sitk.GetArrayViewFromImage(image))
        if nonfinite:
            problems.append(nonfinite)
    if problems:
        raise ImageIntegrityError(path, problems)

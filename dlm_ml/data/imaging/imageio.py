"""Reading and writing images with SimpleITK.

:func:`read_image` accepts

* a NIfTI / NRRD / MHA / MHD file (read directly by SimpleITK: the fast path,
  no DICOM machinery is imported);
* a folder holding one DICOM series (any nesting, files with or without
  ``.dcm``), or a ``.zip`` of one series;
* a single DICOM file.

Every image comes back in LPS physical space (SimpleITK converts NIfTI's RAS,
LAS-stored rows, oblique qform/sform and big-endian data on reading). DICOM
goes through :mod:`dlm_ml.data.imaging.dicom`: geometry from the slice positions
(thickness ≠ spacing handled), HU rescale applied, CT padding set to
:data:`dlm_ml.data.imaging.dicom.CT_OUTSIDE_FOV_HU` (-1024 HU, outside the field of
view, not air), and a folder holding several series or volumes (several
b-values, gradient directions, phases) is refused with a message saying what
it holds rather than read as one wrong volume.
"""

from __future__ import annotations

import os
from pathlib import Path

import SimpleITK as sitk

from dlm_ml.utils.atomic import atomic_path

# Files SimpleITK reads directly; checked before any DICOM probing.
PLAIN_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr", ".img", ".img.gz")


def read_image(path: str | os.PathLike) -> sitk.Image:
    """Read one image volume (NIfTI, NRRD, MHA, DICOM folder/zip/file) in LPS space.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Unreadable input; for DICOM, :class:`dlm_ml.data.imaging.dicom.DicomError`
        (a ``ValueError``) naming the file or folder, and
        :class:`~dlm_ml.data.imaging.dicom.AmbiguousDicomError` when a folder holds
        more than one series or volume.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    name = path.name.lower()
    if path.is_file() and name.endswith(PLAIN_SUFFIXES):
        try:
            return sitk.ReadImage(str(path))
        except RuntimeError as err:
            raise ValueError(f"cannot read image {path}: {err}") from err
    # Deferred: importing the DICOM package (pydicom) takes about 0.5 s, which the NIfTI path
    # does not need (checked by tests/data/imaging/test_imageio.py).
    from dlm_ml.data.imaging import dicom  # noqa: PLC0415

    if path.is_dir() or name.endswith(".zip"):
        return dicom.read_dicom_series(path)
    if dicom.is_dicom_file(path):
        return dicom.read_dicom_file(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise ValueError(f"cannot read image {path}: not a known image format ({err})") from err


def write_image(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> None:
    """Write ``image`` atomically (:func:`dlm_ml.utils.atomic.atomic_path`): an interrupted write
    never leaves a file under the final name. The format follows the suffix (``.nii.gz``, ``.nrrd``)."""
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)

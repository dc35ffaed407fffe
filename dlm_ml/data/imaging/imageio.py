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

Every read is checked (:mod:`dlm_ml.data.imaging.integrity`): a vector-valued image, a header
over the size limits, voxel data shorter than the header declares and non-finite voxels are
refused with the file's name, never zero-filled or passed on. A float NIfTI's voxels are read
here as stored (one decompression), because ITK's NIfTI reader turns NaN into 0 and zero-fills
a truncated file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import SimpleITK as sitk

from dlm_ml.data.imaging.integrity import ImageIntegrityError, check_image, nonfinite_problem, read_checked_header
from dlm_ml.data.imaging.stored_data import read_nifti_float_voxels, stored_data
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
        more than one series or volume;
        :class:`~dlm_ml.data.imaging.integrity.ImageIntegrityError` (a ``ValueError``) naming
        the file and every reason, for a vector image, a size over the limits, truncated
        voxel data or non-finite voxels (how many, and the index of the first).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    name = path.name.lower()
    if path.is_file() and name.endswith(PLAIN_SUFFIXES):
        return _read_file(path)
    # Deferred: importing the DICOM package (pydicom) takes about 0.5 s, which the NIfTI path
    # does not need (checked by tests/data/imaging/test_imageio.py).
    from dlm_ml.data.imaging import dicom  # noqa: PLC0415

    if path.is_dir() or name.endswith(".zip"):
        image = dicom.read_dicom_series(path)
    elif dicom.is_dicom_file(path):
        image = dicom.read_dicom_file(path)
    else:
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as err:
            raise ValueError(f"cannot read image {path}: not a known image format ({err})") from err
    check_image(image, path)
    return image


def _read_file(path: Path) -> sitk.Image:
    """A NIfTI / NRRD / MetaImage file, checked: header (shape, stored length), then voxels."""
    reader = read_checked_header(path)
    layout = stored_data(path)
    if layout is not None and layout.nifti_dtype is not None:
        voxels, found = read_nifti_float_voxels(layout)
        if voxels is None:
            raise ImageIntegrityError(path, [f"truncated: the header declares {layout.skip + layout.declared_bytes} "
                                             f"bytes of voxel data, the file holds {found}"])
        shape = tuple(reversed(reader.GetSize()))  # (…, z, y, x); ITK may drop trailing axes of size 1
        same_grid = math.prod(shape) == voxels.size
        nonfinite = nonfinite_problem(voxels.reshape(shape) if same_grid else voxels)
        if nonfinite:
            raise ImageIntegrityError(path, [nonfinite])
        if same_grid and not layout.nifti_scaled and reader.GetPixelID() == _SITK_FLOAT[voxels.dtype.itemsize]:
            return _image_from_voxels(voxels.reshape(shape), reader)
        # Scaled float data: ITK applies scl_slope/scl_inter; its read (values already checked) is kept.
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    check_image(image, path)
    return image


_SITK_FLOAT = {4: sitk.sitkFloat32, 8: sitk.sitkFloat64}


def _image_from_voxels(voxels, reader: sitk.ImageFileReader) -> sitk.Image:
    """The image ITK's reader would return: ``voxels`` with the geometry (LPS) and metadata
    ITK derived from the header."""
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing(reader.GetSpacing())
    image.SetOrigin(reader.GetOrigin())
    image.SetDirection(reader.GetDirection())
    for key in reader.GetMetaDataKeys():
        image.SetMetaData(key, reader.GetMetaData(key))
    return image


def write_image(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> None:
    """Write ``image`` atomically (:func:`dlm_ml.utils.atomic.atomic_path`): an interrupted write
    never leaves a file under the final name. The format follows the suffix (``.nii.gz``, ``.nrrd``)."""
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)

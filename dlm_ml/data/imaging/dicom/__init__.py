"""DICOM series discovery, splitting, tag reading and volume reading.

A PACS export mixes series, and a single series may hold several volumes
(Siemens writes every b-value of a diffusion acquisition into one series; GE
writes b0 and each gradient direction as repeated stacks). SimpleITK's
``GetGDCMSeriesFileNames`` + ``ImageSeriesReader`` then silently stack all
files into one wrong volume (mixed b-values, bogus slice spacing, flipped
slice axis). This module therefore:

1. reads headers with pydicom (:func:`scan_dicom`), never pixel data;
2. groups files by ``SeriesInstanceUID`` (:func:`group_series`);
3. splits each series into volumes (:func:`split_series`): by orientation and
   matrix size, then by b-value, then, where a slice position still repeats,
   by gradient direction / echo / temporal position / acquisition number or
   finally by acquisition order (instance number);
4. reads one volume (:meth:`DicomVolume.read`) with SimpleITK for the pixels
   (GDCM decodes compressed transfer syntaxes and applies the HU rescale) but
   sets origin, spacing and direction itself from ``ImagePositionPatient`` and
   ``ImageOrientationPatient``, sorted along the slice normal. Slice spacing
   comes from the positions, never from ``SliceThickness`` (they differ for
   gapped or overlapping reconstructions).

:func:`read_dicom_series` refuses (with :class:`AmbiguousDicomError`, naming the
folder and listing what it found) any folder that does not hold exactly one
volume, instead of returning the naive stacked read.

CT padding: CT scanners mark pixels outside the reconstruction field of view
with a padding value (``PixelPaddingValue``, commonly -2000 stored = -3024 HU, or
-3024 / -2048 HU without the tag). Those pixels are *outside the body*, not air.
:func:`replace_ct_padding` sets them to :data:`CT_OUTSIDE_FOV_HU` (-1024 HU) so
that they do not enter intensity statistics as impossible values; the number
of replaced voxels is reported in the importer's sidecar.

b-values (:func:`bvalue_from_dataset`), in order of trust:

1. public ``(0018,9087) DiffusionBValue``;
2. GE private ``(0043,1039)`` first value (GE adds 1e9 on some software
   versions, so the value is taken modulo 1e9); only trusted for EPI series,
   because the same slot holds unrelated integers on non-diffusion GE series;
3. Siemens private ``(0019,100C) B_value``, including the VR OB form
   (``b'400 '``) that anonymisers produce;
4. Philips private ``(2001,1003)`` diffusion b-factor;
5. Siemens ``SequenceName`` such as ``*ep_b400t`` or ``*ep_b1000#2``.

The source used is returned with the value (e.g. ``"siemens_private_0019_100c"``).

Modules, in the order data flows through them: ``tags`` (typed and private tag values,
b-values), ``headers`` (:class:`DicomHeader`, :func:`read_header`), ``scan`` (files under
folders and zips, series), ``geometry`` (grids, slice axes), ``pixels`` (CT padding, pixel type),
``volumes`` (splitting a series, a volume's grid and pixels), ``reading`` (one-volume inputs),
``diffusion`` (b-value sets), ``classify`` (what a series is).
"""

from dlm_ml.data.imaging.dicom.classify import classify_series, contrast_phase
from dlm_ml.data.imaging.dicom.diffusion import DwiSet, dwi_volumes, load_dwi
from dlm_ml.data.imaging.dicom.errors import AmbiguousDicomError, DicomError
from dlm_ml.data.imaging.dicom.geometry import Geometry, image_geometry, orthonormal_axes
from dlm_ml.data.imaging.dicom.headers import (
    SEG_SOP_CLASS,
    DicomHeader,
    header_from_dataset,
    is_dicom_file,
    read_header,
)
from dlm_ml.data.imaging.dicom.pixels import CT_OUTSIDE_FOV_HU, CT_PADDING_THRESHOLD_HU, replace_ct_padding
from dlm_ml.data.imaging.dicom.reading import read_dicom_file, read_dicom_series, volumes_in
from dlm_ml.data.imaging.dicom.scan import ScanResult, extract_zip, group_series, scan_dicom
from dlm_ml.data.imaging.dicom.tags import BVALUE_SOURCES, bvalue_from_dataset
from dlm_ml.data.imaging.dicom.volumes import DicomVolume, describe_series, read_volume, split_series

__all__ = [
    "BVALUE_SOURCES", "CT_OUTSIDE_FOV_HU", "CT_PADDING_THRESHOLD_HU", "SEG_SOP_CLASS", "AmbiguousDicomError",
    "DicomError", "DicomHeader", "DicomVolume", "DwiSet", "Geometry", "ScanResult", "bvalue_from_dataset",
    "classify_series", "contrast_phase", "describe_series", "dwi_volumes", "extract_zip", "group_series",
    "header_from_dataset", "image_geometry", "is_dicom_file", "load_dwi", "orthonormal_axes", "read_dicom_file",
    "read_dicom_series", "read_header", "read_volume", "replace_ct_padding", "scan_dicom", "split_series",
    "volumes_in",
]

"""Pixels of one DICOM volume: read with SimpleITK/GDCM, placed on the header-derived grid.

CT padding: CT scanners mark pixels outside the reconstruction field of view with a
padding value (``PixelPaddingValue``, commonly -2000 stored = -3024 HU, or -3024 / -2048 HU
without the tag). Those pixels are *outside the body*, not air. :func:`replace_ct_padding`
sets them to :data:`CT_OUTSIDE_FOV_HU` (-1024 HU) so that they do not enter intensity
statistics as impossible values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import SimpleITK as sitk

from dlm_ml.data.imaging.dicom.headers import DicomHeader

# Value given to CT voxels outside the reconstructed field of view (HU). Chosen
# equal to the usual air floor so that windowing is unaffected; downstream code
# must not read it as tissue. Documented in docs/importing.md.
CT_OUTSIDE_FOV_HU = -1024
# Anything at or below this (HU) cannot be a patient or air voxel (air is about
# -1000 HU, noise rarely goes below -1200), so it is scanner padding.
CT_PADDING_THRESHOLD_HU = -2000


def replace_ct_padding(
    image: sitk.Image,
    padding_values_hu: Iterable[float] = (),
    padding_ranges_hu: Iterable[tuple[float, float]] = (),
    threshold_hu: float = CT_PADDING_THRESHOLD_HU,
    fill_hu: float = CT_OUTSIDE_FOV_HU,
) -> tuple[sitk.Image, int]:
    """Set CT padding (outside the reconstructed field of view) to ``fill_hu``.

    Padding is any voxel equal to one of ``padding_values_hu`` (the
    PixelPaddingValue tag, rescaled to HU), inside one of ``padding_ranges_hu``
    (PixelPaddingValue..PixelPaddingRangeLimit), or at or below ``threshold_hu``.

    Returns
    -------
    image, n_replaced
        A new image with the same pixel type and geometry, and the voxel count replaced.
    """
    arr = sitk.GetArrayFromImage(image)
    pad = arr <= threshold_hu
    for v in padding_values_hu:
        pad |= arr == v
    for lo, hi in padding_ranges_hu:
        pad |= (arr >= min(lo, hi)) & (arr <= max(lo, hi))
    n = int(pad.sum())
    if n == 0:
        return image, 0
    arr = arr.copy()
    arr[pad] = fill_hu
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    return out, n


def padding_hu(headers: Sequence[DicomHeader]) -> tuple[set[float], set[tuple[float, float]]]:
    values: set[float] = set()
    ranges: set[tuple[float, float]] = set()
    for h in headers:
        if h.padding_value is None:
            continue
        v = h.padding_value * h.rescale_slope + h.rescale_intercept
        if h.padding_range_limit is not None:
            ranges.add((v, h.padding_range_limit * h.rescale_slope + h.rescale_intercept))
        else:
            values.add(v)
    return values, ranges


def to_int16_if_lossless(image: sitk.Image) -> sitk.Image:
    if image.GetPixelID() == sitk.sitkInt16:
        return image
    arr = sitk.GetArrayViewFromImage(image)
    if arr.size and np.all(np.mod(arr, 1) == 0) and arr.min() >= -32768 and arr.max() <= 32767:
        return sitk.Cast(image, sitk.sitkInt16)
    return image

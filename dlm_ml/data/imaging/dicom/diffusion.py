"""Diffusion-weighted volumes of one acquisition, grouped by b-value, for an ADC fit."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from dlm_ml.data.imaging.dicom.errors import DicomError
from dlm_ml.data.imaging.dicom.headers import DicomHeader
from dlm_ml.data.imaging.dicom.reading import maybe_unzipped
from dlm_ml.data.imaging.dicom.scan import group_series, scan_dicom
from dlm_ml.data.imaging.dicom.volumes import DicomVolume, split_series


@dataclass
class DwiSet:
    """Diffusion volumes of one acquisition on one grid.

    ``volumes`` maps b-value (s/mm²) to the list of images acquired at it
    (several for several gradient directions). :meth:`trace` averages them.
    """

    volumes: dict[float, list[sitk.Image]]
    b_value_sources: dict[float, tuple[str, ...]]
    headers: list[DicomHeader]

    @property
    def b_values(self) -> list[float]:
        return sorted(self.volumes)

    def trace(self) -> dict[float, sitk.Image]:
        """Trace-weighted image per b-value: geometric mean over directions.

        The geometric mean makes ADC of the trace equal the mean of the
        directional ADCs (log-linear), i.e. the rotation-invariant mean diffusivity.
        """
        out: dict[float, sitk.Image] = {}
        for b, images in self.volumes.items():
            if len(images) == 1:
                out[b] = sitk.Cast(images[0], sitk.sitkFloat32)
                continue
            arrays = np.stack([sitk.GetArrayFromImage(im).astype(np.float64) for im in images])
            # A direction with zero signal makes the trace zero (noise floor), not NaN.
            positive = np.all(arrays > 0, axis=0)
            logs = np.log(np.where(arrays > 0, arrays, 1.0))
            gm = np.where(positive, np.exp(logs.mean(axis=0)), 0.0)
            img = sitk.GetImageFromArray(gm.astype(np.float32))
            img.CopyInformation(images[0])
            out[b] = img
        return out


def dwi_volumes(headers: Sequence[DicomHeader]) -> list[DicomVolume]:
    """Volumes with a b-value among ``headers`` (any number of series)."""
    out: list[DicomVolume] = []
    for series in group_series(headers).values():
        out.extend(v for v in split_series(series) if v.b_value is not None)
    return out


def load_dwi(source: str | os.PathLike | Sequence[DicomVolume]) -> DwiSet:
    """Read diffusion volumes (a DICOM folder, or volumes from :func:`dwi_volumes`).

    All volumes must share one grid; at least two distinct b-values are needed.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        with maybe_unzipped(path) as folder:
            scan = scan_dicom(folder)
            if scan.problems:
                raise DicomError("; ".join(scan.problems))
            return load_dwi(dwi_volumes(scan.headers))
    volumes = list(source)
    if not volumes:
        raise DicomError("no diffusion volumes (no b-value found in any header)")
    where = volumes[0].folder
    reference = volumes[0].geometry
    for v in volumes[1:]:
        if not v.geometry.matches(reference):
            raise DicomError(f"{where}: diffusion volumes lie on different grids; select one acquisition")
    images: dict[float, list[sitk.Image]] = defaultdict(list)
    sources: dict[float, set[str]] = defaultdict(set)
    headers: list[DicomHeader] = []
    for v in volumes:
        assert v.b_value is not None
        images[float(v.b_value)].append(v.read())
        sources[float(v.b_value)].update(v.b_value_sources)
        headers.extend(v.headers)
    if len(images) < 2:
        raise DicomError(f"{where}: only one b-value ({next(iter(images)):g} s/mm²); ADC needs at least two")
    return DwiSet(dict(images), {b: tuple(sorted(s)) for b, s in sources.items()}, headers)

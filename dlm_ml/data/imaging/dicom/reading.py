"""Reading a folder, zip or file that holds exactly one DICOM image volume."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import SimpleITK as sitk

from dlm_ml.data.imaging.dicom.errors import AmbiguousDicomError, DicomError
from dlm_ml.data.imaging.dicom.headers import SEG_SOP_CLASS, DicomHeader, read_header
from dlm_ml.data.imaging.dicom.scan import extract_zip, group_series, scan_dicom
from dlm_ml.data.imaging.dicom.volumes import DicomVolume, describe_series, split_series


def volumes_in(path: str | os.PathLike,
               zip_workdir: str | os.PathLike | None = None) -> list[tuple[list[DicomHeader], list[DicomVolume]]]:
    """Scan ``path`` and return ``[(series_headers, volumes), ...]`` for image series."""
    scan = scan_dicom(path, zip_workdir=zip_workdir)
    if scan.problems:
        raise DicomError("; ".join(scan.problems))
    out = []
    for headers in group_series(scan.headers).values():
        vols = split_series(headers)
        if vols:
            out.append((headers, vols))
    return out


def read_dicom_series(path: str | os.PathLike) -> sitk.Image:
    """Read a folder (any nesting) or zip holding exactly one DICOM image volume.

    Raises
    ------
    AmbiguousDicomError
        The input holds several series, or one series with several volumes
        (b-values, gradient directions, phases); the message names the input
        and lists what was found. Split it with :func:`split_series`.
    DicomError
        No DICOM image, unreadable files, irregular slices.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"DICOM input not found: {path}")
    with maybe_unzipped(path) as folder:
        series = volumes_in(folder)
        if not series:
            raise DicomError(f"{path}: no DICOM image found")
        n_volumes = sum(len(v) for _, v in series)
        if n_volumes != 1:
            lines = "\n  ".join(describe_series(h, v) for h, v in series)
            what = f"{len(series)} series" if len(series) > 1 else "1 series"
            raise AmbiguousDicomError(
                f"{path} holds {what} with {n_volumes} volumes in all, not one image:\n  {lines}\n"
                "A naive one-volume read would mix them. Point to a single series/volume, or split it "
                "with dlm_ml.data.imaging.dicom.split_series (diffusion: dlm_ml.data.imaging.dicom.load_dwi)."
            )
        return series[0][1][0].read()


@contextlib.contextmanager
def maybe_unzipped(path: Path) -> Iterator[Path]:
    if path.is_file() and path.name.lower().endswith(".zip"):
        with tempfile.TemporaryDirectory(prefix="dlm_ml_zip_") as tmp:
            extract_zip(path, tmp)
            yield Path(tmp)
    else:
        yield path


def read_dicom_file(path: str | os.PathLike) -> sitk.Image:
    """Read a single-file DICOM image (one slice) with header-derived geometry."""
    path = Path(path)
    header = read_header(path)
    if header is None:
        raise DicomError(f"{path}: not a DICOM file")
    if header.sop_class_uid == SEG_SOP_CLASS:
        raise DicomError(f"{path}: is a DICOM SEG; read it with dlm_ml.data.imaging.masks.load_mask")
    vols = split_series([header])
    if not vols:
        raise DicomError(f"{path}: DICOM object without image pixels ({header.modality})")
    return vols[0].read()

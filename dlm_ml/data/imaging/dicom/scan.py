"""Finding DICOM files under folders (zips included) and grouping them into series."""

from __future__ import annotations

import os
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dlm_ml.data.imaging.dicom.errors import DicomError
from dlm_ml.data.imaging.dicom.headers import DicomHeader, read_header
from dlm_ml.utils.progress import progress_bar

_MAX_ZIP_BYTES = 8 * 1024**3  # refuse zip bombs


@dataclass
class ScanResult:
    """Outcome of :func:`scan_dicom`.

    ``origins`` maps each file extracted from a zip archive to the archive's path.
    """

    headers: list[DicomHeader] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    n_not_dicom: int = 0
    origins: dict[Path, Path] = field(default_factory=dict)


def _iter_files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        # Hidden entries are OS clutter (.DS_Store) or our own temporary files.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def extract_zip(zip_path: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Extract the files of ``zip_path`` into ``dest`` under index-based names.

    Member names are not used as paths (no zip-slip, no overlong names); the
    returned paths keep the archive order.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    out: list[Path] = []
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if sum(m.file_size for m in members) > _MAX_ZIP_BYTES:
                raise DicomError(f"{zip_path}: archive expands beyond {_MAX_ZIP_BYTES >> 30} GiB; unzip it first")
            dest.mkdir(parents=True, exist_ok=True)
            for i, member in enumerate(members):
                target = dest / f"{i:06d}.dcm"
                with zf.open(member) as src, open(target, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                out.append(target)
    except zipfile.BadZipFile as err:
        raise DicomError(f"{zip_path}: not a readable zip archive ({err})") from err
    return out


def scan_dicom(
    roots: str | os.PathLike | Iterable[str | os.PathLike],
    zip_workdir: str | os.PathLike | None = None,
    progress: bool = False,
) -> ScanResult:
    """Read the headers of every DICOM file under ``roots`` (any nesting, any extension).

    Parameters
    ----------
    roots
        Folders and/or files.
    zip_workdir
        Where ``.zip`` archives found under ``roots`` are extracted (the caller
        owns and deletes it). ``None`` leaves zip archives alone.
    progress
        Show a tqdm bar over files.
    """
    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]
    files: list[Path] = []
    result = ScanResult()
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"DICOM input not found: {root}")
        for path in _iter_files(root):
            if path.name.lower().endswith(".zip") and zip_workdir is not None:
                try:
                    extracted = extract_zip(path, Path(zip_workdir) / f"zip{len(files):07d}")
                except DicomError as err:
                    result.problems.append(str(err))
                    continue
                files.extend(extracted)
                result.origins.update((p, path) for p in extracted)
            else:
                files.append(path)
    for path in progress_bar(files, enabled=progress, desc="reading DICOM headers", unit="file"):
        try:
            header = read_header(path)
        except DicomError as err:
            result.problems.append(str(err))
            continue
        if header is None:
            result.n_not_dicom += 1
        else:
            result.headers.append(header)
    return result


def group_series(headers: Iterable[DicomHeader]) -> dict[str, list[DicomHeader]]:
    """Group headers by SeriesInstanceUID, ordered by series number."""
    groups: dict[str, list[DicomHeader]] = defaultdict(list)
    for h in headers:
        groups[h.series_uid].append(h)
    order = sorted(groups, key=lambda uid: (groups[uid][0].series_number is None, groups[uid][0].series_number or 0))
    return {uid: groups[uid] for uid in order}

"""Content fingerprint of a cohort folder.

It covers every file in the folder (tables, images, masks; not hidden files, not the
generator's ``truth/``) and, whatever the walk misses, every file the tables name: each
``images.csv`` path and ``lesions.csv`` mask_path, a DICOM folder file by file, through symlinks
(the bytes a reader opens are the bytes hashed).

Hashing every image on every run would cost seconds to minutes on a real cohort,
so file digests are cached by (path, size, mtime); ``verify=True`` rehashes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from dlm_ml.data.cohort import schema
from dlm_ml.utils.atomic import atomic_write_text
from dlm_ml.utils.hashing import file_sha256, payload_digest


def default_cache_dir() -> Path:
    return Path(os.environ.get("DLM_ML_CACHE", Path.home() / ".cache" / "dlm_ml"))


def _cohort_files(root: Path) -> list[Path]:
    """Every file the cohort consists of: tables, images, masks; not the generator's
    hidden truth and not hidden files."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames
                             if not d.startswith(".") and not (rel == Path(".") and d == schema.TRUTH_DIR))
        files += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    return files


def _named_files(root: Path) -> dict[str, Path]:
    """Every existing file the tables name, keyed by the path as written (normalised: the key the
    walk gives a file inside ``root``). A named folder (DICOM series) contributes each file under
    it, symlinks followed once, hidden files left out as in the walk."""
    written: list[str] = []
    for name, col in ((schema.IMAGES_CSV, "path"), (schema.LESIONS_CSV, "mask_path")):
        try:
            table = pd.read_csv(root / name, dtype=str, keep_default_na=False)
        except (OSError, ValueError):
            continue  # an unreadable table is validation's to report; the walk still covers the folder
        if col in table.columns:
            written += [p for p in table[col] if p.strip()]
    files: dict[str, Path] = {}
    for text in dict.fromkeys(written):
        key, path = os.path.normpath(text), root / text
        if path.is_file():
            files[key] = path
        elif path.is_dir():
            seen: set[str] = set()
            for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
                real = os.path.realpath(dirpath)
                if real in seen:  # a symlink cycle
                    dirnames[:] = []
                    continue
                seen.add(real)
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                rel = os.path.relpath(dirpath, path)
                files.update({os.path.normpath(os.path.join(key, rel, f)): Path(dirpath) / f
                              for f in sorted(filenames) if not f.startswith(".")})
    return files


def cohort_file_digests(root: str | Path, *, verify: bool = False,
                        cache_dir: str | Path | None = None) -> dict[str, str]:
    """SHA-256 of every file of the cohort, keyed by path relative to ``root`` (a file named by a
    table outside ``root``, which validation refuses, by the path as written)."""
    root = Path(root).resolve()
    cache_path = Path(cache_dir or default_cache_dir()) / "file_digests.json"
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    digests, changed = {}, False
    files = {str(path.relative_to(root)): path for path in _cohort_files(root)}
    files.update(_named_files(root))
    for rel, path in sorted(files.items()):
        stat = path.stat()
        key = str(path)
        stamp = [stat.st_size, stat.st_mtime_ns]
        entry = cache.get(key)
        if verify or entry is None or entry[:2] != stamp:
            entry = stamp + [file_sha256(path)]
            cache[key] = entry
            changed = True
        digests[rel] = entry[2]
    if changed:
        try:
            atomic_write_text(cache_path, json.dumps(cache))
        except OSError:
            pass  # a read-only home must not stop training; the digests are still exact
    return digests


def fingerprint_from_digests(digests: dict[str, str]) -> str:
    """One full SHA-256 over file names and their digests (provenance keeps the full length)."""
    return payload_digest(digests, short=False)


def cohort_fingerprint(root: str | Path, *, verify: bool = False, cache_dir: str | Path | None = None) -> str:
    """One hash over the cohort's file names and contents."""
    return fingerprint_from_digests(cohort_file_digests(root, verify=verify, cache_dir=cache_dir))


def diff_digests(old: dict[str, str], new: dict[str, str]) -> dict[str, list[str]]:
    """Files added, removed and changed between two digest maps."""
    return {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "changed": sorted(k for k in set(old) & set(new) if old[k] != new[k]),
    }

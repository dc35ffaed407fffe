"""Content fingerprint of a cohort folder.

Hashing every image on every run would cost seconds to minutes on a real cohort,
so file digests are cached by (path, size, mtime); ``verify=True`` rehashes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

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


def cohort_file_digests(root: str | Path, *, verify: bool = False,
                        cache_dir: str | Path | None = None) -> dict[str, str]:
    """SHA-256 of every file of the cohort, keyed by path relative to ``root``."""
    root = Path(root).resolve()
    cache_path = Path(cache_dir or default_cache_dir()) / "file_digests.json"
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    digests, changed = {}, False
    for path in _cohort_files(root):
        stat = path.stat()
        key = str(path)
        stamp = [stat.st_size, stat.st_mtime_ns]
        entry = cache.get(key)
        if verify or entry is None or entry[:2] != stamp:
            entry = stamp + [file_sha256(path)]
            cache[key] = entry
            changed = True
        digests[str(path.relative_to(root))] = entry[2]
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

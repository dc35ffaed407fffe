"""Content hashes: one canonical serialisation, one short-key length.

Cache keys, config digests and fold-table digests are :data:`SHORT_DIGEST_CHARS` hex
characters of a SHA-256 (64 bits: collisions are not a practical concern for the number of
caches a lab keeps); fingerprints that identify data for provenance keep the full digest.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

SHORT_DIGEST_CHARS = 16
_CHUNK_BYTES = 1 << 20


def sha256_hex(data: bytes | str) -> str:
    """Full SHA-256 hex digest of bytes, or of a string's UTF-8 encoding."""
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def canonical_json(payload: Any) -> str:
    """The serialisation every digest of structured data uses: sorted keys, no whitespace
    variation, non-JSON values by ``str``."""
    return json.dumps(payload, sort_keys=True, default=str)


def payload_digest(payload: Any, *, short: bool = True) -> str:
    """Digest of a JSON-able payload (a config, a cache key's inputs)."""
    digest = sha256_hex(canonical_json(payload))
    return digest[:SHORT_DIGEST_CHARS] if short else digest


def file_sha256(path: str | os.PathLike) -> str:
    """Full SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()

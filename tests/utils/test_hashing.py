"""One canonical serialisation and one short length for every digest."""

from __future__ import annotations

import hashlib

from dlm_ml.utils.hashing import SHORT_DIGEST_CHARS, canonical_json, file_sha256, payload_digest, sha256_hex


def test_payload_digest_is_stable_across_key_order():
    a = {"config": {"spacing_mm": 2.0, "timepoints": ["baseline", "presurgery"]}, "algorithm": 2}
    b = {"algorithm": 2, "config": {"timepoints": ["baseline", "presurgery"], "spacing_mm": 2.0}}
    assert payload_digest(a) == payload_digest(b)
    assert canonical_json(a) == canonical_json(b)


def test_payload_digest_lengths_and_sensitivity():
    payload = {"cohort": "abc", "spacing_mm": 2.0}
    short = payload_digest(payload)
    assert len(short) == SHORT_DIGEST_CHARS == 16
    full = payload_digest(payload, short=False)
    assert len(full) == 64 and full.startswith(short)
    assert payload_digest({"cohort": "abc", "spacing_mm": 2.5}) != short
    assert payload_digest([["P001", 0], ["P002", 1]]) != payload_digest([["P001", 1], ["P002", 0]])


def test_file_and_text_digests(tmp_path):
    path = tmp_path / "image.nii.gz"
    data = bytes(range(256)) * 5000  # more than one read chunk
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest() == sha256_hex(data)
    assert sha256_hex("µm²/s") == hashlib.sha256("µm²/s".encode()).hexdigest()

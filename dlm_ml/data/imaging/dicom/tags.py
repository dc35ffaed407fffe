"""Reading tag values from a pydicom dataset: typed public tags, private tags located through
their private creator, and the b-value of a diffusion image from whichever tag holds it
(see :func:`bvalue_from_dataset` and the package docstring for the vendor conventions)."""

from __future__ import annotations

import math
import re

import pydicom

# Private tag blocks: (group, element offset, private creator, vendor word).
_GE_BVALUE = (0x0043, 0x39, "GEMS_PARM_01", "GE")
_SIEMENS_BVALUE = (0x0019, 0x0C, "SIEMENS MR HEADER", "SIEMENS")
_PHILIPS_BVALUE = (0x2001, 0x03, "Philips Imaging DD 001", "PHILIPS")
_GE_GRADIENT = ((0x0019, 0xBB), (0x0019, 0xBC), (0x0019, 0xBD), "GEMS_ACQU_01")

BVALUE_SOURCES: tuple[str, ...] = (
    "public_0018_9087",
    "ge_private_0043_1039",
    "siemens_private_0019_100c",
    "philips_private_2001_1003",
    "siemens_sequence_name_0018_0024",
)
# Siemens diffusion sequence names: *ep_b400t, *ep_b1000#3, *re_b800t (RESOLVE).
# '*ep_b50_800' (ADC / calculated images) names a b-range and must not match.
_SEQ_B_RE = re.compile(r"_b(\d+)(?:t|#\d+)?\s*$")
SEQ_B_RANGE_RE = re.compile(r"_b\d+_\d+")


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _float(ds: pydicom.Dataset, keyword: str) -> float | None:
    value = ds.get(keyword, None)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, pydicom.multival.MultiValue):
            value = value[0]
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(ds: pydicom.Dataset, keyword: str) -> int | None:
    value = _float(ds, keyword)
    return None if value is None or not math.isfinite(value) else int(value)


def _floats(ds: pydicom.Dataset, keyword: str, n: int) -> tuple[float, ...] | None:
    value = ds.get(keyword, None)
    if value is None or value == "":
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _raw_text(value: object) -> str:
    """Decode a tag value that may be bytes (VR OB/UN after anonymisation) to text."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1", errors="ignore").replace("\x00", " ").strip()
    if isinstance(value, pydicom.multival.MultiValue) or isinstance(value, (list, tuple)):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _first_number(value: object) -> float | None:
    text = _raw_text(value)
    if not text:
        return None
    match = re.match(r"\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)", text.split("\\")[0])
    return float(match.group(1)) if match else None


def _private_value(ds: pydicom.Dataset, group: int, offset: int, creator: str, vendor: str):
    """Value of a private element located through its private creator.

    Falls back to the conventional block 0x10 when the creator element was
    stripped but the manufacturer matches (anonymisers sometimes do that).
    """
    for block in range(0x10, 0x100):
        creator_el = ds.get((group, block), None)
        if creator_el is None:
            continue
        if _raw_text(creator_el.value).upper() == creator.upper():
            el = ds.get((group, (block << 8) | offset), None)
            return None if el is None else el.value
    if vendor in _text(ds, "Manufacturer").upper():
        el = ds.get((group, 0x1000 | offset), None)
        return None if el is None else el.value
    return None


def _is_epi(ds: pydicom.Dataset) -> bool:
    scanning = _text(ds, "ScanningSequence").upper()
    return "EP" in scanning.split("\\") or "DIFF" in _text(ds, "ImageType").upper()


def bvalue_from_dataset(ds: pydicom.Dataset) -> tuple[float | None, str | None]:
    """Return ``(b_value_s_mm2, source)`` from a DICOM header, or ``(None, None)``.

    Sources are tried in the order of :data:`BVALUE_SOURCES` (most trusted first);
    see the module docstring for the vendor conventions.
    """
    value = ds.get((0x0018, 0x9087), None)
    if value is not None and value.value not in (None, b"", ""):
        b = _first_number(value.value)
        if b is not None:
            return b, "public_0018_9087"

    if _is_epi(ds):
        raw = _private_value(ds, *_GE_BVALUE)
        b = _first_number(raw) if raw is not None else None
        if b is not None:
            # GE adds 1e9 (and on some versions 1e9 multiples) to flag the value.
            return float(b % 1_000_000_000), "ge_private_0043_1039"

    raw = _private_value(ds, *_SIEMENS_BVALUE)
    b = _first_number(raw) if raw is not None else None
    if b is not None:
        return b, "siemens_private_0019_100c"

    raw = _private_value(ds, *_PHILIPS_BVALUE)
    b = _first_number(raw) if raw is not None else None
    if b is not None:
        return b, "philips_private_2001_1003"

    match = _SEQ_B_RE.search(_text(ds, "SequenceName"))
    if match:
        return float(match.group(1)), "siemens_sequence_name_0018_0024"
    return None, None


def _gradient(ds: pydicom.Dataset) -> tuple[float, float, float] | None:
    g = _floats(ds, "DiffusionGradientOrientation", 3)
    if g is not None:
        return g
    comps = []
    for group, element in _GE_GRADIENT[:3]:
        raw = _private_value(ds, group, element, _GE_GRADIENT[3], "GE")
        comps.append(_first_number(raw) if raw is not None else None)
    if all(c is not None for c in comps):
        return tuple(comps)  # type: ignore[return-value]
    return None

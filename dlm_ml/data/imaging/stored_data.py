"""Where an image file keeps its voxel bytes, and how many its own header declares.

Parsed from the header text or bytes of NIfTI-1/-2 (``.nii``, ``.nii.gz``, ``.hdr`` + ``.img``),
NRRD (``.nrrd``, ``.nhdr`` + data file) and MetaImage (``.mha``, ``.mhd`` + data file), without
ITK, because ITK's NIfTI reader hides what this is for: it zero-fills a short file and turns
NaN voxels into 0. :func:`read_nifti_float_voxels` reads a float NIfTI's voxels as stored.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# NIfTI datatype code → NumPy type, for the float types (the only ones that can hold NaN).
NIFTI_FLOAT_TYPES = {16: "f4", 64: "f8"}

# Bytes per element of the NRRD ``type`` field (every spelling the NRRD format allows).
_NRRD_TYPE_BYTES = {
    **dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"), 1),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort",
                     "unsigned short", "unsigned short int", "uint16", "uint16_t"), 2),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t",
                     "float"), 4),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long", "signed long long int",
                     "int64", "int64_t", "ulonglong", "unsigned long long", "unsigned long long int", "uint64",
                     "uint64_t", "double"), 8),
}

# Bytes per element of the MetaImage ``ElementType`` field.
_META_TYPE_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
                    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
                    "MET_DOUBLE": 8}

_MAX_TEXT_HEADER = 1 << 16  # NRRD and MetaImage headers are a few hundred bytes


@dataclass(frozen=True)
class StoredData:
    """The voxel data of one image file as its header declares it.

    ``data_path`` holds the data from byte ``start`` on (the header's length for an attached
    header, else 0), ``compression`` ``"raw"``, ``"gzip"`` or ``"zlib"``; after decompression
    ``skip`` bytes precede ``declared_bytes`` of voxels (NIfTI ``vox_offset``, NRRD ``byte
    skip``). ``compressed_bytes``: the compressed length when the header states it (MetaImage).
    For NIfTI, ``nifti_dtype`` is the stored NumPy type when it is a float type and
    ``nifti_scaled`` whether ``scl_slope``/``scl_inter`` change the values.
    """

    data_path: Path
    start: int
    skip: int
    declared_bytes: int
    compression: str
    compressed_bytes: int | None = None
    nifti_dtype: np.dtype | None = None
    nifti_scaled: bool = False


def stored_data(path: str | os.PathLike) -> StoredData | None:
    """The layout of ``path``'s voxel data, or ``None`` for a format (or an encoding) not parsed here."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz", ".hdr")):
        return _nifti(path)
    if name.endswith((".nrrd", ".nhdr")):
        return _nrrd(path)
    if name.endswith((".mha", ".mhd")):
        return _meta(path)
    return None


def _open_maybe_gzip(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _nifti(path: Path) -> StoredData | None:
    """NIfTI-1 or -2 (single file or .hdr/.img pair; Analyze 7.5 shares the fields used here)."""
    try:
        with _open_maybe_gzip(path) as f:
            head = f.read(540)
    except (OSError, EOFError):
        return None  # the reader reports an unreadable header itself
    if len(head) < 348:
        return None
    for endian in "<>":
        sizeof_hdr = struct.unpack(endian + "i", head[:4])[0]
        if sizeof_hdr in (348, 540):
            break
    else:
        return None
    if sizeof_hdr == 348:
        dim = struct.unpack(endian + "8h", head[40:56])
        datatype, bitpix = struct.unpack(endian + "2h", head[70:74])
        vox_offset, slope, inter = struct.unpack(endian + "3f", head[108:120])
    else:
        if len(head) < 540:
            return None
        datatype, bitpix = struct.unpack(endian + "2h", head[12:16])
        dim = struct.unpack(endian + "8q", head[16:80])
        vox_offset = struct.unpack(endian + "q", head[168:176])[0]
        slope, inter = struct.unpack(endian + "2d", head[176:192])
    n_dims = dim[0]
    if not 1 <= n_dims <= 7 or bitpix <= 0:
        return None
    n_voxels = math.prod(max(int(d), 1) for d in dim[1:n_dims + 1])
    data_path, start = path, 0
    if path.name.lower().endswith(".hdr"):
        stem = path.name[:-4]
        data_path = next((path.with_name(stem + s) for s in (".img", ".img.gz", ".IMG") if
                          path.with_name(stem + s).exists()), path.with_name(stem + ".img"))
    float_type = NIFTI_FLOAT_TYPES.get(datatype)
    # nifti_io ignores a zero or non-finite slope; otherwise values become value * slope + inter.
    scaled = math.isfinite(slope) and slope != 0 and (slope != 1 or inter != 0)
    return StoredData(
        data_path=data_path, start=start, skip=max(int(vox_offset), 0), declared_bytes=n_voxels * bitpix // 8,
        compression="gzip" if data_path.name.lower().endswith(".gz") else "raw",
        nifti_dtype=np.dtype(endian + float_type) if float_type else None, nifti_scaled=scaled)


def _text_header(path: Path, end_marker) -> tuple[list[str], int] | None:
    """Lines of a text header and the byte where the data after it starts; ``end_marker(line)``
    says whether a line ends the header (None: the header is the whole file)."""
    with open(path, "rb") as f:
        raw = f.read(_MAX_TEXT_HEADER)
    lines, pos = [], 0
    while pos < len(raw):
        nl = raw.find(b"\n", pos)
        if nl < 0:
            if end_marker is not None:
                return None  # the header does not end within the first 64 KiB: not one of ours
            nl = len(raw) - 1
        line = raw[pos:nl + 1].decode("latin-1").rstrip("\r\n")
        lines.append(line)
        pos = nl + 1
        if end_marker is not None and end_marker(line):
            return lines, pos
    return lines, pos


def _nrrd(path: Path) -> StoredData | None:
    detached = path.name.lower().endswith(".nhdr")
    parsed = _text_header(path, None if detached else (lambda line: line == ""))
    if parsed is None or not parsed[0] or not parsed[0][0].startswith("NRRD"):
        return None
    lines, end = parsed
    fields = {}
    for line in lines[1:]:
        if line.startswith("#") or ":" not in line or ":=" in line:
            continue
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()
    try:
        element = _NRRD_TYPE_BYTES[fields["type"].lower()]
        n = math.prod(int(s) for s in fields["sizes"].split())
        skip = int(fields.get("byte skip", fields.get("byteskip", "0")))
    except (KeyError, ValueError):
        return None
    encoding = fields.get("encoding", "").lower()
    compression = {"raw": "raw", "gzip": "gzip", "gz": "gzip"}.get(encoding)
    line_skip = int(fields.get("line skip", fields.get("lineskip", "0")) or 0)
    data_file = fields.get("data file", fields.get("datafile"))
    if compression is None or skip < 0 or line_skip:
        return None  # bzip2/ASCII/hex or "data at the end": the reader judges those itself
    if data_file is None:
        return None if detached else StoredData(path, end, skip, n * element, compression)
    if data_file.split()[0].upper() == "LIST" or "%" in data_file:
        return None  # one data file per slice: not checked here
    return StoredData(path.parent / data_file, 0, skip, n * element, compression)


def _meta(path: Path) -> StoredData | None:
    parsed = _text_header(path, lambda line: line.split("=", 1)[0].strip() == "ElementDataFile")
    if parsed is None:
        return None
    lines, end = parsed
    fields = dict((k.strip(), v.strip()) for k, v in (line.split("=", 1) for line in lines if "=" in line))
    try:
        element = _META_TYPE_BYTES[fields["ElementType"]]
        n = math.prod(int(s) for s in fields["DimSize"].split()) * int(fields.get("ElementNumberOfChannels", "1"))
        header_size = int(fields.get("HeaderSize", "0"))
        compressed_bytes = int(fields["CompressedDataSize"]) if "CompressedDataSize" in fields else None
    except (KeyError, ValueError):
        return None
    compression = "zlib" if fields.get("CompressedData", "False").lower() == "true" else "raw"
    data_file = fields.get("ElementDataFile", "")
    if data_file.upper() == "LOCAL":
        return StoredData(path, end, 0, n * element, compression, compressed_bytes)
    if header_size < 0 or " " in data_file or "%" in data_file or data_file.upper() == "LIST":
        return None  # data at the end, or one file per slice: not checked here
    return StoredData(path.parent / data_file, header_size, 0, n * element, compression, compressed_bytes)


def gzip_trailer_size(path: Path) -> int | None:
    """The ISIZE field of the gzip stream ending ``path`` (uncompressed length of its last
    member modulo 2^32), or ``None`` for a file too short to have one."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < 18:
            return None
        f.seek(-4, os.SEEK_END)
        return int.from_bytes(f.read(4), "little")


def _gzip_chunks(path: Path, start: int):
    """Decompressed chunks of the gzip stream (every member) from byte ``start`` of ``path``;
    the final item is ``None`` when the stream ended properly, ``False`` when it stopped early."""
    with open(path, "rb") as f:
        f.seek(start)
        inflate = zlib.decompressobj(wbits=31)
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                yield None if inflate.eof else False
                return
            while chunk:
                yield inflate.decompress(chunk)
                if not inflate.eof:
                    break
                chunk = inflate.unused_data
                if chunk.strip(b"\0"):  # another member follows (bgzip, pigz -i)
                    inflate = zlib.decompressobj(wbits=31)
                else:
                    chunk = b""


def count_gzip_bytes(path: Path, start: int = 0) -> tuple[int, bool]:
    """Uncompressed length of the gzip stream from byte ``start`` of ``path`` and whether it ends
    properly (False: truncated, or corrupt where it stops)."""
    total = 0
    try:
        for chunk in _gzip_chunks(path, start):
            if chunk is None or chunk is False:
                return total, chunk is None
            total += len(chunk)
    except zlib.error:
        return total, False
    return total, False


def read_nifti_float_voxels(layout: StoredData) -> tuple[np.ndarray | None, int]:
    """The voxels of a float NIfTI exactly as stored (native byte order, flat, x fastest),
    or ``None`` with the number of bytes found when the data is shorter than declared.

    One decompression: ITK's own read would give NaN and infinite voxels as 0 and zero-fill a
    short file, so this read replaces it for float NIfTI rather than adding a second pass.
    """
    need = layout.skip + layout.declared_bytes
    if layout.compression == "gzip":
        buffer = bytearray(need)  # filled in place: no growing copies of a large volume
        filled, complete = 0, False
        try:
            for chunk in _gzip_chunks(layout.data_path, layout.start):
                if chunk is None or chunk is False:
                    break
                take = min(len(chunk), need - filled)
                buffer[filled:filled + take] = chunk[:take]
                filled += take
                if filled == need:
                    complete = True
                    break
        except zlib.error:
            pass
        if not complete:
            return None, filled
        data = memoryview(buffer)[layout.skip:]
    else:
        with open(layout.data_path, "rb") as f:
            f.seek(layout.start + layout.skip)
            data = f.read(layout.declared_bytes)
        if len(data) < layout.declared_bytes:
            return None, layout.skip + len(data)
    voxels = np.frombuffer(data, dtype=layout.nifti_dtype)
    return voxels.astype(voxels.dtype.newbyteorder("="), copy=False), need

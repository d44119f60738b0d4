"""The packet index of an MP4/MOV file from its sample tables, without reading a packet.

A demux-only index of a 10-minute file reads all its 18,000 packets (about 0.1-0.2 s of a core),
and a sampled decode cannot deliver a frame before it: which frames are wanted depends on the last
packet's time. An MP4 header already lists every sample. FFmpeg parses those tables when it opens
the file and exposes, per sample, the decode timestamp (after its edit-list handling), keyframe and
discard flags, byte position and size (`stream.index_entries`). What it does not expose is the
composition offset (`ctts`) that turns a decode timestamp into a presentation timestamp. This module
reads `ctts` (and the tables that place samples in the file) from the file's `moov` box itself and
builds the arrays `PacketIndex.fill` takes, with FFmpeg's rule: pts = dts + dts_shift + ctts[i],
where dts_shift is the largest negated negative offset (FFmpeg shifts every dts down by it).

It answers only when it can prove that its sample i is FFmpeg's entry i: same count, and every
sample's byte position and size equal FFmpeg's. Otherwise (fragmented MP4, edit lists that drop or
repeat samples, a truncated file whose last samples lie past its end, odd tables) it returns None
and the caller builds the index by demuxing. tests/ingest/test_sample_table.py checks every row
against the demux index on the test clips. Knows nothing about decoding or planning.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import av
import numpy as np

_MAX_MOOV = 256 << 20  # a moov box larger than this is not read into memory (demux instead)
_BOGUS_CTTS = 1 << 28  # FFmpeg distrusts composition offsets this large; so do we


@dataclass(frozen=True, slots=True)
class SampleIndex:
    """The index rows of a stream in decode order, one array each: all [n]."""

    pts: np.ndarray  # int64
    seek: np.ndarray  # int64: timestamp to seek to, min(pts, dts)
    key: np.ndarray  # bool
    pos: np.ndarray  # int64: byte position
    dur: np.ndarray  # int64: duration in ticks (the demuxer's: to the next dts)
    discard: np.ndarray  # bool


def sample_table_index(
    container: av.container.InputContainer, stream: av.VideoStream, path: str
) -> SampleIndex | None:
    """Index of `stream` from the sample tables, or None when it cannot be proven exact."""
    if "mov" not in container.format.name:
        return None
    entries = stream.index_entries
    n = len(entries)
    if n == 0:
        return None
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            moov = _read_moov(f, size)
            if moov is None:
                return None
            tables = [t for t in _video_tables(moov) if t.get(b"stsz") is not None]
    except (OSError, struct.error, ValueError):
        return None
    # FFmpeg's entries: dts (after its edit-list handling), byte position, size, flags: [n, 4]
    raw = np.array([(e.timestamp, e.pos, e.size, e.flags) for e in entries], np.int64)
    dts, pos, sizes, flags = raw.T
    if int(pos[-1]) + int(sizes[-1]) > size or np.any(np.diff(dts) < 0):
        return None  # truncated file, or FFmpeg reordered its entries (edit lists): demux instead
    for t in tables:
        placed = _positions(t, n)
        if placed is None or not (np.array_equal(placed[0], pos) and np.array_equal(placed[1], sizes)):
            continue
        offsets, shift = _composition(t.get(b"ctts"), n)
        if offsets is None:
            return None
        pts = dts + shift + offsets
        dur = np.empty(n, np.int64)
        dur[:-1] = np.diff(dts)
        dur[-1] = _last_duration(t.get(b"stts"))
        return SampleIndex(
            pts=pts,
            seek=np.minimum(pts, dts),
            key=(flags & 1).astype(bool),  # AVINDEX_KEYFRAME
            pos=pos.copy(),
            dur=dur,
            discard=(flags & 2).astype(bool),  # AVINDEX_DISCARD_FRAME
        )
    return None


def _boxes(buf: bytes, start: int = 0, end: int | None = None):
    """Yield (type, payload start, payload end) of the boxes in buf[start:end]."""
    end = len(buf) if end is None else end
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", buf, start)
        head = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", buf, start + 8)
            head = 16
        elif size == 0:
            size = end - start
        if size < head or start + size > end:
            raise ValueError("box overruns its parent")
        yield kind, start + head, start + size
        start += size


def _read_moov(f, file_size: int) -> bytes | None:
    """The payload of the top-level moov box; None for fragmented files (moof) or no moov."""
    at, moov = 0, None
    while at + 8 <= file_size:
        f.seek(at)
        head = f.read(16)
        if len(head) < 8:
            break
        size, kind = struct.unpack_from(">I4s", head)
        hdr = 8
        if size == 1 and len(head) == 16:
            (size,) = struct.unpack_from(">Q", head, 8)
            hdr = 16
        elif size == 0:
            size = file_size - at
        if size < hdr:
            return None
        if kind in (b"moof", b"mvex"):
            return None  # fragmented: samples live in fragments FFmpeg reads as it goes
        if kind == b"moov":
            if size > _MAX_MOOV or at + size > file_size:
                return None
            moov = f.read(size - hdr) if hdr == 16 else head[8:] + f.read(size - 16)
            if len(moov) != size - hdr:
                return None
        at += size
    if moov is not None and any(kind == b"mvex" for kind, _, _ in _boxes(moov)):
        return None
    return moov


def _child(buf: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for k, s, e in _boxes(buf, start, end):
        if k == kind:
            return s, e
    return None


def _video_tables(moov: bytes) -> list[dict[bytes, bytes | None]]:
    """The sample tables (stsz/stz2, stsc, stco/co64, stts, ctts payloads) of each video trak."""
    out = []
    for kind, s, e in _boxes(moov):
        if kind != b"trak":
            continue
        mdia = _child(moov, s, e, b"mdia")
        if mdia is None:
            continue
        hdlr = _child(moov, *mdia, b"hdlr")
        if hdlr is None or moov[hdlr[0] + 8 : hdlr[0] + 12] != b"vide":
            continue
        minf = _child(moov, *mdia, b"minf")
        stbl = minf and _child(moov, *minf, b"stbl")
        if not stbl:
            continue
        boxes = {k: moov[bs:be] for k, bs, be in _boxes(moov, *stbl)}
        out.append(
            {
                b"stsz": boxes.get(b"stsz") or boxes.get(b"stz2"),
                b"stz2": b"" if b"stz2" in boxes and b"stsz" not in boxes else None,
                b"stsc": boxes.get(b"stsc"),
                b"stco": boxes.get(b"stco"),
                b"co64": boxes.get(b"co64"),
                b"stts": boxes.get(b"stts"),
                b"ctts": boxes.get(b"ctts"),
            }
        )
    return out


def _table(payload: bytes, fmt: str, width: int) -> np.ndarray:
    """Full-box table after version/flags and entry count: [count, width] in `fmt` ('>u4' etc.)."""
    (count,) = struct.unpack_from(">I", payload, 4)
    itemsize = np.dtype(fmt).itemsize
    if 8 + count * width * itemsize > len(payload):
        raise ValueError("table shorter than its entry count")
    return np.frombuffer(payload, fmt, count * width, 8).reshape(count, width).astype(np.int64)


def _sizes(t: dict[bytes, bytes | None]) -> np.ndarray | None:
    stsz = t[b"stsz"]
    assert stsz is not None
    if t[b"stz2"] is not None:
        return None  # compact sample sizes: rare; demux instead
    uniform, count = struct.unpack_from(">II", stsz, 4)
    if uniform:
        return np.full(count, uniform, np.int64)
    if 12 + 4 * count > len(stsz):
        raise ValueError("stsz shorter than its entry count")
    return np.frombuffer(stsz, ">u4", count, 12).astype(np.int64)


def _positions(t: dict[bytes, bytes | None], n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Byte position and size of the first n samples: ([n] int64, [n] int64), None if unplaceable."""
    sizes = _sizes(t)
    if sizes is None or len(sizes) < n or t[b"stsc"] is None:
        return None
    if t[b"co64"] is not None:
        chunks = _table(t[b"co64"], ">u8", 1)[:, 0]
    elif t[b"stco"] is not None:
        chunks = _table(t[b"stco"], ">u4", 1)[:, 0]
    else:
        return None
    stsc = _table(t[b"stsc"], ">u4", 3)  # first chunk (1-based), samples per chunk, description
    if len(stsc) == 0 or stsc[0, 0] != 1 or np.any(np.diff(stsc[:, 0]) <= 0):
        return None
    starts = stsc[:, 0] - 1
    runs = np.diff(np.append(starts, len(chunks)))
    if np.any(runs < 0):
        return None
    per_chunk = np.repeat(stsc[:, 1], runs)  # [chunks] samples in each chunk
    if int(per_chunk.sum()) < n:
        return None
    chunk_of = np.repeat(np.arange(len(chunks)), per_chunk)[:n]  # [n]
    sizes = sizes[:n]
    before = np.cumsum(sizes) - sizes  # bytes of all earlier samples
    first = np.cumsum(per_chunk) - per_chunk  # ordinal of each chunk's first sample
    first_before = before[np.minimum(first[chunk_of], n - 1)]
    return chunks[chunk_of] + (before - first_before), sizes


def _composition(ctts: bytes | None, n: int) -> tuple[np.ndarray | None, int]:
    """Per-sample composition offsets [n] and FFmpeg's dts_shift; (None, 0) when untrusted."""
    if ctts is None:
        return np.zeros(n, np.int64), 0
    table = _table(ctts, ">i4", 2)  # FFmpeg reads count and offset as signed 32-bit, any version
    counts, offsets = table[:, 0], table[:, 1]
    if np.any(counts < 0) or np.any(np.abs(offsets) >= _BOGUS_CTTS) or int(counts.sum()) != n:
        return None, 0
    neg = offsets[:-1][offsets[:-1] < 0]  # FFmpeg ignores the last entry for the shift
    shift = int(-neg.min()) if neg.size else 0
    return np.repeat(offsets, counts), shift


def _last_duration(stts: bytes | None) -> int:
    if stts is None:
        return 0
    table = _table(stts, ">u4", 2)
    return int(table[-1, 1]) if len(table) else 0

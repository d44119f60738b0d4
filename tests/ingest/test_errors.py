"""Bad input raises typed errors with stable codes; damaged files decode what is valid when asked.

Oracle for damaged files: a plain sequential PyAV decode that stops at the first error (truncated
files) or skips packets the decoder rejects (corrupted middle).
"""

from __future__ import annotations

import hashlib

import av
import pytest

from streamrt.ingest import AtTimes, FileDecoder, PixelSpec, Uniform, open_source, probe
from streamrt.ingest.errors import (
    ERROR_CODES,
    BadRequest,
    CorruptData,
    EmptyFile,
    IngestError,
    NoVideoStream,
    SourceNotFound,
    Truncated,
    UnsupportedFormat,
    from_wire,
)

NATIVE = PixelSpec(format="native")


def _seq_tolerant(path, with_pts: bool = False) -> list:
    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for pkt in c.demux(s):
            try:
                frames = pkt.decode()
            except av.error.InvalidDataError:
                continue
            for fr in frames:
                h = hashlib.md5(fr.to_ndarray().tobytes()).hexdigest()
                out.append((fr.pts, h) if with_pts else h)
    return out


def _damaged_gop_pts(path, lo: int, hi: int) -> set[int]:
    """pts of every frame in a GOP that has a packet overlapping bytes [lo, hi)."""
    gops: list[list[tuple[int, int, int]]] = []
    with av.open(str(path)) as c:
        for p in c.demux(c.streams.video[0]):
            if p.size == 0:
                continue
            if p.is_keyframe or not gops:
                gops.append([])
            gops[-1].append((p.pts, p.pos, p.size))
    hit = set()
    for g in gops:
        if any(pos < hi and pos + size > lo for _, pos, size in g):
            hit |= {pts for pts, _, _ in g}
    return hit


def _ours(path, pool, **kw):
    d = FileDecoder(str(path), pixels=NATIVE, pool=pool, **kw)
    with d:
        return d, [hashlib.md5(f.pixels).hexdigest() for f in d]


@pytest.mark.parametrize(
    "kind,exc,code",
    [
        ("empty", EmptyFile, "E_INGEST_EMPTY"),
        ("text", UnsupportedFormat, "E_INGEST_UNSUPPORTED"),
        ("audio_only", NoVideoStream, "E_INGEST_NO_VIDEO"),
    ],
)
def test_bad_files_raise_typed_errors(bad_files, kind, exc, code):
    path = str(bad_files[kind])
    for call in (lambda: FileDecoder(path), lambda: probe(path), lambda: open_source(path)):
        with pytest.raises(exc) as ei:
            call()
        assert ei.value.code == code and path in str(ei.value)


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.mp4")
    with pytest.raises(SourceNotFound, match="nope.mp4") as ei:
        FileDecoder(path)
    assert ei.value.code == "E_INGEST_NOT_FOUND"


def test_error_codes_are_stable_and_cross_processes():
    assert len(set(ERROR_CODES)) == len(ERROR_CODES)
    assert all(c.startswith("E_INGEST") for c in ERROR_CODES)
    e = from_wire(Truncated("f.mp4: ends early", source="f.mp4", detail={"stopped_at_s": 1.5}).to_wire())
    assert isinstance(e, Truncated) and e.code == "E_INGEST_TRUNCATED" and e.detail["stopped_at_s"] == 1.5


@pytest.mark.parametrize("name", ["truncated_mp4", "truncated_mkv"])
def test_truncated_strict_raises_after_valid_frames(bad_files, pool, name):
    if name not in bad_files:
        pytest.skip("ffmpeg CLI not installed")
    path = str(bad_files[name])
    ref = _seq_tolerant(path)
    got = []
    with pytest.raises(Truncated) as ei, FileDecoder(path, pixels=NATIVE, pool=pool) as d:
        for f in d:
            got.append(hashlib.md5(f.pixels).hexdigest())
    assert ei.value.code == "E_INGEST_TRUNCATED" and path in str(ei.value)
    assert got == ref and len(got) > 0  # every valid frame was delivered before the error
    assert ei.value.detail["stopped_at_s"] == pytest.approx(d.report.stopped_at_s)


@pytest.mark.parametrize("name", ["truncated_mp4", "truncated_mkv"])
def test_truncated_lenient_decodes_valid_part_and_reports(bad_files, pool, name):
    if name not in bad_files:
        pytest.skip("ffmpeg CLI not installed")
    path = bad_files[name]
    d, got = _ours(path, pool, strict=False, interval_frames=1)
    assert got == _seq_tolerant(path)
    assert d.report.truncated and d.report.stopped_at_s is not None and d.report.stopped_at_s > 0
    assert "truncated" in d.report.problem


def test_corrupted_middle(bad_files, pool):
    if "corrupt_ts" not in bad_files:
        pytest.skip("ffmpeg CLI not installed")
    """Bytes [size/2, size/2 + 6000) were overwritten with noise.

    Error concealment inside the damaged GOP depends on what the decoder saw before (a sequential
    decoder has the previous GOP, an interval decoder starts at the keyframe), so only that GOP may
    differ; every other frame must be exact. Frames FFmpeg rejects or flags corrupt are skipped and
    counted: delivered + skipped = the file's video packets (none lost without a count, none added).
    """
    path = bad_files["corrupt_ts"]
    lo = path.stat().st_size // 2
    damaged = _damaged_gop_pts(path, lo, lo + 6000)
    ref = _seq_tolerant(path, with_pts=True)
    with av.open(str(path)) as c:
        packets = sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    with FileDecoder(str(path), pixels=NATIVE, pool=pool, strict=False) as d:
        got = [(round(f.pts * 90000), hashlib.md5(f.pixels).hexdigest()) for f in d]
        skipped = d.report.corrupt_frames
    assert [g for g in got if g[0] not in damaged] == [r for r in ref if r[0] not in damaged]
    assert {g[0] for g in got} <= {r[0] for r in ref}
    assert len(got) + skipped == packets
    assert 0 < len(damaged) < len(ref) // 2
    try:
        _, strict_got = _ours(path, pool, strict=True)
        assert len(strict_got) == len(got) and skipped == 0  # the decoder concealed the damage silently
    except CorruptData as e:
        assert e.code == "E_INGEST_CORRUPT" and str(path) in str(e)


@pytest.mark.parametrize("sampling", [Uniform(0), AtTimes((-1.0,)), AtTimes(())])
def test_bad_sampling_requests(clips, pool, sampling):
    with (
        pytest.raises(BadRequest) as ei,
        FileDecoder(str(clips["h264_vfr_mkv"]), pool=pool, sampling=sampling) as d,
    ):
        next(iter(d))
    assert ei.value.code == "E_INGEST_BAD_REQUEST"


def test_every_error_is_an_ingest_error():
    assert all(issubclass(c, IngestError) for c in (EmptyFile, UnsupportedFormat, NoVideoStream, Truncated))

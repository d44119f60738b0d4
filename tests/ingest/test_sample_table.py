"""The MP4/MOV sample-table index against the demux index (oracle: FFmpeg's own packets).

For every MP4/MOV variant below, each row the sample tables give (pts, seek timestamp, keyframe,
byte position, duration, discard) must equal the row of the packet FFmpeg's demuxer returns.
Files it cannot prove (fragmented, truncated, not MP4) must fall back to demuxing, and sampled
decoding through the table index must pick the frames a sequential decode picks.
"""

from __future__ import annotations

import hashlib
import subprocess
from fractions import Fraction

import av
import pytest

from streamrt.ingest import AtTimes, FileDecoder, PixelSpec, Uniform, sample_table
from streamrt.ingest.index import PacketIndex, build_index

from .conftest import _X264, HAVE_FFMPEG, _make_ffmpeg, needs_ffmpeg  # noqa: TID252
from .test_file_decode import _sequential_picks  # noqa: TID252

pytestmark = needs_ffmpeg

# MP4/MOV clips of the suite's conftest that this module also checks
SHARED_CLIPS = (
    "h264_bframes_audio_mp4",
    "h264_mov_offset",
    "hevc_mp4",
    "mjpeg_mov",
    "h264_single_gop_mp4",
    "h264_rotated_mp4",
)


def _copy(src, out, before: tuple[str, ...] = (), after: tuple[str, ...] = ()):
    """Remux `src` to `out` without re-encoding (`before`: input options, `after`: output options)."""
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *before, "-i", str(src), "-c", "copy"]
    subprocess.run([*cmd, *after, str(out)], check=True, timeout=60)
    return out


@pytest.fixture(scope="module")
def mp4s(tmp_path_factory, clips) -> dict[str, object]:
    """MP4/MOV variants: B-frames, negative composition offsets, edit lists that discard frames,
    open GOP, variable frame rate, moov first, two video tracks, HEVC, MJPEG, a start offset."""
    if not HAVE_FFMPEG:
        return {}
    d = tmp_path_factory.mktemp("mp4s")
    bf = [*_X264, "-bf", "3", "-g", "15"]
    out = {k: clips[k] for k in SHARED_CLIPS}
    out["plain"] = _make_ffmpeg(d / "bf.mp4", bf, 3.0, 25, [])
    out["negative_cts"] = _make_ffmpeg(d / "neg.mp4", [*bf, "-movflags", "negative_cts_offsets"], 3.0, 25, [])
    out["faststart"] = _make_ffmpeg(d / "fs.mp4", [*bf, "-movflags", "+faststart"], 3.0, 25, [])
    out["open_gop"] = _make_ffmpeg(d / "og.mp4", [*bf, "-x264-params", "open-gop=1"], 3.0, 25, [])
    # edit list starting between keyframes: FFmpeg marks the leading packets discard
    out["trimmed"] = _copy(out["plain"], d / "trim.mp4", before=("-ss", "0.7"))
    out["two_tracks"] = _copy(
        out["open_gop"], d / "two.mp4", before=("-i", str(out["plain"])), after=("-map", "1:v", "-map", "0:v")
    )  # the first video stream (FFmpeg's pick) is the open-GOP one, the second trak
    vfr = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=size=160x120:rate=25,setpts='PTS+floor(N/5)*2'", "-t", "3", "-fps_mode", "passthrough",
         *_X264, "-bf", "2", "-g", "12", str(d / "vfr.mp4")],
        check=True, timeout=60,
    )  # fmt: skip
    assert vfr.returncode == 0
    out["vfr"] = d / "vfr.mp4"
    return out


def _demux_rows(path) -> list[tuple]:
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        index = PacketIndex(str(path), vs.index, Fraction(1, 1))
    build_index(index, str(path))
    assert index.done and not index.problem
    return list(zip(index._pts, index._seek, index._key, index._pos, index._dur, index._discard, strict=True))


def _table_rows(path) -> list[tuple] | None:
    with av.open(str(path)) as c:
        t = sample_table.sample_table_index(c, c.streams.video[0], str(path))
    if t is None:
        return None
    cols = (t.pts, t.seek, t.key, t.pos, t.dur, t.discard)
    return list(zip(*(c.tolist() for c in cols), strict=True))


VARIANTS = [
    "plain",
    "negative_cts",
    "faststart",
    "open_gop",
    "trimmed",
    "two_tracks",
    "vfr",
    *SHARED_CLIPS,
]


@pytest.mark.parametrize("name", VARIANTS)
def test_rows_equal_the_demuxed_packets(mp4s, name):
    if name not in mp4s:
        pytest.skip(f"{name} not generated here")
    rows = _table_rows(mp4s[name])
    assert rows is not None, "the sample tables should prove this file"
    assert rows == _demux_rows(mp4s[name])


def test_the_variants_exercise_what_they_claim(mp4s):
    """The trimmed file's edit list makes FFmpeg discard leading packets; the negative_cts file has
    negative composition offsets (so FFmpeg's dts shift is in play)."""
    assert any(r[5] for r in _demux_rows(mp4s["trimmed"]))
    with open(mp4s["negative_cts"], "rb") as f:
        moov = sample_table._read_moov(f, mp4s["negative_cts"].stat().st_size)
    offsets, shift = sample_table._composition(sample_table._video_tables(moov)[0][b"ctts"], 75)
    assert shift > 0 and (offsets < 0).any()


def test_unprovable_files_fall_back_to_demuxing(tmp_path, mp4s, clips):
    frag = _copy(mp4s["plain"], tmp_path / "frag.mp4", after=("-movflags", "frag_keyframe+empty_moov"))
    data = mp4s["faststart"].read_bytes()  # moov first: cut the data, keep the tables
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])
    for path in (frag, tmp_path / "cut.mp4", clips["h264_opengop_mkv"]):
        assert _table_rows(path) is None, path
    with FileDecoder(str(frag), sampling=Uniform(5)) as d:
        assert len(list(d)) == 5 and not d.report.index_from_tables


@pytest.mark.parametrize("name", ["trimmed", "negative_cts", "vfr", "two_tracks"])
@pytest.mark.parametrize(
    "sampling", [Uniform(9), AtTimes((0.0, 0.3, 1.01, 2.2, 9.0))], ids=["uniform9", "at"]
)
def test_sampled_decode_from_the_tables_matches_sequential(mp4s, pool, name, sampling):
    path = mp4s[name]
    with FileDecoder(str(path), pixels=PixelSpec(format="native"), pool=pool, sampling=sampling) as d:
        got = [hashlib.md5(f.pixels).hexdigest() for f in d]
        assert d.report.index_from_tables and d.report.speculated_intervals == 0
    assert got == [p[2] for p in _sequential_picks(path, sampling)]

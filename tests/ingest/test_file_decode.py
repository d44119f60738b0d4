"""Parallel file decoding against independent oracles.

Oracles: (1) a plain sequential PyAV decode of the same file (every frame's pts, keyframe flag and
pixels, hashed over its planes packed here without row padding), (2) the ffmpeg CLI's framemd5
output, (3) for sampling, the frames a sequential decode picks for the same request times (chosen
in this file by scanning the sequential frames), (4) for rotation, the ffmpeg CLI's autorotated
rgb24 output.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from streamrt.ingest import AtTimes, EveryFps, FileDecoder, PixelSpec, Uniform
from streamrt.ingest.framemd5 import framemd5_lines

from .conftest import FFMPEG_CLIPS, needs_ffmpeg  # noqa: TID252 - test helpers live beside the tests

ALL = ["h264_vfr_mkv", *FFMPEG_CLIPS, "av1_mkv", "h264_rotated_mp4"]
NATIVE = PixelSpec(format="native")


def _packed(fr: av.VideoFrame) -> bytes:
    """Independent re-implementation of 'planes packed without padding' for the oracle."""
    out = []
    for plane in fr.planes:
        row_bytes = plane.width * (2 if fr.format.name.endswith(("10le", "16le")) else 1)
        if fr.format.name in ("nv12", "nv21") and plane is not fr.planes[0]:
            row_bytes *= 2
        a = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        out.append(a[:, :row_bytes].tobytes())
    return b"".join(out)


def sequential(path) -> list[tuple[int, bool, str, float]]:
    """(pts ticks, keyframe, md5 of native planes, seconds) of every frame, plain PyAV decode."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [
            (fr.pts, bool(fr.key_frame), hashlib.md5(_packed(fr)).hexdigest(), float(fr.pts * s.time_base))
            for fr in c.decode(s)
        ]


def _get(clips, name):
    if name not in clips:
        pytest.skip(f"{name} not generated here (ffmpeg CLI or encoder missing)")
    return clips[name]


def ours(path, pool, **kw) -> list[tuple[int, bool, str, float]]:
    with FileDecoder(str(path), pixels=NATIVE, pool=pool, **kw) as d:
        tb = Fraction(d.info.time_base)
        frames = list(d)
    assert [f.index for f in frames] == list(range(len(frames))) or "sampling" in kw
    return [
        (round(Fraction(f.pts) / tb), f.keyframe, hashlib.md5(f.pixels).hexdigest(), f.pts) for f in frames
    ]


@pytest.mark.parametrize("name", ALL)
def test_full_decode_is_frame_exact(clips, pool, name):
    path = _get(clips, name)
    ref = sequential(path)
    got = ours(path, pool, interval_frames=1, head_thread=False)  # one interval per GOP, all in workers
    assert len(got) == len(ref) > 0
    assert [g[:3] for g in got] == [r[:3] for r in ref]


@pytest.mark.parametrize("name", ["h264_opengop_mkv", "h264_ts_start", "h264_bframes_audio_mp4"])
def test_head_thread_then_workers_is_frame_exact(clips, name):
    """A private pool: the first intervals decode in-process while workers start."""
    path = _get(clips, name)
    with FileDecoder(str(path), pixels=NATIVE, workers=2, interval_frames=1) as d:
        got = [hashlib.md5(f.pixels).hexdigest() for f in d]
        assert d.report.local_intervals >= 1  # how many more the head takes depends on worker start-up time
        assert d.report.first_frame_s is not None
    assert got == [r[2] for r in sequential(path)]


def _ffmpeg_framemd5(path, vfr: bool = False) -> list[str]:
    # for variable frame rate ffmpeg must not drop frames that round to the same output tick
    vs = ["-fps_mode", "passthrough"] if vfr else []
    cmd = [
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        str(path),
        "-map",
        "0:v",
        *vs,
        "-fflags",
        "+bitexact",
        "-f",
        "framemd5",
        "-",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout.splitlines()


def _our_framemd5(path, pool) -> list[str]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        rate = Fraction(s.guessed_rate or s.average_rate)
        start = c.start_time / 1e6 if c.start_time else 0.0
        sar = s.sample_aspect_ratio
    with FileDecoder(str(path), pixels=NATIVE, pool=pool, interval_frames=1) as d:
        return list(framemd5_lines(d, rate, start, Fraction(sar) if sar else None))


@needs_ffmpeg
@pytest.mark.parametrize("name", [n for n in ALL if n != "h264_rotated_mp4"])
def test_framemd5_matches_ffmpeg_cli(clips, pool, name):
    path = _get(clips, name)
    theirs, mine = _ffmpeg_framemd5(path, vfr=name == "h264_vfr_mkv"), _our_framemd5(path, pool)
    body = lambda lines: [ln.split(",")[-2:] for ln in lines if not ln.startswith("#")]  # noqa: E731
    assert body(mine) == body(theirs)  # size and hash of every frame, in order
    if name != "h264_vfr_mkv":  # constant frame rate: the whole output is identical
        assert mine == theirs


@pytest.mark.parametrize(
    "sampling",
    [Uniform(7), EveryFps(3.0), AtTimes((0.0, 0.41, 1.0, 1.234, 2.5, 99.0)), Uniform(1)],
    ids=["uniform7", "fps3", "at", "uniform1"],
)
@pytest.mark.parametrize(
    "name", ["h264_bframes_audio_mp4", "h264_opengop_mkv", "h264_ts_start", "h264_vfr_mkv", "vp9_webm"]
)
def test_sampling_matches_sequential_pick(clips, pool, name, sampling):
    path = _get(clips, name)
    got = ours(path, pool, sampling=sampling)
    assert [g[:3] for g in got] == _sequential_picks(path, sampling)


def _sequential_picks(path, sampling) -> list[tuple[int, bool, str]]:
    """(pts, keyframe, md5) of the frames a sequential decode picks for the request, in pts order."""
    ref = sequential(path)
    order = sorted(ref, key=lambda r: r[0])
    t0 = order[0][3]
    times_rel = [r[3] - t0 for r in order]
    with av.open(str(path)) as c:
        tb = c.streams.video[0].time_base
        durs = [p.duration for p in c.demux(c.streams.video[0]) if p.size and p.duration]
    step = float(np.median(durs) * tb) if durs else times_rel[-1] / max(1, len(order) - 1)
    duration = times_rel[-1] + step
    if isinstance(sampling, Uniform):
        req = [k * duration / sampling.n for k in range(sampling.n)]
    elif isinstance(sampling, EveryFps):
        req = [k / sampling.fps for k in range(int(np.ceil(duration * sampling.fps - 1e-9)))]
    else:
        req = list(sampling.times)
    picked = []
    for t in req:
        i = max([j for j, x in enumerate(times_rel) if x <= t + 1e-6], default=0)
        if order[i] not in picked:
            picked.append(order[i])
    picked.sort(key=lambda r: r[0])
    return [p[:3] for p in picked]


@pytest.fixture
def slow_index(monkeypatch):
    """The packet index is demuxed (MP4 sample tables off) and publishes each GOP 40 ms late, so
    sampled decoding plans while it grows."""
    from streamrt.ingest import index
    from streamrt.ingest.index import PacketIndex

    monkeypatch.setattr(index, "sample_table_index", lambda *a: None)

    extend = PacketIndex.extend

    def slow(self, rows):
        time.sleep(0.04)
        extend(self, rows)

    monkeypatch.setattr(PacketIndex, "extend", slow)


@pytest.mark.parametrize(
    "sampling",
    [Uniform(7), EveryFps(3.0), AtTimes((0.0, 0.41, 1.0, 1.234, 2.5, 99.0))],
    ids=["uniform7", "fps3", "at"],
)
@pytest.mark.parametrize("name", ["h264_bframes_audio_mp4", "hevc_mp4"])
def test_sampling_before_the_index_is_complete(clips, pool, slow_index, name, sampling):
    """GOPs planned from the growing index and the header's duration are decoded at once; the frames
    delivered (only after the complete index confirmed the plan) are the sequential decode's picks."""
    path = _get(clips, name)
    with FileDecoder(str(path), pixels=NATIVE, pool=pool, sampling=sampling) as d:
        got = [hashlib.md5(f.pixels).hexdigest() for f in d]
        report = d.report
    assert report.speculated_intervals > 0 and not report.replanned
    assert got == [p[2] for p in _sequential_picks(path, sampling)]


def test_sampling_replans_when_the_header_duration_is_wrong(clips, pool, slow_index):
    """A header duration half the real one makes the speculative picks wrong: what was decoded is
    dropped, the exact plan is decoded, and the frames are still the sequential decode's picks."""
    path = _get(clips, "h264_bframes_audio_mp4")
    d = FileDecoder(str(path), pixels=NATIVE, pool=pool, sampling=Uniform(7))
    d._header_span //= 2  # as a container whose header understates the duration would say
    with d:
        got = [hashlib.md5(f.pixels).hexdigest() for f in d]
        report = d.report
    assert report.speculated_intervals > 0 and report.replanned
    assert got == [p[2] for p in _sequential_picks(path, Uniform(7))]


@pytest.mark.parametrize("name", ["h264_opengop_mkv", "hevc_mp4"])
def test_borrowed_frames_are_exact_read_only_views(clips, pool, name):
    """borrow=True: no copy in the consumer's process; each view is exact while it is current."""
    path = _get(clips, name)
    with FileDecoder(
        str(path), pixels=NATIVE, pool=pool, borrow=True, interval_frames=1, head_thread=False
    ) as d:
        got = []
        for f in d:
            assert not f.pixels.flags.writeable
            got.append(hashlib.md5(f.pixels).hexdigest())
    assert got == [r[2] for r in sequential(path)]


def test_sparse_sampling_skips_gops(clips, pool):
    path = _get(clips, "h264_opengop_mkv")  # 4 s, GOP 20 at 30 fps: 6 GOPs
    with FileDecoder(str(path), pixels=NATIVE, pool=pool, sampling=Uniform(2)) as d:
        frames = list(d)
        assert len(frames) == 2 and d.report.intervals == 2


@pytest.mark.parametrize("name", ["h264_single_gop_mp4", "h264_bframes_audio_mp4", "h264_opengop_mkv"])
def test_sparse_sampling_at_b_frames_matches_sequential(clips, pool, name):
    """Request the exact time of every 5th frame (many are non-reference B-frames, decoded while
    the unwanted non-reference packets around them are skipped): the same pixels as a sequential decode."""
    path = _get(clips, name)
    ref = sorted(sequential(path))
    t0 = ref[0][3]
    want = ref[3::5]
    got = ours(path, pool, sampling=AtTimes(tuple(r[3] - t0 for r in want)))
    assert [g[:3] for g in got] == [w[:3] for w in want]


def test_sparse_interval_decodes_only_what_it_needs(clips):
    """One GOP, one wanted frame near its end: the decoder is fed every packet up to it but returns
    fewer frames (the non-reference B-frames were never decoded), and the wanted one is exact."""
    from streamrt.ingest.core import IntervalDecoder
    from streamrt.ingest.index import plan_wanted, start_index

    path = str(_get(clips, "h264_single_gop_mp4"))  # 75 frames, one keyframe, 2 B-frames
    ref = sorted(sequential(path))
    index = start_index(path)
    index.wait_done(30)
    (iv,) = plan_wanted(index, np.array([ref[-3][0]], np.int64))
    dec = IntervalDecoder(path, index.stream_index, NATIVE)
    try:
        (d,) = list(dec.run(iv))
    finally:
        dec.close()
    assert (d.pts, hashlib.md5(d.pixels).hexdigest()) == (ref[-3][0], ref[-3][2])
    assert dec.status.fed >= 70 and dec.status.decoded < dec.status.fed * 3 // 4


def test_rgb_and_resize_match_pyav_conversion(clips, pool):
    path = _get(clips, "h264_bframes_audio_mp4")
    spec = PixelSpec(format="rgb24", size=(96, 54))
    with FileDecoder(str(path), pixels=spec, pool=pool, interval_frames=1) as d:
        got = list(d)
    with av.open(str(path)) as c:
        ref = [
            fr.reformat(96, 54, "rgb24", interpolation="BILINEAR").to_ndarray() for fr in c.decode(video=0)
        ]
    assert len(got) == len(ref)
    assert all(
        g.pixels.shape == (54, 96, 3) and np.array_equal(g.pixels, r) for g, r in zip(got, ref, strict=True)
    )
    with FileDecoder(str(path), pixels=PixelSpec(format="gray", short_side=36), pool=pool) as d:
        f = next(iter(d))
        assert f.pixels.shape == (36, 64) and f.pix_fmt == "gray"


@needs_ffmpeg
def test_rotation_metadata_applied_like_ffmpeg(clips, pool):
    path = _get(clips, "h264_rotated_mp4")
    with FileDecoder(str(path), pool=pool, sampling=AtTimes((0.0,))) as d:
        f = next(iter(d))
    raw = subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-i",
            str(path),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    ref = np.frombuffer(raw, np.uint8).reshape(192, 108, 3)  # ffmpeg autorotates: 192x108 -> 108 wide
    assert f.pixels.shape == ref.shape
    err = np.abs(f.pixels.astype(int) - ref).mean()
    wrong = np.abs(np.rot90(f.pixels, 2).astype(int) - ref).mean()
    assert err < 3.0 < wrong  # same picture up to colour-conversion rounding; the opposite turn is far off


def test_timestamps_and_start_offset(clips, pool):
    path = _get(clips, "h264_ts_start")
    with FileDecoder(str(path), pixels=NATIVE, pool=pool) as d:
        frames = list(d)
    assert frames[0].t == 0.0 and frames[0].pts > 1.0  # MPEG-TS starts at 1.4 s
    assert all(b.t > a.t for a, b in zip(frames, frames[1:], strict=False))
    assert frames[0].keyframe and frames[-1].t == pytest.approx((len(frames) - 1) / 25, abs=1e-6)


@pytest.mark.parametrize(
    "name", ["h264_opengop_mkv", "h264_ts_start", "h264_bframes_audio_mp4", "hevc_mp4", "vp9_webm"]
)
def test_frame_threaded_tail_is_frame_exact(clips, pool, name):
    """The last interval of a full decode runs on one frame-threaded decoder; here the whole file is
    that one interval: every frame equals the sequential single-threaded decode."""
    path = _get(clips, name)
    with FileDecoder(str(path), pixels=NATIVE, pool=pool, interval_frames=10**6, head_thread=False) as d:
        got = [hashlib.md5(f.pixels).hexdigest() for f in d]
        report = d.report
    assert report.intervals == 1 and report.threaded_intervals == 1
    assert got == [r[2] for r in sequential(path)]
    # many intervals: only the last is threaded, and the decoders saw every packet once
    with FileDecoder(str(path), pixels=NATIVE, pool=pool, interval_frames=1, head_thread=False) as d:
        got = [hashlib.md5(f.pixels).hexdigest() for f in d]
        report = d.report
    assert report.threaded_intervals == 1 < report.intervals
    assert got == [r[2] for r in sequential(path)]
    assert sum(report.worker_packets) == report.packets_fed >= len(got)


@pytest.mark.parametrize("name", ["h264_bframes_audio_mp4", "h264_opengop_mkv"])
def test_intervals_longer_than_twice_the_ring_are_frame_threaded_and_exact(clips, pool, name):
    """A tiny buffer (4 slots per worker) makes every GOP (15-20 frames) longer than twice a ring:
    each interval then runs on a frame-threaded decoder, and every frame still equals the
    sequential single-threaded decode."""
    path = _get(clips, name)
    kw = dict(pixels=NATIVE, pool=pool, interval_frames=1, head_thread=False, buffer_bytes=1)
    with FileDecoder(str(path), **kw) as d:
        got = [hashlib.md5(f.pixels).hexdigest() for f in d]
        report = d.report
    assert report.intervals > 2 and report.threaded_intervals == report.intervals
    assert got == [r[2] for r in sequential(path)]


def test_sampled_decode_reports_fed_and_decoded_counts(clips, pool):
    """Sampled H.264: the workers are fed exactly the planned packets (keyframe up to each
    interval's last wanted packet) and decode fewer (skipped non-reference packets)."""
    from streamrt.ingest.index import plan_wanted, start_index
    from streamrt.ingest.sampling import pick, request_times

    path = str(_get(clips, "h264_bframes_audio_mp4"))
    index = start_index(path)
    index.wait_done(30)
    fp = index.frame_pts()
    tb = index.time_base
    times = request_times(Uniform(5), float((index.end_pts() - int(fp[0])) * tb))
    plan = plan_wanted(index, pick(fp, int(fp[0]), tb, times))
    with FileDecoder(path, pixels=NATIVE, pool=pool, sampling=Uniform(5), head_thread=False) as d:
        frames = list(d)
        report = d.report
    assert len(frames) == 5 and report.threaded_intervals == 0
    assert report.packets_fed == sum(iv.n_packets for iv in plan) == sum(report.worker_packets)
    assert len(frames) <= report.frames_decoded < report.packets_fed

"""What a media file holds: streams, duration, frame rate and keyframe times (demux only, no decode).

`probe(path)` opens the file with typed errors, describes every stream and, for the first video
stream, lists the keyframe times from the packet index (an MP4's sample tables, else a demux
pass). Knows nothing about decoding pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import av

from streamrt.ingest.convert import open_file, video_stream
from streamrt.ingest.index import NOPTS, start_index
from streamrt.ingest.types import StreamInfo


def first_frame_rotation(path: str, stream_index: int) -> int:
    """Display rotation of the first decodable frame (degrees counter-clockwise, FFmpeg's convention).

    FFmpeg attaches the container's display matrix to every decoded frame; this is the one place the
    rotation is read from, so probe and decode agree. 0 when no frame decodes.
    """
    try:
        with open_file(path) as c:
            for fr in c.decode(c.streams[stream_index]):
                return int(round(fr.rotation))
    except av.error.FFmpegError:
        pass
    return 0


def stream_info(s: av.stream.Stream, rotation: int = 0) -> StreamInfo:
    tb = s.time_base
    start = float(s.start_time * tb) if s.start_time is not None and tb else None
    dur = float(s.duration * tb) if s.duration is not None and tb else None
    cc = s.codec_context  # None when FFmpeg does not know the codec (video_stream refuses those)
    if s.type == "video" and cc is not None:
        rate = s.average_rate or s.guessed_rate
        return StreamInfo(
            s.index,
            "video",
            cc.name,
            str(tb),
            start,
            dur,
            cc.width,
            cc.height,
            cc.format.name if cc.format else "",
            float(rate) if rate else None,
            rotation,
        )
    if s.type == "audio" and cc is not None:
        return StreamInfo(
            s.index,
            "audio",
            cc.name,
            str(tb),
            start,
            dur,
            sample_rate=cc.sample_rate or 0,
            channels=cc.channels or 0,
        )
    return StreamInfo(s.index, s.type, cc.name if cc is not None else "", str(tb), start, dur)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    path: str
    format: str
    duration_s: float | None
    streams: list[StreamInfo]
    video_packets: int = 0
    keyframe_times_s: list[float] = field(default_factory=list)  # since the first frame
    problem: str = ""  # why the demux pass stopped early, if it did


_INDEX_TIMEOUT_S = 3600.0  # a demux pass over a very long file on a slow disk


def probe(path: str, *, keyframes: bool = True) -> ProbeResult:
    """Describe `path`; with `keyframes`, demux the video stream to list keyframe times."""
    path = str(path)
    with open_file(path) as c:
        streams = [stream_info(s) for s in c.streams]
        if c.streams.video:
            v = c.streams.video[0].index
            streams[v] = stream_info(c.streams[v], first_frame_rotation(path, v))
        fmt = c.format.name
        dur = c.duration / 1e6 if c.duration else None
        vs = video_stream(c, path)
        tb = Fraction(vs.time_base.numerator, vs.time_base.denominator)
    if not keyframes:
        return ProbeResult(path, fmt, dur, streams)
    index = start_index(path)  # MP4/MOV: from the sample tables, no demux pass
    index.wait_done(_INDEX_TIMEOUT_S)
    pts, key, _ = index.arrays()
    valid = pts[pts != NOPTS]
    first = int(valid.min()) if valid.size else 0
    times = [float((int(p) - first) * tb) for p, k in zip(pts, key, strict=True) if k and p != NOPTS]
    return ProbeResult(path, fmt, dur, streams, len(index), sorted(times), index.problem)

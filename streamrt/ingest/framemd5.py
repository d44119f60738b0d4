"""Lines in the format of `ffmpeg -i FILE -map 0:v -fflags +bitexact -f framemd5 -`.

Each frame's MD5 is over its native pixel format with planes packed without row padding (what
ffmpeg's rawvideo encoder hands the framemd5 muxer), so `diff` against ffmpeg's output checks a
decode bit for bit. Timestamps are in ffmpeg's output time base (1 / the stream's guessed frame
rate) and shifted by the container's start time, as ffmpeg does without `-copyts`.

What cannot match: the `#software:` line (ffmpeg prints it unless `-fflags +bitexact`; we never
print it), and for variable-frame-rate files the pts/duration columns (ffmpeg rounds to its output
time base; add `-fps_mode passthrough` so it does not also drop frames that land on the same tick);
the size and hash columns always match.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from fractions import Fraction

from streamrt.ingest.types import Frame


def header(width: int, height: int, tb: Fraction, sar: Fraction | None) -> list[str]:
    s = sar if sar else Fraction(0, 1)
    return [
        "#format: frame checksums",
        "#version: 2",
        "#hash: MD5",
        f"#tb 0: {tb.numerator}/{tb.denominator}",
        "#media_type 0: video",
        "#codec_id 0: rawvideo",
        f"#dimensions 0: {width}x{height}",
        f"#sar 0: {s.numerator}/{s.denominator}",
        "#stream#, dts,        pts, duration,     size, hash",
    ]


def line(pts: int, duration: int, size: int, md5: str) -> str:
    return f"0, {pts:10d}, {pts:10d}, {duration:8d}, {size:8d}, {md5}"


def framemd5_lines(
    frames: Iterable[Frame], rate: Fraction, container_start_s: float, sar: Fraction | None
) -> Iterator[str]:
    """Header then one line per frame (frames must be "native" pixels)."""
    tb = 1 / rate
    first = True
    for f in frames:
        if f.pix_fmt in ("rgb24", "bgr24", "gray"):
            raise ValueError("framemd5 needs frames in their native pixel format")
        if first:
            yield from header(f.width, f.height, tb, sar)
            first = False
        pts = round(Fraction(f.pts - container_start_s) / tb)
        dur = max(1, round(Fraction(f.duration) / tb)) if f.duration else 1
        yield line(pts, dur, f.pixels.nbytes, hashlib.md5(f.pixels).hexdigest())

"""Written files: decode with the ffmpeg CLI and PyAV, frame counts, exact keyframe interval and
B-frames, and the timeline (read back from JSONL) against the decoded pixels."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from streamrt.synth import SynthError, World, WorldConfig, read_timeline, render, timeline_path, write_video

CFG = WorldConfig.preset("busy", seed=18)  # 320x180, 30 fps; its first 6 s hold every kind of event


def decode(path: Path) -> tuple[list[np.ndarray], list[int], list[bool]]:
    """Frames (RGB), picture types (1 I, 2 P, 3 B) and key flags, in presentation order."""
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    return (
        [f.to_ndarray(format="rgb24") for f in frames],
        [int(f.pict_type) for f in frames],
        [f.key_frame for f in frames],
    )


def ffmpeg_count(path: Path) -> int:
    """Frames the ffmpeg CLI decodes (and asserts it reports no error)."""
    r = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(r.stdout.split()[0])  # mpegts also prints its program's streams


needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg CLI not installed")


@needs_ffmpeg
@pytest.mark.parametrize(
    ("name", "codec", "gop", "bframes"),
    [
        ("a.mp4", "h264", 12, 0),
        ("b.mp4", "h264", 15, 2),
        ("c.mkv", "hevc", 10, 3),
        ("d.webm", "vp9", 20, 0),
        ("e.mov", "mpeg4", 9, 2),
        ("f.ts", "h264", 30, 1),
    ],
)
def test_decodes_with_exact_gop_and_bframes(tmp_path, name, codec, gop, bframes):
    info = write_video(tmp_path / name, World(CFG), 2.0, codec=codec, gop=gop, bframes=bframes)
    assert info.frames == 60 and info.timeline == timeline_path(tmp_path / name) and info.timeline.exists()
    assert ffmpeg_count(info.path) == 60
    frames, types, keys = decode(info.path)
    assert len(frames) == 60
    want = [i % gop == 0 for i in range(60)]
    if codec == "mpeg4":  # the mpeg4 encoder closes the stream on an intra frame
        want[-1] = keys[-1]
    assert keys == want
    assert (3 in types) == (bframes > 0)
    if bframes:  # fixed pattern: never more than `bframes` B-frames in a row, and that many occur
        runs = "".join("B" if t == 3 else "." for t in types).split(".")
        assert max(map(len, runs)) == bframes


def test_timeline_matches_decoded_pixels(tmp_path, nearest, centres, covers):
    """Oracle: the JSONL alone gives each event's object colour and centre; the decoded frame must
    show that colour there (nearest palette colour), unless an object above covers the point.
    Which objects are above comes from replaying the world from the header's config; points within
    3 pixels of an object above are skipped (compression blends edges)."""
    info = write_video(tmp_path / "t.mp4", World(CFG), 6.0, gop=30, bframes=2, crf=18)
    header, events = read_timeline(info.timeline)
    cfg = WorldConfig.from_dict(header["config"])
    assert cfg == CFG and header["video"]["frames"] == info.frames and len(events) == info.events
    frames, _, _ = decode(info.path)
    replay = World(cfg)
    scenes = []
    for _ in range(info.frames):
        replay.step()
        scenes.append(replay.state())
    by_frame: dict[int, list] = {}
    for e in events:
        by_frame.setdefault(e.frame, []).append(e)
    checked = 0
    kinds = set()
    for k, evs in by_frame.items():
        scene, px = scenes[k], frames[k]
        assert np.abs(px.astype(int) - render(scene).astype(int)).mean() < 4  # decoded ~= rendered
        centres(scene, px, False)
        ids = {o.id for o in scene.objects}
        for e in evs:
            kinds.add(e.kind)
            assert e.t == pytest.approx(k / cfg.fps)
            if e.kind == "leave":
                assert e.object_id not in ids and e.object_id in {o.id for o in scenes[k - 1].objects}
                continue
            if e.object_id is None:
                continue
            assert e.object_id in ids
            o = scene.find(e.object_id)
            x, y = float(e.attrs["x"]) * scene.width, float(e.attrs["y"]) * scene.height
            row, col = min(int(y), scene.height - 1), min(int(x), scene.width - 1)
            if covers(scene, o, scene.width, scene.height, row, col, margin=3.0):
                continue
            name, dist = nearest(px[row, col])
            assert name == e.attrs["colour"], (e, name, dist)
            checked += 1
    assert checked > 10 and {"enter", "leave", "bounce", "colour_change", "cut"} <= kinds


def test_same_seed_same_file_bytes(tmp_path):
    a = write_video(tmp_path / "a.mp4", World(CFG), 1.0)
    b = write_video(tmp_path / "b.mp4", World(CFG), 1.0)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.timeline.read_text().replace("a.mp4", "b.mp4") == b.timeline.read_text()


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"path": "x.avi"}, "E_SYNTH_CONTAINER"),
        ({"codec": "xvid"}, "E_SYNTH_CODEC"),
        ({"path": "x.webm", "codec": "h264"}, "E_SYNTH_CODEC"),
        ({"path": "x.webm", "codec": "vp9", "bframes": 2}, "E_SYNTH_CODEC"),
        ({"gop": 0}, "E_SYNTH_ARGS"),
    ],
)
def test_bad_arguments_raise_typed_errors(tmp_path, kwargs, code):
    path = tmp_path / kwargs.pop("path", "x.mp4")
    with pytest.raises(SynthError) as ei:
        write_video(path, World(CFG), 1.0, **kwargs)
    assert ei.value.code == code and not path.exists()


def test_bad_timeline_raises(tmp_path):
    p = tmp_path / "bad.events.jsonl"
    p.write_text('{"type": "event"}\n')
    with pytest.raises(SynthError) as ei:
        read_timeline(p)
    assert ei.value.code == "E_SYNTH_TIMELINE" and str(p) in str(ei.value)


def test_unwritable_path_raises_write_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SynthError) as ei:
        write_video(tmp_path / "file" / "x.mp4", World(CFG), 1.0)
    assert ei.value.code == "E_SYNTH_WRITE" and "x.mp4" in str(ei.value)
    with pytest.raises(SynthError) as ei:
        write_video(tmp_path / "x.mp4", World(CFG), 1.0, pix_fmt="nonsense")
    assert ei.value.code == "E_SYNTH_WRITE" and "x.mp4" in str(ei.value)

"""No orphan processes, no leaked shared memory, no hangs: early close, exceptions, dead workers, Ctrl-C.

Checks use the operating system as the oracle: /proc (is a pid alive, which processes belong to a
session) and /dev/shm (shared-memory segments).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest

from streamrt.ingest import DecodePool, FileDecoder, PixelSpec, Uniform
from streamrt.ingest.errors import WorkerFailed

from .conftest import _X264, HAVE_FFMPEG, _make_ffmpeg, needs_ffmpeg  # noqa: TID252

NATIVE = PixelSpec(format="native")


def _shm() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def _owned(pool) -> set[str]:
    """/dev/shm entries of this pool: its shared-memory block and its named semaphores.

    (Comparing whole /dev/shm listings is flaky on a machine where other processes create entries.)
    """
    names = {pool._shm.name.lstrip("/")} if pool._shm is not None else set()
    for sem in [*pool._items, *pool._free]:
        names.add("sem." + sem._semlock.name.lstrip("/"))
    return names


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_dead(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """~600 frames: long enough to interrupt a decode in the middle."""
    if not HAVE_FFMPEG:
        pytest.skip("ffmpeg CLI not installed")
    out = tmp_path_factory.mktemp("long") / "long.mp4"
    return _make_ffmpeg(out, [*_X264, "-g", "30"], 20, 30, [], size="320x180")


def test_early_close_stops_private_pool_and_frees_memory(clips):
    d = FileDecoder(str(clips["h264_vfr_mkv"]), workers=2, interval_frames=1, head_thread=False)
    it = iter(d)
    next(it), next(it)
    pids = d._pool.pids()
    owned = _owned(d._pool)
    assert pids and all(_alive(p) for p in pids) and owned <= _shm()
    d.close()
    assert _wait_dead(pids), "worker processes outlived close()"
    assert not (owned & _shm()), "shared memory or semaphores leaked"


def test_exception_in_consumer_cleans_up(clips):
    with pytest.raises(RuntimeError, match="consumer failed"):
        with FileDecoder(str(clips["h264_vfr_mkv"]), workers=2, head_thread=False) as d:
            for i, _ in enumerate(d):
                if i == 3:
                    pids, owned = d._pool.pids(), _owned(d._pool)
                    raise RuntimeError("consumer failed")
    assert _wait_dead(pids) and not (owned & _shm())


def test_abandoned_iterator_is_cleaned_by_generator_close(clips, pool):
    """A shared pool keeps one shared-memory block for all its decodes: no new block per decode."""
    with FileDecoder(str(clips["h264_vfr_mkv"]), pool=pool) as d:
        next(iter(d))
    block = pool._shm.name
    for _ in range(3):
        d = FileDecoder(str(clips["h264_vfr_mkv"]), pool=pool, interval_frames=1)
        it = iter(d)
        next(it)
        del it  # the generator's finally runs: session ended
        d.close()
        assert pool.session is None
    assert pool._shm.name == block


def test_shared_pool_is_reusable_after_cancel(clips, pool):
    path = str(clips["h264_vfr_mkv"])
    with FileDecoder(path, pool=pool, pixels=NATIVE, interval_frames=1, head_thread=False) as d:
        first = [hashlib.md5(f.pixels).hexdigest() for f in d]
    for _ in range(3):  # cancel in the middle, several times
        with FileDecoder(path, pool=pool, pixels=NATIVE, interval_frames=1, head_thread=False) as d:
            next(iter(d))
    with FileDecoder(path, pool=pool, pixels=NATIVE, interval_frames=1, head_thread=False) as d:
        again = [hashlib.md5(f.pixels).hexdigest() for f in d]
    assert again == first and len(first) == 70


def _sequential_md5(path) -> list[tuple[int, str]]:
    """Oracle: (pts, md5 of the native planes packed) of every frame, plain sequential PyAV."""
    import av
    import numpy as np

    out = []
    with av.open(str(path)) as c:
        for fr in c.decode(video=0):
            planes = [
                np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width].tobytes()
                for p in fr.planes
            ]
            out.append((fr.pts, hashlib.md5(b"".join(planes)).hexdigest()))
    return out


def _kill_workers(pool, which: list[int]) -> list[int]:
    pids = [pool._procs[w].pid for w in which]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


@needs_ffmpeg
@pytest.mark.parametrize("borrow", [False, True])
def test_killed_worker_is_replaced_and_its_intervals_redone(long_clip, borrow):
    """SIGKILL both workers in the middle of a file: both are replaced, the frames they held are
    decoded again, and the output still equals the sequential decode (nothing lost, nothing twice)."""
    ref = _sequential_md5(long_clip)
    with DecodePool(2) as p:
        with FileDecoder(
            str(long_clip),
            pool=p,
            pixels=NATIVE,
            head_thread=False,
            timeout=60,
            interval_frames=30,
            buffer_bytes=3 << 20,
            borrow=borrow,
        ) as d:  # small rings: the workers are mid-interval when they are killed
            tb = Fraction(d.info.time_base)
            got, killed = [], []
            for i, f in enumerate(d):
                got.append((round(Fraction(f.pts) / tb), hashlib.md5(f.pixels).hexdigest()))
                if i == 100:
                    killed = _kill_workers(p, [0, 1])
            assert d.report.worker_restarts == 2 and p.restarts == 2
        assert _wait_dead(killed) and not set(killed) & set(p.pids())
        assert got == ref
        with FileDecoder(str(long_clip), pool=p, pixels=NATIVE, sampling=Uniform(5)) as d:
            assert len(list(d)) == 5  # the pool goes on with its new workers


@needs_ffmpeg
def test_killed_worker_beyond_max_restarts_is_a_typed_error(long_clip):
    t = time.monotonic()
    with DecodePool(2) as p:
        owned = _owned(p)
        with (
            pytest.raises(WorkerFailed) as ei,
            FileDecoder(
                str(long_clip),
                pool=p,
                head_thread=False,
                timeout=60,
                interval_frames=30,
                buffer_bytes=3 << 20,
                max_restarts=0,
            ) as d,
        ):
            for i, _ in enumerate(d):
                if i == 5:
                    owned |= _owned(p)
                    _kill_workers(p, [0, 1])
        assert ei.value.code == "E_INGEST_WORKER"
        assert "killed by signal 9" in str(ei.value) and str(long_clip) in str(ei.value)
        owned |= _owned(p)
    assert time.monotonic() - t < 60 and not (owned & _shm())


@needs_ffmpeg
def test_worker_killed_again_and_again_never_hangs(long_clip):
    """A killer thread SIGKILLs every worker it sees: bounded restarts, then WorkerFailed."""
    stop = threading.Event()
    with DecodePool(2) as p:

        def killer() -> None:
            while not stop.wait(0.05):
                for proc in list(p._procs):
                    if proc is not None and proc.pid and proc.is_alive():
                        try:
                            os.kill(proc.pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass

        t = time.monotonic()
        d = FileDecoder(str(long_clip), pool=p, head_thread=False, timeout=60, max_restarts=3)
        threading.Thread(target=killer, daemon=True).start()
        try:
            with pytest.raises(WorkerFailed, match="max_restarts=3"), d:
                for _ in d:
                    pass
        finally:
            stop.set()
        assert d.report.worker_restarts == 3 and time.monotonic() - t < 60


def _session_procs(sid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().split(")")[-1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                out.append(int(d))
    return out


@needs_ffmpeg
def test_cli_ctrl_c_leaves_no_orphans(long_clip, tmp_path):
    """`streamrt decode` under SIGINT: exit code 130, every worker gone, no shared memory left."""
    out = tmp_path / "frames"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamrt", "decode", str(long_clip), "--out", str(out), "--no-progress"],
        start_new_session=True,
        stderr=subprocess.PIPE,
    )
    tsv = out / "frames.tsv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not tsv.exists() or tsv.read_text().count("\n") < 20):
        time.sleep(0.05)
    assert proc.poll() is None, "decode finished before it could be interrupted"
    os.kill(proc.pid, signal.SIGINT)
    rc = proc.wait(timeout=30)
    assert rc == 130, proc.stderr.read().decode()
    deadline = time.monotonic() + 10
    while _session_procs(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _session_procs(proc.pid) == []
    assert not [n for n in _shm() if n.startswith(f"streamrt_{proc.pid}_")]  # the pool names its block


def test_pool_from_a_stdin_script(clips):
    """Spawned workers must not re-run the parent's __main__ (a stdin script, a REPL, pytest)."""
    code = textwrap.dedent(f"""
        from streamrt.ingest import FileDecoder
        with FileDecoder({str(clips["h264_vfr_mkv"])!r}, workers=2, head_thread=False) as d:
            print(sum(1 for _ in d))
    """)
    r = subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "70"


def test_memory_is_bounded_by_buffer_bytes(clips):
    """The rings hold at most buffer_bytes of frames (min 4 slots per worker), whatever the length."""
    path = str(clips["h264_opengop_mkv"])  # 192x108 yuv420p: 31104 bytes a frame
    ref = None
    with FileDecoder(path, pixels=NATIVE, workers=2, head_thread=False, buffer_bytes=400_000) as d:
        got = []
        for f in d:
            got.append(hashlib.md5(f.pixels).hexdigest())
            shm_size = d._pool._shm.size
            time.sleep(0.001)  # a slow consumer: workers must wait for free slots, not grow
        ref = got
    slots = 400_000 // (2 * 31104)
    assert shm_size <= 2 * slots * 31104 + 64 * 2 * slots + 4096
    with FileDecoder(path, pixels=NATIVE, workers=2) as d:
        assert [hashlib.md5(f.pixels).hexdigest() for f in d] == ref

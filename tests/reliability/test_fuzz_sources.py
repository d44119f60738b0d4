"""Fuzzing the file source (streamrt.ingest's FileDecoder, what `open_source` gives for a file) with
corrupted and truncated video bytes, under hypothesis with a fixed budget.

Property: every input either yields frames (timestamps non-decreasing, pixels of the declared
size) and ends, or raises an `IngestError` whose `code` is one of ingest's ERROR_CODES; never
another exception, never a hang (each file must finish within HANG_S, watched from another
thread), never a crash of the test process. Damage: truncation at any offset, random bytes
overwritten (anywhere, or past the container header), a zeroed range, a range duplicated, random
bytes inserted; on an MP4 (moov at the end, as PyAV writes it) and on a Matroska remux of it.
Decoding runs in the real worker processes (one shared DecodePool, as a server would hold).

Found by this fuzzer and fixed: an MP4 whose sample entry names an unknown codec made
`FileDecoder(path)` raise AttributeError (PyAV gives no codec context for it); it now raises
`UnsupportedFormat`, kept as the regression test `test_unknown_codec_is_a_typed_error`.
"""

from __future__ import annotations

import subprocess
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrt.ingest import ERROR_CODES, FileDecoder, IngestError
from streamrt.ingest.pool import DecodePool

from .conftest import budget  # noqa: TID252

HANG_S = 60.0
COUNT = {"files": 0, "frames": 0, "typed_errors": 0}
ORIGINALS: dict[str, bytes] = {}
"""Undamaged clips by container (module-level, so hypothesis does not print them with an example)."""


@pytest.fixture(scope="module")
def pool():
    with DecodePool(1) as p:
        yield p


@pytest.fixture(scope="module")
def originals(clip, tmp_path_factory) -> None:
    ORIGINALS["mp4"] = clip.read_bytes()
    mkv = tmp_path_factory.mktemp("mkv") / "busy.mkv"
    cmd = ["ffmpeg", "-v", "error", "-i", str(clip), "-c", "copy", str(mkv)]
    if subprocess.run(cmd, capture_output=True).returncode == 0:
        ORIGINALS["mkv"] = mkv.read_bytes()


damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1), st.just(0), st.just(b"")),
    st.tuples(st.just("overwrite"), st.floats(0, 1), st.integers(1, 64), st.binary(min_size=1, max_size=64)),
    st.tuples(
        st.just("overwrite_body"), st.floats(0, 1), st.integers(1, 512), st.binary(min_size=1, max_size=8)
    ),
    st.tuples(st.just("zero"), st.floats(0, 1), st.integers(1, 4096), st.just(b"")),
    st.tuples(st.just("duplicate"), st.floats(0, 1), st.integers(1, 4096), st.just(b"")),
    st.tuples(st.just("insert"), st.floats(0, 1), st.just(0), st.binary(min_size=1, max_size=256)),
)


def corrupt(data: bytes, how: tuple[str, float, int, bytes]) -> bytes:
    kind, where, n, junk = how
    at = int(where * len(data))
    if kind == "truncate":
        return data[:at]
    if kind == "overwrite":
        return data[:at] + junk[:n] + data[at + len(junk[:n]) :]
    if (
        kind == "overwrite_body"
    ):  # many small hits past the first 1 KiB (keeps the header readable more often)
        b = bytearray(data)
        for i in range(n):
            p = 1024 + (at + i * 7919) % max(1, len(b) - 1024)
            b[p] = junk[i % len(junk)]
        return bytes(b)
    if kind == "zero":
        return data[:at] + bytes(len(data[at : at + n])) + data[at + n :]
    if kind == "duplicate":
        return data[: at + n] + data[at : at + n] + data[at + n :]
    return data[:at] + junk + data[at:]


def decode(path: str, pool: DecodePool) -> tuple[int, BaseException | None]:
    """(frames, the exception raised or None), from a thread watched for HANG_S seconds."""
    result: list = []

    def work() -> None:
        n, last = 0, float("-inf")
        try:
            dec = FileDecoder(path, pool=pool, timeout=HANG_S / 2)
            try:
                for f in dec:
                    assert f.t >= last - 1e-6, "timestamps go backwards"
                    assert f.pixels.shape == (dec.info.height, dec.info.width, 3)
                    last = f.t
                    n += 1
            finally:
                dec.close()
            result.append((n, None))
        except BaseException as e:  # noqa: BLE001 - judged by the caller
            result.append((n, e))

    th = threading.Thread(target=work, daemon=True)
    th.start()
    th.join(HANG_S)
    assert not th.is_alive(), f"{path}: decoding hung for {HANG_S} s"
    return result[0]


@settings(
    max_examples=budget(25),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(st.sampled_from(["mp4", "mkv"]), damage)
def test_fuzz_file_source(tmp_path_factory, pool, originals, fmt, how):
    fmt = fmt if fmt in ORIGINALS else "mp4"
    data = ORIGINALS[fmt]
    path = tmp_path_factory.mktemp("fz") / f"damaged.{fmt}"
    path.write_bytes(corrupt(data, how))
    frames, err = decode(str(path), pool)
    COUNT["files"] += 1
    COUNT["frames"] += frames
    if err is not None:
        assert isinstance(err, IngestError), f"{how[0]}: {type(err).__name__}: {err}"
        assert err.code in ERROR_CODES and (str(path) in str(err) or err.source == str(path)), err
        COUNT["typed_errors"] += 1


def test_undamaged_file_decodes(clip, pool):
    frames, err = decode(str(clip), pool)
    assert err is None and frames == 100  # the oracle for "frames": 10 s at 10 fps


def test_unknown_codec_is_a_typed_error(clip, tmp_path):
    data = clip.read_bytes()
    i = data.rfind(b"avc1")  # the stsd sample entry (PyAV writes moov at the end)
    bad = tmp_path / "unknown_codec.mp4"
    bad.write_bytes(data[:i] + b"\0\0\0\0" + data[i + 4 :])
    with pytest.raises(IngestError) as e:
        FileDecoder(str(bad)).close()
    assert e.value.code in ERROR_CODES


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    """Print what was fuzzed (run with -s to see it; docs/reliability.md quotes such a run)."""
    yield
    print(f"\n{__name__}: fuzzed {COUNT}")

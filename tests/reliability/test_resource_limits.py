"""The decoder under a resource limit: when the system refuses the shared memory for decoded
frames (here: a file-size limit, which also bounds /dev/shm segments), `FileDecoder` raises the
typed `OutOfResources` (`E_INGEST_RESOURCES`) naming the file, and leaves no segment behind.

The limit is armed in a child process (RLIMIT_FSIZE is per process and would hit the test runner's
own files); the child prints the error's code and message, the oracle is the exit status and that
line, plus /dev/shm before and after.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    from streamrt.ingest import FileDecoder, IngestError
    try:
        with FileDecoder(sys.argv[1]) as dec:
            next(iter(dec))
    except IngestError as e:
        print(e.code, e, sep="|")
        sys.exit(3)
    """
)


def _segments() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob("streamrt_*")}


def test_shared_memory_refused_is_a_typed_error(clip: Path) -> None:
    before = _segments()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(clip)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    code, message = proc.stdout.strip().split("|", 1)
    assert code == "E_INGEST_RESOURCES" and str(clip) in message and "shared memory" in message
    assert _segments() <= before  # the half-made segment was unlinked

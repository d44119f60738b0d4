"""Typed ingest errors with stable codes.

Every problem a source can have maps to one `IngestError` subclass whose `code` never changes
(clients and the server switch on it). The message names the source and the problem. Errors cross
process boundaries as `(code, message, detail)` tuples (`to_wire` / `from_wire`), so worker
processes never pickle exception objects. This module knows nothing about decoding.
"""

from __future__ import annotations


class IngestError(Exception):
    """Base class: `code` is stable, `source` names the file/URL/device, `detail` holds extra facts."""

    code = "E_INGEST"

    def __init__(self, message: str, *, source: str = "", detail: dict[str, float | str] | None = None):
        super().__init__(message)
        self.source = source
        self.detail = dict(detail or {})

    def to_wire(self) -> tuple[str, str, str, dict[str, float | str]]:
        return (self.code, str(self), self.source, self.detail)


class SourceNotFound(IngestError):
    code = "E_INGEST_NOT_FOUND"


class EmptyFile(IngestError):
    code = "E_INGEST_EMPTY"


class UnsupportedFormat(IngestError):
    """FFmpeg cannot read the container at all (not a media file, unknown format)."""

    code = "E_INGEST_UNSUPPORTED"


class NoVideoStream(IngestError):
    code = "E_INGEST_NO_VIDEO"


class CorruptData(IngestError):
    """The decoder rejected data in the middle of the stream; `detail['pts_s']` says where."""

    code = "E_INGEST_CORRUPT"


class Truncated(IngestError):
    """The file ends early; `detail['stopped_at_s']` is the time of the last valid frame."""

    code = "E_INGEST_TRUNCATED"


class BadRequest(IngestError):
    """Invalid options (sampling, size, ...) rather than bad media."""

    code = "E_INGEST_BAD_REQUEST"


class DeviceUnavailable(IngestError):
    code = "E_INGEST_DEVICE"


class SourceTimeout(IngestError):
    code = "E_INGEST_TIMEOUT"


class StreamLost(IngestError):
    """A live stream failed and every reconnect attempt failed too."""

    code = "E_INGEST_STREAM_LOST"


class BadImage(IngestError):
    """A pushed encoded image could not be recognised or decoded."""

    code = "E_INGEST_BAD_IMAGE"


class WorkerFailed(IngestError):
    """A decode worker process died or stopped answering."""

    code = "E_INGEST_WORKER"


class OutOfResources(IngestError):
    """The system refused what decoding needs (shared memory for the frame slots: a file-size
    limit, a full /dev/shm)."""

    code = "E_INGEST_RESOURCES"


_BY_CODE: dict[str, type[IngestError]] = {
    cls.code: cls
    for cls in (
        IngestError,
        SourceNotFound,
        EmptyFile,
        UnsupportedFormat,
        NoVideoStream,
        CorruptData,
        Truncated,
        BadRequest,
        DeviceUnavailable,
        SourceTimeout,
        StreamLost,
        BadImage,
        WorkerFailed,
        OutOfResources,
    )
}

ERROR_CODES: tuple[str, ...] = tuple(_BY_CODE)


def from_wire(wire: tuple[str, str, str, dict[str, float | str]]) -> IngestError:
    """Rebuild an error sent by `IngestError.to_wire` (unknown codes become the base class)."""
    code, message, source, detail = wire
    return _BY_CODE.get(code, IngestError)(message, source=source, detail=detail)

"""streamrt.ingest: video sources (files, webcams, network streams, pushed frames) as timestamped frames.

Entry point: `open_source(spec)`. Files decode in parallel worker processes (`FileDecoder`,
`DecodePool`), frame-exact against a sequential decode; live sources keep only the newest frame.
"""

from streamrt.ingest.decoder import FileDecoder
from streamrt.ingest.errors import ERROR_CODES, IngestError
from streamrt.ingest.live import NetworkSource, WebcamSource
from streamrt.ingest.pool import DecodePool
from streamrt.ingest.probe import ProbeResult, probe
from streamrt.ingest.pushed import PushedSource
from streamrt.ingest.source import open_source, source_kind
from streamrt.ingest.types import AtTimes, DecodeReport, EveryFps, Frame, Full, PixelSpec, StreamInfo, Uniform

__all__ = [
    "ERROR_CODES",
    "AtTimes",
    "DecodePool",
    "DecodeReport",
    "EveryFps",
    "FileDecoder",
    "Frame",
    "Full",
    "IngestError",
    "NetworkSource",
    "PixelSpec",
    "ProbeResult",
    "PushedSource",
    "StreamInfo",
    "Uniform",
    "WebcamSource",
    "open_source",
    "probe",
    "source_kind",
]

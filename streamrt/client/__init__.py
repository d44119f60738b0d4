"""streamrt.client: asyncio (`AsyncClient`) and blocking (`Client`) clients of protocol v1."""

from streamrt.client.client import AsyncClient, ClientError
from streamrt.client.events import (
    End,
    Event,
    OutputFrameEvent,
    ParamsAck,
    Pong,
    Ready,
    ServerError,
    Stats,
    Text,
    Unknown,
)
from streamrt.client.sync import Client

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "End",
    "Event",
    "OutputFrameEvent",
    "ParamsAck",
    "Pong",
    "Ready",
    "ServerError",
    "Stats",
    "Text",
    "Unknown",
]

"""streamrt.server: the real-time websocket server (protocol v1, sessions, EDF scheduler, metrics).

Entry points: `Server(ServerConfig(...), {"generate": generate_factory(model)})` used as an async
context manager, or `streamrt serve`. docs/protocol.md is the wire specification.
"""

from streamrt.server.engine import InputFrame, OutputFrame, SessionEngine, StepResult, TextSegment
from streamrt.server.protocol import ERROR_CODES, SUBPROTOCOL, ProtocolError
from streamrt.server.security import ServerConfig, ServerConfigError
from streamrt.server.server import Server

__all__ = [
    "ERROR_CODES",
    "SUBPROTOCOL",
    "InputFrame",
    "OutputFrame",
    "ProtocolError",
    "Server",
    "ServerConfig",
    "ServerConfigError",
    "SessionEngine",
    "StepResult",
    "TextSegment",
]

"""Image payloads of the wire protocol: decode JPEG/WebP/PNG/raw RGB24 to pixels and encode them back.

Runs on the scheduler's worker thread (never on the event loop), so a frame dropped before its turn is
never decoded. Owns nothing; knows only OpenCV and the protocol's codec names.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from streamrt.server.protocol import Codec, ProtocolError

_EXT = {"jpeg": ".jpg", "webp": ".webp", "png": ".png"}


MAX_PIXELS = 3840 * 2160
"""Default bound on a decoded input frame (4K UHD, 25 MB as RGB)."""


def image_size(payload: bytes) -> tuple[int, int]:
    """(width, height) from an encoded image's header, without decoding it; raises E_BAD_IMAGE."""
    try:
        with Image.open(io.BytesIO(payload)) as im:
            return im.size
    except Exception as e:  # PIL raises many types on garbage (UnidentifiedImageError, SyntaxError, ...)
        raise ProtocolError("E_BAD_IMAGE", f"not a readable image header: {type(e).__name__}") from None


def decode_image(
    codec: Codec, payload: bytes, width: int = 0, height: int = 0, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """payload -> [H, W, 3] uint8 RGB; raises ProtocolError E_BAD_IMAGE, or E_TOO_LARGE for an image
    above `max_pixels` (checked on the header before decoding: a small compressed payload can expand
    to gigabytes)."""
    if codec == "raw":
        if width * height > max_pixels:
            raise ProtocolError("E_TOO_LARGE", f"raw {width}x{height} above {max_pixels} pixels")
        return np.frombuffer(payload, np.uint8).reshape(height, width, 3).copy()  # writable, owns its memory
    w, h = image_size(payload)
    if w * h > max_pixels:
        raise ProtocolError("E_TOO_LARGE", f"{codec} image of {w}x{h} above {max_pixels} pixels")
    img = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ProtocolError("E_BAD_IMAGE", f"{codec} payload of {len(payload)} bytes does not decode")
    if width and height and img.shape[:2] != (height, width):
        raise ProtocolError(
            "E_BAD_IMAGE", f"header says {width}x{height}, image is {img.shape[1]}x{img.shape[0]}"
        )
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def encode_image(pixels: np.ndarray, codec: Codec, quality: int = 85) -> bytes:
    """[H, W, 3] uint8 RGB -> payload bytes."""
    if codec == "raw":
        return np.ascontiguousarray(pixels, np.uint8).tobytes()
    params = {
        "jpeg": [cv2.IMWRITE_JPEG_QUALITY, quality],
        "webp": [cv2.IMWRITE_WEBP_QUALITY, quality],
        "png": [],
    }
    ok, buf = cv2.imencode(_EXT[codec], cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), params[codec])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB image
        raise RuntimeError(f"OpenCV failed to encode a {pixels.shape} image as {codec}")
    return buf.tobytes()

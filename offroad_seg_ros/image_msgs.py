"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge.

Works on any object with the message's fields (rclpy messages, rosbags
messages) and, for the node's raw subscriptions, straight on serialized CDR
bytes: `parse_image_cdr` returns a numpy view into the buffer, so no Python
message object is built per frame. numpy 1.26 and 2.x alike.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

# encoding -> (channels, dtype)
ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    "rgb8": (3, np.dtype(np.uint8)),
    "bgr8": (3, np.dtype(np.uint8)),
    "rgba8": (4, np.dtype(np.uint8)),
    "bgra8": (4, np.dtype(np.uint8)),
    "mono8": (1, np.dtype(np.uint8)),
    "8UC1": (1, np.dtype(np.uint8)),
    "8UC3": (3, np.dtype(np.uint8)),
    "mono16": (1, np.dtype(np.uint16)),
    "16UC1": (1, np.dtype(np.uint16)),
}


class ImageConversionError(ValueError):
    """An image message that cannot be converted (encoding, sizes, data)."""


@dataclass
class ImageView:
    """The fields of a sensor_msgs/Image (or CompressedImage: `format`, `data`)."""

    sec: int
    nanosec: int
    frame_id: str
    height: int = 0
    width: int = 0
    encoding: str = ""
    is_bigendian: int = 0
    step: int = 0
    data: Any = b""  # bytes-like
    format: str = ""  # CompressedImage only


def _describe(encoding: str, height: int, width: int, step: int, nbytes: int) -> str:
    return f"encoding={encoding!r} width={width} height={height} step={step} data={nbytes} bytes"


def to_array(encoding: str, height: int, width: int, step: int, is_bigendian: int, data: Any) -> np.ndarray:
    """(H, W) or (H, W, C) numpy view of an Image's data (a copy only for
    byte-swapped 16-bit data). Padded rows (step > width * bytes per pixel)
    are sliced off without copying."""
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8)
    nbytes = buf.size
    if encoding not in ENCODINGS:
        raise ImageConversionError(
            f"unsupported encoding: {_describe(encoding, height, width, step, nbytes)}; "
            f"supported: {', '.join(ENCODINGS)}"
        )
    channels, dtype = ENCODINGS[encoding]
    row = width * channels * dtype.itemsize
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"empty image: {_describe(encoding, height, width, step, nbytes)}")
    if step < row:
        raise ImageConversionError(
            f"step smaller than a row ({row} bytes): {_describe(encoding, height, width, step, nbytes)}"
        )
    if nbytes != step * height:
        raise ImageConversionError(
            f"data length != step x height ({step * height}): "
            f"{_describe(encoding, height, width, step, nbytes)}"
        )
    rows = buf.reshape(height, step)[:, :row]
    if dtype.itemsize == 1:
        arr = rows.reshape(height, width, channels)
    else:
        wire = dtype.newbyteorder(">" if is_bigendian else "<")
        arr = rows.view(wire).reshape(height, width, channels)
        if not wire.isnative:  # the one case that copies
            arr = arr.astype(dtype.newbyteorder("="))
    return arr[..., 0] if channels == 1 else arr


def to_rgb(array: np.ndarray, encoding: str) -> np.ndarray:
    """RGB uint8 (H, W, 3) for the model. mono16 keeps its 8 most significant bits."""
    if encoding == "rgb8" or encoding == "8UC3":
        return array
    if encoding == "bgr8":
        return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    if encoding == "rgba8":
        return cv2.cvtColor(array, cv2.COLOR_RGBA2RGB)
    if encoding == "bgra8":
        return cv2.cvtColor(array, cv2.COLOR_BGRA2RGB)
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_GRAY2RGB)


def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """Any sensor_msgs/Image-like object -> RGB uint8 (H, W, 3)."""
    arr = to_array(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)
    return to_rgb(arr, msg.encoding)


def compressed_to_rgb(fmt: str, data: Any) -> np.ndarray:
    """CompressedImage (jpeg / png, incl. "rgb8; jpeg compressed bgr8") -> RGB uint8."""
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    fmt_l = fmt.lower()
    if not any(k in fmt_l for k in ("jpeg", "jpg", "png")):
        raise ImageConversionError(f"unsupported CompressedImage format {fmt!r} ({buf.size} bytes)")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None:
        raise ImageConversionError(f"corrupt CompressedImage: format={fmt!r}, {buf.size} bytes")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def view_to_rgb(view: ImageView) -> np.ndarray:
    if view.format:
        return compressed_to_rgb(view.format, view.data)
    return to_rgb(to_array(view.encoding, view.height, view.width, view.step, view.is_bigendian, view.data),
                  view.encoding)


def image_fields(array: np.ndarray, encoding: str) -> dict[str, Any]:
    """Fields of an output sensor_msgs/Image (without header) for a C-contiguous
    array; `data` is the bytes of the array (one memcpy, no per-pixel work)."""
    array = np.ascontiguousarray(array)
    channels, dtype = ENCODINGS[encoding]
    if array.dtype != dtype or (array.shape[2] if array.ndim == 3 else 1) != channels:
        raise ImageConversionError(f"array {array.dtype} {array.shape} does not fit encoding {encoding!r}")
    height, width = array.shape[:2]
    return {"height": height, "width": width, "encoding": encoding,
            "is_bigendian": 0 if dtype.itemsize == 1 or dtype.byteorder != ">" else 1,
            "step": width * channels * dtype.itemsize, "data": array.tobytes()}


# -- serialized CDR (the node's raw subscription) -----------------------------
class _Cdr:
    """Minimal reader of the CDR subset sensor_msgs/Image uses. Hand-written:
    rosbags' deserializer builds a message object (and copies `data`), which is
    exactly the per-frame cost a raw subscription avoids."""

    def __init__(self, raw: bytes | memoryview):
        self.buf = memoryview(raw)
        if len(self.buf) < 4:
            raise ImageConversionError(f"serialized message too short ({len(self.buf)} bytes)")
        kind = self.buf[1]
        if self.buf[0] != 0 or kind not in (0, 1):
            raise ImageConversionError(f"unsupported CDR encapsulation {bytes(self.buf[:2]).hex()}")
        self.le = kind == 1
        self.pos = 4  # alignment counts from after the encapsulation header

    def _align(self, n: int) -> None:
        self.pos += (-(self.pos - 4)) % n

    def u32(self) -> int:
        self._align(4)
        if self.pos + 4 > len(self.buf):
            raise ImageConversionError("serialized message is truncated")
        (v,) = struct.unpack_from("<I" if self.le else ">I", self.buf, self.pos)
        self.pos += 4
        return v

    def i32(self) -> int:
        v = self.u32()
        return v - (1 << 32) if v >= 1 << 31 else v

    def u8(self) -> int:
        if self.pos >= len(self.buf):
            raise ImageConversionError("serialized message is truncated")
        v = self.buf[self.pos]
        self.pos += 1
        return v

    def string(self) -> str:
        n = self.u32()
        if n == 0 or self.pos + n > len(self.buf):
            raise ImageConversionError("serialized message has a bad string length")
        s = bytes(self.buf[self.pos:self.pos + n - 1]).decode("utf-8", "replace")
        self.pos += n
        return s

    def bytes_seq(self) -> memoryview:
        n = self.u32()
        if self.pos + n > len(self.buf):
            raise ImageConversionError(
                f"serialized message is truncated: data needs {n} bytes, {len(self.buf) - self.pos} left"
            )
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out


def parse_image_cdr(raw: bytes | memoryview) -> ImageView:
    """Serialized sensor_msgs/Image -> ImageView whose `data` is a view into `raw`."""
    r = _Cdr(raw)
    sec, nanosec, frame_id = r.i32(), r.u32(), r.string()
    height, width = r.u32(), r.u32()
    encoding = r.string()
    is_bigendian = r.u8()
    step = r.u32()
    return ImageView(sec, nanosec, frame_id, height, width, encoding, is_bigendian, step, r.bytes_seq())


def parse_compressed_cdr(raw: bytes | memoryview) -> ImageView:
    """Serialized sensor_msgs/CompressedImage -> ImageView (format + data view)."""
    r = _Cdr(raw)
    sec, nanosec, frame_id = r.i32(), r.u32(), r.string()
    fmt = r.string()
    return ImageView(sec, nanosec, frame_id, format=fmt or "unknown", data=r.bytes_seq())

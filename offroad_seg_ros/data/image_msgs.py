"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge.

Works on any object with the message's fields (rclpy messages, rosbags
messages) and, for the node's raw subscriptions, straight on serialized CDR
bytes: `parse_image_cdr` returns a numpy view into the buffer, so no Python
message object is built per frame. numpy 1.26 and 2.x alike.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import simplejpeg

from offroad_seg_ros.core.stamps import Stamp, to_ns

U8, U16 = np.dtype(np.uint8), np.dtype(np.uint16)
BAYER = ("rggb", "bggr", "gbrg", "grbg")
# encoding -> (channels, dtype): every input encoding the node takes.
ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    "rgb8": (3, U8), "bgr8": (3, U8), "rgba8": (4, U8), "bgra8": (4, U8), "mono8": (1, U8),
    "8UC1": (1, U8), "8UC3": (3, U8), "8UC4": (4, U8),
    "mono16": (1, U16), "16UC1": (1, U16),
    "rgb16": (3, U16), "bgr16": (3, U16), "rgba16": (4, U16), "bgra16": (4, U16),
    **{f"bayer_{p}{bits}": (1, U8 if bits == 8 else U16) for p in BAYER for bits in (8, 16)},
    "yuv422": (2, U8), "yuv422_yuy2": (2, U8),  # UYVY and YUYV, 2 bytes a pixel
}
# encoding -> OpenCV conversion to RGB, applied after 16-bit data is scaled to
# 8 bits (None: already RGB). The numeric 8UC3 / 8UC4 carry no channel order;
# OpenCV producers (and cv_bridge's cv2_to_imgmsg) mean BGR / BGRA by them.
# ROS names a Bayer pattern by its first row pair, OpenCV by the second: ROS
# rggb is OpenCV's BayerBG (the mapping cv_bridge uses).
_TO_RGB: dict[str, int | None] = {
    "rgb8": None, "rgb16": None,
    "bgr8": cv2.COLOR_BGR2RGB, "bgr16": cv2.COLOR_BGR2RGB, "8UC3": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB, "rgba16": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB, "bgra16": cv2.COLOR_BGRA2RGB, "8UC4": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB, "8UC1": cv2.COLOR_GRAY2RGB, "mono16": cv2.COLOR_GRAY2RGB,
    "16UC1": cv2.COLOR_GRAY2RGB,
    **{f"bayer_{p}{bits}": code for p, code in zip(BAYER, (cv2.COLOR_BayerBG2RGB, cv2.COLOR_BayerRG2RGB,
                                                           cv2.COLOR_BayerGR2RGB, cv2.COLOR_BayerGB2RGB))
       for bits in (8, 16)},
    "yuv422": cv2.COLOR_YUV2RGB_UYVY, "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
}
# Frames above this many pixels are refused before any decode or conversion:
# four 4K frames' worth, far above any camera, far below a decompression bomb.
MAX_PIXELS = 4 * 3840 * 2160
# Significant bits of 16-bit data: all 16 is cv_bridge's conversion to 8 bits.
FULL_BITS = 16


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


# Depth images (sensor_msgs/Image): millimetres in 16-bit, metres in float.
DEPTH_ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    "16UC1": (1, U16), "mono16": (1, U16), "32FC1": (1, np.dtype(np.float32)),
}


def to_array(encoding: str, height: int, width: int, step: int, is_bigendian: int, data: Any,
             encodings: dict[str, tuple[int, np.dtype]] = ENCODINGS) -> np.ndarray:
    """(H, W) or (H, W, C) numpy view of an Image's data (a copy only for
    byte-swapped multi-byte data). Padded rows (step > width * bytes per pixel)
    are sliced off without copying."""
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8)
    nbytes = buf.size
    if encoding not in encodings:
        raise ImageConversionError(
            f"unsupported encoding: {_describe(encoding, height, width, step, nbytes)}; "
            f"supported: {', '.join(encodings)}"
        )
    channels, dtype = encodings[encoding]
    row = width * channels * dtype.itemsize
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"empty image: {_describe(encoding, height, width, step, nbytes)}")
    if encoding.startswith("yuv422") and width % 2:
        raise ImageConversionError(
            f"{encoding} needs an even width: {_describe(encoding, height, width, step, nbytes)}")
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


def check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    if width * height > max_pixels:
        raise ImageConversionError(
            f"{what} is {width}x{height} = {width * height} pixels, above max_pixels={max_pixels}")


def check_max_pixels(max_pixels: int) -> None:
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")


def check_bits(bits: int) -> None:
    if not 8 <= bits <= 16:
        raise ValueError(f"input_bits (significant bits of 16-bit input) must be within 8..16, got {bits}")


@functools.lru_cache(maxsize=16)
def _scale_lut(bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    return np.round(np.minimum(np.arange(65536), top) * (255.0 / top)).astype(np.uint8)


def scale_to_8bit(array: np.ndarray, bits: int = FULL_BITS) -> np.ndarray:
    """uint16 data with `bits` significant bits -> uint8, round(v * 255 / (2^bits - 1)),
    values above the range saturating. bits=16 is cv_bridge's conversion to 8
    bits; a 12-bit camera in mono16 needs bits=12 to use the full range."""
    check_bits(bits)
    return _scale_lut(bits)[array]


def to_rgb(array: np.ndarray, encoding: str, bits: int = FULL_BITS) -> np.ndarray:
    """RGB uint8 (H, W, 3) for the model, from `to_array`'s view of `encoding`."""
    if array.dtype == np.uint16:
        array = scale_to_8bit(array, bits)
    code = _TO_RGB[encoding]
    return array if code is None else cv2.cvtColor(np.ascontiguousarray(array), code)


def image_msg_to_rgb(msg: Any, max_pixels: int = MAX_PIXELS, bits: int = FULL_BITS) -> np.ndarray:
    """Any sensor_msgs/Image-like object -> RGB uint8 (H, W, 3)."""
    check_pixels(msg.width, msg.height, max_pixels, f"image ({msg.encoding!r})")
    arr = to_array(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)
    return to_rgb(arr, msg.encoding, bits)


def compressed_dimensions(buf: np.ndarray) -> tuple[str, int, int]:
    """(kind, width, height) from a JPEG's frame header or a PNG's IHDR, read
    without decoding, so a small file that claims a huge size (a decompression
    bomb) is refused before anything is allocated. Anything else is refused."""
    data = np.ascontiguousarray(buf).data.cast("B")
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageConversionError(f"PNG without an IHDR header ({buf.size} bytes)")
        width, height = struct.unpack_from(">II", data, 16)
        return "png", width, height
    if data[:2] == b"\xff\xd8":
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                raise ImageConversionError(f"corrupt JPEG: no marker at byte {pos} ({buf.size} bytes)")
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
                pos += 2
                continue
            (length,) = struct.unpack_from(">H", data, pos + 2)
            if marker in _JPEG_SOF and pos + 9 <= len(data):
                height, width = struct.unpack_from(">HH", data, pos + 5)
                return "jpeg", width, height
            if marker == 0xDA or length < 2:  # scan data before any frame header
                break
            pos += 2 + length
        raise ImageConversionError(f"corrupt JPEG: no frame header ({buf.size} bytes)")
    raise ImageConversionError(f"data is neither JPEG nor PNG (starts {bytes(data[:8]).hex()}, {buf.size} bytes)")


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def compressed_to_rgb(fmt: str, data: Any, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """CompressedImage (jpeg / png, incl. "rgb8; jpeg compressed bgr8") -> RGB uint8."""
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    fmt_l = fmt.lower()
    if not any(k in fmt_l for k in ("jpeg", "jpg", "png")):
        raise ImageConversionError(f"unsupported CompressedImage format {fmt!r} ({buf.size} bytes)")
    kind, width, height = compressed_dimensions(buf)
    check_pixels(width, height, max_pixels, f"{kind} header")
    if width == 0 or height == 0:
        raise ImageConversionError(f"{kind} header says {width}x{height}: empty image")
    if kind == "jpeg":
        rgb = _decode_jpeg(buf)
        if rgb is not None:
            return rgb
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageConversionError(f"corrupt CompressedImage: format={fmt!r}, {buf.size} bytes: {exc}") from None
    if bgr is None:
        raise ImageConversionError(f"corrupt CompressedImage: format={fmt!r}, {buf.size} bytes")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# libjpeg's warnings that mean the picture is incomplete or damaged: it goes
# on decoding and fills what is missing with grey (a frame cut short in
# transit with an end marker appended decodes "fine" in OpenCV, which cannot
# report warnings). simplejpeg's strict mode turns them into errors.
# "N extraneous bytes before marker" is not among them: bytes after the last
# block, which some cameras write into every frame; the image is whole.
_JPEG_DAMAGE = ("Corrupt JPEG data", "Premature end of JPEG file", "Invalid SOS parameters")


def _decode_jpeg(buf: np.ndarray) -> np.ndarray | None:
    """RGB from a JPEG, or an ImageConversionError naming the damage; None
    for what libjpeg-turbo cannot convert to RGB itself (CMYK: OpenCV's turn)."""
    try:
        return simplejpeg.decode_jpeg(buf, colorspace="RGB", strict=True)
    except ValueError as exc:
        reason = str(exc).strip()
    if reason.startswith(_JPEG_DAMAGE) and "extraneous bytes" not in reason:
        raise ImageConversionError(f"corrupt JPEG ({buf.size} bytes): {reason}")
    try:
        return simplejpeg.decode_jpeg(buf, colorspace="RGB", strict=False)
    except ValueError:
        return None


def view_to_rgb(view: ImageView, max_pixels: int = MAX_PIXELS, bits: int = FULL_BITS) -> np.ndarray:
    """An Image or CompressedImage view -> RGB uint8; refuses more than
    `max_pixels` before converting anything."""
    if view.format:
        return compressed_to_rgb(view.format, view.data, max_pixels)
    check_pixels(view.width, view.height, max_pixels, f"image ({view.encoding!r})")
    return to_rgb(to_array(view.encoding, view.height, view.width, view.step, view.is_bigendian, view.data),
                  view.encoding, bits)


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


def header_stamp_ns(raw: bytes | memoryview) -> int | None:
    """The header stamp of a serialized Image or CompressedImage (both begin with their
    std_msgs/Header), read before anything else of the frame: a frame that turns out bad still
    arrived. None when the bytes hold no header (that frame is counted bad when it is parsed)."""
    try:
        r = _Cdr(raw)
        return to_ns(Stamp(r.i32(), r.u32()))
    except ImageConversionError:
        return None


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


def parse_cdr(raw: bytes | memoryview, compressed: bool) -> ImageView:
    """Serialized CompressedImage (`compressed`) or Image -> ImageView."""
    return parse_compressed_cdr(raw) if compressed else parse_image_cdr(raw)

"""Decompression bombs: ~1 kB JPEG / PNG files whose headers claim a huge image."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def jpeg_bomb(width: int = 8000, height: int = 8000) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_bomb(width: int = 8000, height: int = 8000) -> bytes:
    ok, buf = cv2.imencode(".png", np.full((16, 16, 3), 90, np.uint8))
    data = bytearray(buf.tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # IHDR's CRC, so decoders accept it
    return bytes(data)

import re

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from offroad_seg_ros.data.image_msgs import (
    ENCODINGS,
    ImageConversionError,
    compressed_to_rgb,
    image_fields,
    image_msg_to_rgb,
    parse_compressed_cdr,
    parse_image_cdr,
    to_array,
    view_to_rgb,
)

TS = get_typestore(Stores.ROS2_HUMBLE)
Image = TS.types["sensor_msgs/msg/Image"]
CompressedImage = TS.types["sensor_msgs/msg/CompressedImage"]
Header = TS.types["std_msgs/msg/Header"]
Time = TS.types["builtin_interfaces/msg/Time"]
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 255, (5, 7, 3), dtype=np.uint8)


def _pixels(encoding):
    channels, dtype = ENCODINGS[encoding]
    hi = 65535 if dtype == np.uint16 else 255
    return RNG.integers(0, hi, (5, 8, channels), dtype=np.uint64).astype(dtype).squeeze()


def _msg(array, encoding, pad=0, bigendian=False, frame_id="cam", sec=12, nanosec=345):
    channels, dtype = ENCODINGS[encoding]
    a = array.astype(dtype.newbyteorder(">" if bigendian else "<"))
    h, w = a.shape[:2]
    rows = a.reshape(h, -1).view(np.uint8)
    data = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], 1).ravel()
    return Image(Header(Time(sec, nanosec), frame_id), h, w, encoding, int(bigendian), rows.shape[1] + pad, data)


# The oracle: written from ROS's and cv_bridge's conventions, not from the
# converter's tables. 16-bit data scales as cv_bridge's convertTo(CV_8U, 255/65535);
# 8UC3 / 8UC4 are OpenCV's BGR / BGRA; ROS rggb is OpenCV's BayerBG (and so on);
# yuv422 is UYVY, yuv422_yuy2 is YUYV.
BAYER_ORACLE = {"rggb": cv2.COLOR_BayerBG2RGB, "bggr": cv2.COLOR_BayerRG2RGB,
                "gbrg": cv2.COLOR_BayerGR2RGB, "grbg": cv2.COLOR_BayerGB2RGB}


def _expected_rgb(array, encoding):
    if array.dtype == np.uint16:
        array = cv2.convertScaleAbs(array, alpha=255.0 / 65535.0)
    if encoding in ("rgb8", "rgb16"):
        return array
    if encoding in ("bgr8", "bgr16", "8UC3"):
        return array[..., ::-1]
    if encoding in ("rgba8", "rgba16"):
        return array[..., :3]
    if encoding in ("bgra8", "bgra16", "8UC4"):
        return array[..., 2::-1]
    if encoding.startswith("bayer_"):
        return cv2.cvtColor(array, BAYER_ORACLE[encoding[6:10]])
    if encoding == "yuv422":
        return cv2.cvtColor(array, cv2.COLOR_YUV2RGB_UYVY)
    if encoding == "yuv422_yuy2":
        return cv2.cvtColor(array, cv2.COLOR_YUV2RGB_YUY2)
    return np.repeat(array[..., None], 3, 2)


# Byte order of the pixel data only matters for 16-bit encodings.
CASES = [(e, big) for e in ENCODINGS for big in ([False, True] if ENCODINGS[e][1].itemsize == 2 else [False])]


@pytest.mark.parametrize("encoding, bigendian", CASES)
@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("little_cdr", [True, False])
@pytest.mark.parametrize("frame_id", ["", "c", "camera_front_left"])
def test_cdr_parser_matches_rosbags(encoding, bigendian, pad, little_cdr, frame_id):
    array = _pixels(encoding)
    msg = _msg(array, encoding, pad, bigendian, frame_id)
    raw = TS.serialize_cdr(msg, Image.__msgtype__, little_endian=little_cdr)
    view = parse_image_cdr(bytes(raw))
    assert (view.sec, view.nanosec, view.frame_id) == (12, 345, frame_id)
    assert (view.height, view.width, view.encoding, view.step) == (5, 8, encoding, msg.step)
    np.testing.assert_array_equal(
        to_array(view.encoding, view.height, view.width, view.step, view.is_bigendian, view.data), array)
    np.testing.assert_array_equal(view_to_rgb(view), _expected_rgb(array, encoding))
    # The message-object path agrees.
    np.testing.assert_array_equal(image_msg_to_rgb(TS.deserialize_cdr(raw, Image.__msgtype__)),
                                  _expected_rgb(array, encoding))


def test_eight_bit_views_do_not_copy():
    msg = _msg(RGB, "rgb8", pad=4)
    arr = to_array(msg.encoding, msg.height, msg.width, msg.step, 0, msg.data)
    assert np.shares_memory(arr, msg.data)


@pytest.mark.parametrize("fmt, ext", [("jpeg", ".jpg"), ("png", ".png"), ("rgb8; jpeg compressed bgr8", ".jpg")])
def test_compressed(fmt, ext):
    ok, buf = cv2.imencode(ext, cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    msg = CompressedImage(Header(Time(1, 2), "cam"), fmt, buf.ravel())
    view = parse_compressed_cdr(bytes(TS.serialize_cdr(msg, CompressedImage.__msgtype__)))
    assert view.format == fmt and view.frame_id == "cam"
    out = view_to_rgb(view)
    assert out.shape == RGB.shape
    if ext == ".png":
        np.testing.assert_array_equal(out, RGB)


def test_corrupt_compressed_is_named():
    with pytest.raises(ImageConversionError, match=re.escape("corrupt JPEG: no frame header (5 bytes)")):
        compressed_to_rgb("jpeg", b"\xff\xd8bad")
    with pytest.raises(ImageConversionError, match="neither JPEG nor PNG"):
        compressed_to_rgb("jpeg", b"GIF89a" + bytes(20))
    with pytest.raises(ImageConversionError, match="unsupported CompressedImage format 'theora'"):
        compressed_to_rgb("theora", b"123")


@pytest.mark.parametrize("fields, match", [
    (dict(encoding="yuv420"), "unsupported encoding: encoding='yuv420' width=7 height=5 step=21 data=105"),
    (dict(step=20), "step smaller than a row"),
    (dict(height=6), "data length != step x height"),
    (dict(width=0, height=0), "empty image"),
])
def test_malformed_images_raise_one_error_type(fields, match):
    msg = _msg(RGB, "rgb8")
    args = dict(encoding=msg.encoding, height=msg.height, width=msg.width, step=msg.step, data=msg.data)
    args.update(fields)
    with pytest.raises(ImageConversionError, match=match):
        to_array(args["encoding"], args["height"], args["width"], args["step"], 0, args["data"])


def test_truncated_cdr():
    raw = bytes(TS.serialize_cdr(_msg(RGB, "rgb8"), Image.__msgtype__))
    with pytest.raises(ImageConversionError, match="truncated"):
        parse_image_cdr(raw[:-10])
    with pytest.raises(ImageConversionError, match="encapsulation"):
        parse_image_cdr(b"\x07\x07\x00\x00" + raw[4:])


@pytest.mark.parametrize("encoding, array", [
    ("mono8", RNG.integers(0, 255, (4, 6), dtype=np.uint8)),
    ("rgb8", RGB),
    ("mono16", RNG.integers(0, 65535, (4, 6), dtype=np.uint16)),
])
def test_output_fields_round_trip_through_rosbags(encoding, array):
    fields = image_fields(array, encoding)
    msg = Image(Header(Time(3, 4), "out"), data=np.frombuffer(fields.pop("data"), np.uint8), **fields)
    back = TS.deserialize_cdr(TS.serialize_cdr(msg, Image.__msgtype__), Image.__msgtype__)
    np.testing.assert_array_equal(to_array(back.encoding, back.height, back.width, back.step,
                                           back.is_bigendian, back.data), array)
    with pytest.raises(ImageConversionError, match="does not fit"):
        image_fields(array.astype(np.float32), encoding)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_pattern_of_a_flat_colour(pattern, bits):
    # Independent of OpenCV's naming: a mosaic of one colour, sampled by the
    # pattern's own letters, demosaics to exactly that colour.
    colour = {"r": 200, "g": 90, "b": 30}
    scale = 257 if bits == 16 else 1
    mosaic = np.empty((6, 8), np.uint16 if bits == 16 else np.uint8)
    for i, letter in enumerate(pattern):
        mosaic[i // 2::2, i % 2::2] = colour[letter] * scale
    rgb = view_to_rgb(parse_image_cdr(bytes(TS.serialize_cdr(_msg(mosaic, f"bayer_{pattern}{bits}"),
                                                             Image.__msgtype__))))
    np.testing.assert_array_equal(rgb, np.broadcast_to(np.array([200, 90, 30], np.uint8), (6, 8, 3)))


@pytest.mark.parametrize("bits", [10, 12, 16])
def test_mono16_significant_bits(bits):
    top = (1 << bits) - 1
    values = np.array([[0, 1, top // 2, top, top + 1 if bits < 16 else top, 65535]], np.uint16)
    want = cv2.convertScaleAbs(np.minimum(values, top), alpha=255.0 / top)[..., None].repeat(3, 2)
    np.testing.assert_array_equal(image_msg_to_rgb(_msg(values, "mono16"), bits=bits), want)
    assert image_msg_to_rgb(_msg(values, "mono16"), bits=bits)[0, 3, 0] == 255  # full range used


def test_yuv422_needs_an_even_width():
    with pytest.raises(ImageConversionError, match="yuv422 needs an even width"):
        to_array("yuv422", 2, 3, 6, 0, bytes(12))

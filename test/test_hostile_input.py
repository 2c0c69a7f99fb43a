"""Hostile and unusual frames: refused before any large allocation, never an
exception out of the frame pipeline, every frame accounted for, and
diagnostics that say why."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from bombs import jpeg_bomb, png_bomb
from rosbags.rosbag2 import Writer
from rosutil import TS, compressed_cdr, image_cdr, random_rgb

from offroad_seg_ros.core.stamps import Stamp
from offroad_seg_ros.data.bag import COMPRESSED, IMAGE_TOPIC, open_bag, write_bag
from offroad_seg_ros.data.dataset import DatasetError, read_image
from offroad_seg_ros.data.image_msgs import ImageConversionError, compressed_to_rgb
from offroad_seg_ros.evaluation.evaluate import evaluate
from offroad_seg_ros.inference.segmenter import Segmenter
from offroad_seg_ros.node.health import ERROR, OK, WARN, Counts, Health
from offroad_seg_ros.node.pipeline import FramePipeline

TEST_DIR = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def segmenter(tiny_artifact):
    return Segmenter(tiny_artifact, device="cpu", warmup_size=None)


@pytest.mark.parametrize("bomb", [jpeg_bomb, png_bomb])
def test_header_bombs_are_refused_by_their_header(segmenter, bomb):
    pipe = FramePipeline(segmenter, compressed=True)
    assert pipe.process(compressed_cdr(bomb(), fmt="jpeg" if bomb is jpeg_bomb else "png"), ["mask"]) is None
    assert pipe.health.bad == 1
    assert "8000x8000 = 64000000 pixels, above max_pixels=33177600" in pipe.health.last_bad


def _scene(h: int = 120, w: int = 160) -> np.ndarray:
    return cv2.GaussianBlur(random_rgb(h, w, seed=4), (9, 9), 3)


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        chunks.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]))
        pos += 12 + n
    return chunks


def _png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    import zlib

    return b"\x89PNG\r\n\x1a\n" + b"".join(len(d).to_bytes(4, "big") + t + d + zlib.crc32(t + d).to_bytes(4, "big")
                                            for t, d in chunks)


def _truncated() -> dict[str, tuple[str, bytes, str]]:
    """Frames cut short in transit: (format, data, the reason the refusal names)."""
    jpeg = cv2.imencode(".jpg", _scene())[1].tobytes()
    png = cv2.imencode(".png", _scene())[1].tobytes()
    chunks = _png_chunks(png)
    idat = b"".join(d for t, d in chunks if t == b"IDAT")
    return {
        # The scan ends early and an end-of-image marker is appended: libjpeg
        # fills the missing rows with grey and OpenCV returns a whole image.
        "jpeg cut, EOI appended": ("jpeg", jpeg[:len(jpeg) // 2] + b"\xff\xd9", "premature end of data segment"),
        "jpeg cut": ("jpeg", jpeg[:len(jpeg) // 2], "Premature end of JPEG file"),
        "png cut": ("png", png[:len(png) // 2], "corrupt CompressedImage"),
        "png cut, IEND appended": ("png", png[:len(png) // 2] + _png([(b"IEND", b"")])[8:], "corrupt CompressedImage"),
        # Well-formed chunks (right CRCs) around half of the image data.
        "png short of image data": ("png", _png([chunks[0], (b"IDAT", idat[:len(idat) // 2]), (b"IEND", b"")]),
                                    "corrupt CompressedImage"),
    }


@pytest.mark.parametrize("case", list(_truncated()))
def test_truncated_compressed_frames_are_refused_with_their_reason(segmenter, case):
    fmt, data, reason = _truncated()[case]
    with pytest.raises(ImageConversionError, match=reason):
        compressed_to_rgb(fmt, data)
    pipe = FramePipeline(segmenter, compressed=True)
    assert pipe.process(compressed_cdr(data, fmt=fmt), ["mask"]) is None  # the model never sees it
    assert pipe.health.bad == 1 and reason in pipe.health.last_bad


def test_whole_jpegs_still_decode_as_opencv_decodes_them():
    rgb = _scene(121, 163)  # odd sizes: partial blocks at the edges
    for quality in (50, 95):
        data = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
        want = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        np.testing.assert_array_equal(compressed_to_rgb("jpeg", data), want)
    grey = cv2.imencode(".jpg", rgb[..., 0])[1].tobytes()
    assert compressed_to_rgb("jpeg", grey).shape == (121, 163, 3)
    # Bytes between the last block and the end marker (some cameras write
    # them into every frame): the image is whole, so it is taken.
    data = cv2.imencode(".jpg", rgb)[1].tobytes()
    padded = data[:-2] + b"\x00" * 5 + data[-2:]
    np.testing.assert_array_equal(compressed_to_rgb("jpeg", padded), compressed_to_rgb("jpeg", data))


def test_cmyk_jpeg_decodes_through_opencv():
    from io import BytesIO

    from PIL import Image as PILImage

    buf = BytesIO()
    PILImage.fromarray(_scene()).convert("CMYK").save(buf, "JPEG", quality=95)
    got = compressed_to_rgb("jpeg", buf.getvalue())
    assert got.shape == (120, 160, 3) and np.abs(got.astype(int) - _scene()).mean() < 8


def test_header_bombs_allocate_nothing_large():
    # Peak RSS in a fresh process that only has the converter loaded: decoding
    # the 631-byte JPEG bomb would take 183 MiB.
    script = textwrap.dedent(f"""
        import json, resource, sys
        sys.path.insert(0, {str(TEST_DIR)!r})
        from bombs import jpeg_bomb, png_bomb
        from offroad_seg_ros.data.image_msgs import ImageConversionError, compressed_to_rgb
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        refused = 0
        for fmt, data in (("jpeg", jpeg_bomb()), ("png", png_bomb()), ("jpeg", jpeg_bomb(20000, 20000))):
            try:
                compressed_to_rgb(fmt, data)
            except ImageConversionError:
                refused += 1
        print(json.dumps([refused, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    refused, growth_kib = json.loads(out.stdout)
    assert refused == 3 and growth_kib < 16 * 1024, f"peak RSS grew {growth_kib} KiB"


def test_oversized_raw_image_is_refused_before_conversion(segmenter):
    pipe = FramePipeline(segmenter, max_pixels=60 * 80 - 1)
    assert pipe.process(image_cdr(random_rgb(60, 80)), ["mask"]) is None
    assert "80x60 = 4800 pixels, above max_pixels=4799" in pipe.health.last_bad
    pipe.max_pixels = 60 * 80
    assert pipe.process(image_cdr(random_rgb(60, 80)), ["mask"]) is not None


def test_whatever_a_decoder_raises_is_a_counted_bad_frame(segmenter):
    # Above OpenCV's own pixel limit (2^30) imdecode raises cv2.error; with the
    # header check lifted, that must still be a bad frame, not an exception.
    pipe = FramePipeline(segmenter, compressed=True, max_pixels=1 << 40)
    assert pipe.process(compressed_cdr(png_bomb(40000, 40000), fmt="png"), ["mask"]) is None
    assert pipe.health.bad == 1 and pipe.health.last_bad


def test_inference_failure_is_counted_and_shown(segmenter, monkeypatch):
    pipe = FramePipeline(segmenter)

    def fail(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(segmenter, "segment_batch", fail)
    assert pipe.process(image_cdr(random_rgb()), ["mask"]) is None
    assert pipe.health.failed == 1
    level, message, values = pipe.diagnostics(received=1, dropped=0, now=10.0)
    assert level == ERROR and message == "1 inference failure(s) so far: RuntimeError: CUDA out of memory"
    assert dict(values)["inference_failures"] == "1"


def _report(health: Health, now: float, **counts: int):
    return health.report(Counts(**counts), now)


def test_diagnostics_name_the_worst_condition_and_its_reason():
    h = Health("/cam/image")
    level, msg, _ = _report(h, 0.0)
    assert (level, msg) == (WARN, "no frames received on /cam/image yet")
    for _ in range(30):
        h.frame_bad("unsupported encoding: encoding='xyz'")
    level, msg, _ = _report(h, 1.0, frames_in=30, bad=30)
    assert (level, msg) == (ERROR, "all 30 frames in the last 1.0 s were bad: unsupported encoding: encoding='xyz'")
    for i in range(27):
        h.frame_done(Stamp(100, 0), 100.05, done_at=1.0 + i * 0.03)
    for _ in range(3):
        h.frame_bad("corrupt JPEG")
    level, msg, _ = _report(h, 2.0, frames_in=60, bad=33, processed=27)
    assert (level, msg) == (WARN, "3 of 30 frames in the last 1.0 s were bad: corrupt JPEG")
    level, msg, _ = _report(h, 3.0, frames_in=60, bad=33, processed=27)
    assert level == OK
    level, msg, _ = _report(h, 5.0, frames_in=60, bad=33, processed=27)  # silent for 3 periods
    assert (level, msg) == (WARN, "no frames on /cam/image for 3.0 s")


def test_unstamped_frames_are_counted_and_left_out_of_latency():
    h = Health()
    h.frame_done(Stamp(0, 0), 1.8e9, done_at=1.0)  # stamp 0: a simulator's or a test publisher's
    level, msg, values = _report(h, 1.5, frames_in=1, processed=1)
    v = dict(values)
    assert v["unstamped_frames"] == "1" and v["latency_p50_ms"] == "n/a" and level == OK
    h.frame_done(Stamp(100, 0), 100.04, done_at=1.2)
    assert dict(_report(h, 1.6, frames_in=2, processed=2)[2])["latency_p50_ms"] == "40.00"


def test_every_frame_is_accounted_for(segmenter):
    """frames_in = processed + dropped + bad + rate_limited + failed (+ in flight)."""
    pipe = FramePipeline(segmenter)
    good, bad = image_cdr(random_rgb()), image_cdr(random_rgb(), encoding="xyz")
    for raw in (good, bad, good, bad, bad):
        result = pipe.process(raw, ["mask"])
        if result is not None:
            pipe.health.frame_done(result.header, 2.0)
    _, _, values = pipe.diagnostics(received=7, dropped=2, rate_limited=4)
    v = {k: int(x) for k, x in values if k.startswith(("frames", "bad", "inference"))}
    assert v["frames_in"] == 11 and v["frames_in_flight"] == 0
    assert v["frames_in"] == (v["frames_processed"] + v["frames_dropped"] + v["bad_frames"]
                              + v["frames_rate_limited"] + v["inference_failures"])


def test_a_bad_frame_in_a_bag_is_a_counted_skip(synth_root, tmp_path, tiny_artifact):
    good = write_bag(synth_root / "test", tmp_path / "good", compressed="png")
    out = tmp_path / "with_bomb"
    reader = open_bag(good)
    with Writer(out, version=8) as writer:
        conns = {c.topic: writer.add_connection(c.topic, c.msgtype, typestore=TS) for c in reader.connections}
        replaced = False
        for conn, t, raw in reader.messages():
            if conn.topic == IMAGE_TOPIC and not replaced:  # the first frame's image becomes a bomb
                stamp = TS.deserialize_cdr(raw, COMPRESSED).header.stamp
                raw, replaced = compressed_cdr(png_bomb(), sec=stamp.sec, fmt="png"), True
            writer.write(conns[conn.topic], t, raw)
    reader.close()
    metrics, _ = evaluate(out, model=tiny_artifact, device="cpu", progress=False)
    run = metrics["run"]
    assert run["frames_scored"] == 2 and run["skipped"] == 1
    assert "above max_pixels" in run["skipped_examples"][0]


def test_a_bomb_in_a_dataset_folder_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "frame_0001.png"
    path.write_bytes(png_bomb())
    with pytest.raises(DatasetError, match=r"frame_0001.png: png header is 8000x8000 = 64000000 pixels"):
        read_image(path)
    ok, buf = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    path.write_bytes(buf.tobytes()[:30])
    with pytest.raises(DatasetError, match="frame_0001.png"):
        read_image(path)

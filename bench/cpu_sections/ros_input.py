"""Input sections: hostile compressed frames refused, and camera JPEGs decoded."""

from __future__ import annotations

import numpy as np
from results import Table, timeit


def bench_hostile(out: Table, n: int) -> None:
    """How long a ~1 kB JPEG / PNG that claims 8000x8000 pixels takes to be refused
    (the header is read, nothing decoded)."""
    import struct
    import zlib

    import cv2

    from offroad_seg_ros.data.image_msgs import ImageConversionError, compressed_to_rgb

    ok, jpg = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))
    jpeg = bytearray(jpg.tobytes())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 8000, 8000)
    ok, pn = cv2.imencode(".png", np.full((16, 16, 3), 90, np.uint8))
    png = bytearray(pn.tobytes())
    png[16:24] = struct.pack(">II", 8000, 8000)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    for fmt, data in (("jpeg", bytes(jpeg)), ("png", bytes(png))):
        def refuse(data=data, fmt=fmt):
            try:
                compressed_to_rgb(fmt, data)
            except ImageConversionError:
                return
            raise AssertionError("not refused")
        t = timeit(refuse, n * 30)
        out.row(f"hostile input: {len(data)}-byte {fmt} claiming 8000x8000, refused in (p50 / max)",
            np.median(t) * 1e6, f"us (max {t.max() * 1e6:.0f} us)", f"bomb_{fmt}_refuse_us")
    bench_jpeg_decode(out, n)


def bench_jpeg_decode(out: Table, n: int) -> None:
    """A whole 960x540 camera JPEG to RGB: the strict decoder (which refuses a
    frame cut short) against OpenCV's, which the node used before (and which
    fills a cut frame with grey), in one run, interleaved."""
    import cv2

    from offroad_seg_ros.data.image_msgs import compressed_to_rgb
    from offroad_seg_train.synth import render_scene

    rgb, _ = render_scene(np.random.default_rng(5))
    for quality in (80, 95):
        data = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
        buf = np.frombuffer(data, np.uint8)
        cases = {"strict (simplejpeg)": lambda data=data: compressed_to_rgb("jpeg", data),
                 "OpenCV imdecode + BGR->RGB, before": lambda buf=buf: cv2.cvtColor(
                     cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)}
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(n * 3):  # round-robin, so both see the same machine
            for name, fn in cases.items():
                times[name].extend(timeit(fn, 1, warmup=0))
        for name, t in times.items():
            key = "strict" if "strict" in name else "opencv"
            out.row(f"JPEG q{quality} 960x540 ({len(data) // 1024} KiB) -> RGB, {name}", np.median(t) * 1e3, "ms",
                f"jpeg_q{quality}_decode_{key}_ms", 3)


def bench_camera_checks(out: Table, n: int) -> None:
    """The node's camera checks on one 960x540 frame (one core), and the frame's temperature-scaled
    confidence gating next to it: what trusting the output costs per frame."""
    import cv2

    from offroad_seg_ros.data.camera_checks import CameraChecks
    from offroad_seg_train.synth import render_scene

    cv2.setNumThreads(1)
    frames = [render_scene(np.random.default_rng(i))[0] for i in range(4)]
    checks = CameraChecks()
    i = 0

    def one() -> None:
        nonlocal i
        checks(frames[i % len(frames)])
        i += 1

    t = timeit(one, n * 20, warmup=4)
    out.row("camera checks, one 960x540 frame (1 core): p50", np.median(t) * 1e3, "ms", "camera_checks_p50_ms", 3)
    out.row("  p95", np.percentile(t, 95) * 1e3, "ms", "camera_checks_p95_ms", 3)

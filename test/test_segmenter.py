import numpy as np
import pytest
import torch

from offroad_seg_ros.core.artifact import load_artifact
from offroad_seg_ros.inference.segmenter import OUTPUTS as ALL_OUTPUTS
from offroad_seg_ros.inference.segmenter import Segmenter
from offroad_seg_train.synth import TEST_BIOME, render_scene

# The tiny artifact has no novelty statistics: every output but `novelty` (test_novelty_net.py).
OUTPUTS = tuple(o for o in ALL_OUTPUTS if o != "novelty")


@pytest.fixture(scope="module")
def frames():
    return [render_scene(np.random.default_rng(i), TEST_BIOME)[0][:270, :480].copy() for i in range(3)]


@pytest.fixture(scope="module")
def seg(tiny_artifact):
    return Segmenter(tiny_artifact, device="cpu", warmup_size=(64, 96))


def test_outputs_at_input_resolution(seg, frames, table):
    out = seg(frames[0], OUTPUTS)
    h, w = frames[0].shape[:2]
    assert out.mask.shape == (h, w) and out.mask.dtype == np.uint8
    assert out.mask.max() < len(table)
    np.testing.assert_array_equal(out.cost, table.cost_lut()[out.mask])
    np.testing.assert_array_equal(out.color, table.color_lut()[out.mask])
    expected = np.round(frames[0] * 0.5 + table.color_lut()[out.mask] * 0.5).astype(np.uint8)
    assert np.abs(out.overlay.astype(int) - expected).max() <= 1
    assert out.confidence.shape == (h, w) and out.confidence.min() >= 255 // len(table)


def test_only_requested_outputs(seg, frames):
    out = seg(frames[0], ("cost",))
    assert out.cost is not None and out.mask is None and out.color is None


def test_matches_the_plain_model(seg, frames, tiny_artifact):
    art, net = load_artifact(tiny_artifact)
    img = frames[1]
    with torch.no_grad():
        x = torch.from_numpy(img).permute(2, 0, 1)[None]  # resampled in uint8 on the CPU (preprocess.py)
        x = torch.nn.functional.interpolate(x, size=(135, 240), mode="bilinear", antialias=True).float()
        mean = torch.tensor(art.preprocess.mean).view(1, 3, 1, 1) * 255
        std = torch.tensor(art.preprocess.std).view(1, 3, 1, 1) * 255
        x = torch.nn.functional.pad((x - mean) / std, (0, 16, 0, 25))
        labels = net(x)[..., :135, :240].argmax(1)
        labels = torch.nn.functional.interpolate(labels[:, None].float(), size=(270, 480), mode="nearest")
    np.testing.assert_array_equal(seg(img).mask, labels[0, 0].numpy().astype(np.uint8))


def test_cpu_resize_within_a_grey_level_of_float(tiny_artifact, frames):
    pre = load_artifact(tiny_artifact)[0].preprocess
    img = torch.from_numpy(frames[0])[None]
    x = img.permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(135, 240), mode="bilinear", antialias=True)
    std = torch.tensor(pre.std).view(1, 3, 1, 1) * 255
    want = torch.nn.functional.pad((x - torch.tensor(pre.mean).view(1, 3, 1, 1) * 255) / std, (0, 16, 0, 25))
    grey_levels = ((pre(img) - want) * std).abs()
    assert grey_levels.max() <= 1 + 1e-3  # rounding to whole levels (fixed-point weights), nothing more
    assert grey_levels.mean() > 0.01  # and it does run in uint8 (the fast kernels)


def test_batch_equals_single(seg, frames):
    batch = seg.segment_batch(frames, ("mask", "confidence"))
    for img, out in zip(frames, batch):
        single = seg(img, ("mask", "confidence"))
        np.testing.assert_array_equal(out.mask, single.mask)
        # Batched convolutions round differently in the last float bit.
        assert np.abs(out.confidence.astype(int) - single.confidence).max() <= 1


def test_onnxruntime_backend_agrees(seg, frames, tiny_artifact):
    ort_seg = Segmenter(tiny_artifact, backend="onnxruntime", warmup_size=None)
    for img in frames:
        a, b = seg(img).mask, ort_seg(img).mask
        assert (a == b).mean() >= 0.9999, (a != b).sum()


def test_bf16_mostly_agrees(tiny_artifact, seg, frames):
    bf = Segmenter(tiny_artifact, device="cpu", precision="bf16", warmup_size=None)
    assert (bf(frames[0]).mask == seg(frames[0]).mask).mean() > 0.9


def test_bad_arguments(tiny_artifact, seg, frames):
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        Segmenter(tiny_artifact, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="precision must be"):
        Segmenter(tiny_artifact, precision="int4")
    with pytest.raises(ValueError, match="unknown output"):
        seg(frames[0], ("depth",))
    with pytest.raises(ValueError, match="RGB uint8"):
        seg(frames[0][..., 0])
    with pytest.raises(ValueError, match="share a size"):
        seg.segment_batch([frames[0], frames[0][:100]])


def test_compiled_path_matches_eager(tiny_artifact, frames):
    # torch.compile on CPU (inductor + the C compiler); on CUDA the same code
    # runs in "reduce-overhead" mode (CUDA graphs), checked by test_gpu.py.
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    img = frames[2][:135, :240].copy()
    compiled = Segmenter(tiny_artifact, device="cpu", compile=True, warmup_size=(135, 240))
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1
    eager = Segmenter(tiny_artifact, device="cpu", warmup_size=None)
    # The warm-up's graph serves every set of outputs: the node's first frame
    # (mask + cost) must not compile again.
    # Inductor fuses the normalisation and the softmax (last-bit float differences): the
    # confidence may differ by one level and a near-tie pixel may flip, nothing more.
    for outputs in (("mask", "cost"), ("mask",), OUTPUTS):
        got, want = compiled(img, outputs), eager(img, outputs)
        assert (got.mask == want.mask).mean() > 0.999
        same = got.mask == want.mask
        for name in set(outputs) - {"confidence"}:
            np.testing.assert_array_equal(getattr(got, name)[same], getattr(want, name)[same], err_msg=name)
        if "confidence" in outputs:
            assert np.abs(got.confidence.astype(int) - want.confidence).max() <= 1
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.parametrize("kwargs", [{"device": "cuda"}, {"precision": "bf16"}, {"compile": True}])
def test_onnxruntime_backend_refuses_torch_only_options(tiny_artifact, kwargs):
    with pytest.raises(ValueError, match="backend onnxruntime runs on the CPU without compile"):
        Segmenter(tiny_artifact, backend="onnxruntime", warmup_size=None, **kwargs)


def test_openvino_backend_agrees(seg, frames, tiny_artifact):
    ov = Segmenter(tiny_artifact, backend="openvino", precision="fp32")
    for f in frames:
        a, b = ov(f, OUTPUTS), seg(f, OUTPUTS)
        assert (a.mask == b.mask).mean() > 0.9999  # argmax near-ties only
        np.testing.assert_array_equal(a.cost, seg.cost_lut.numpy()[a.mask])
        assert np.abs(a.confidence.astype(int) - b.confidence).max() <= 1
    # several frames of one size in one inference, as the node's cameras arrive
    batch = ov.segment_batch(frames[:2], ("mask",))
    assert all((m.mask == ov(f).mask).all() for m, f in zip(batch, frames[:2]))


def test_openvino_bf16_and_auto(seg, frames, tiny_artifact):
    from offroad_seg_ros.inference.openvino_backend import cpu_has_bf16

    bf16 = Segmenter(tiny_artifact, backend="openvino", precision="bf16")
    auto = Segmenter(tiny_artifact, backend="openvino", precision="auto")
    assert auto.precision == ("bf16" if cpu_has_bf16() else "fp32")
    # Random weights have many near-ties (see test_bf16_mostly_agrees); a trained model agrees far more.
    assert np.mean([(bf16(f).mask == seg(f).mask).mean() for f in frames]) > 0.97


@pytest.mark.parametrize("kwargs, match", [
    (dict(precision="fp16"), "precision one of"),
    (dict(device="cuda"), "runs on the CPU"),
    (dict(precision="int8"), "model_int8.xml"),
])
def test_openvino_backend_refuses_what_it_cannot_do(tiny_artifact, kwargs, match, tmp_path):
    import shutil

    art = tmp_path / "art"
    shutil.copytree(tiny_artifact, art)
    (art / "model_int8.xml").unlink(missing_ok=True)
    with pytest.raises(Exception, match=match):
        Segmenter(art, backend="openvino", **kwargs)


class _ThreadSpy:
    """Wraps a runtime object; records torch's intra-op thread count whenever it is called."""

    def __init__(self, inner, method):
        self.inner, self.method, self.seen = inner, method, []

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name != self.method:
            return attr

        def spy(*args, **kwargs):
            self.seen.append(torch.get_num_threads())
            return attr(*args, **kwargs)
        return spy


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_cpu_runtimes_keep_torch_to_one_thread(tiny_artifact, frames, backend):
    # torch's OpenMP workers spinning beside the runtime's own workers made p95 twice p50 on 2 cores.
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        s = Segmenter(tiny_artifact, backend=backend, precision="fp32", warmup_size=None)
        spy = _ThreadSpy(s.runtime, "run")
        s.runtime = spy
        s(frames[0], ("mask", "cost"))
        assert spy.seen == [1]
        assert torch.get_num_threads() == 2  # restored for whoever else uses torch in the process
    finally:
        torch.set_num_threads(before)


def test_torch_backend_threads(tiny_artifact, frames):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        s = Segmenter(tiny_artifact, device="cpu", threads=1, warmup_size=None)
        seen = []
        s.runtime.net.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
        s(frames[0])
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


_SIGNAL_STACK_PROBE = """
import ctypes, gc, os, signal, sys
from offroad_seg_ros.inference.segmenter import Segmenter

class Stack(ctypes.Structure):
    _fields_ = [("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t)]

def current():
    st = Stack()
    assert ctypes.CDLL(None, use_errno=True).sigaltstack(None, ctypes.byref(st)) == 0
    return (st.sp, st.flags, st.size)

def model():
    return Segmenter(sys.argv[1], backend="openvino", precision="fp32", warmup_size=(64, 96))

a = model()
first = current()
del a; gc.collect()
b, c = model(), model()
del b; gc.collect()
del c; gc.collect()  # freed out of the order they were made
signal.signal(signal.SIGUSR1, lambda *_: None)
os.kill(os.getpid(), signal.SIGUSR1)  # a handler runs on this thread's signal stack
print(first == current(), first, current())
"""


def test_openvino_models_leave_the_signal_stack_alone(tiny_artifact):
    # OpenVINO's CPU plugin swaps the calling thread's signal stack when a Core starts using it
    # and back when it ends; Cores ending out of order left the thread on a freed stack, and a
    # later signal crashed the process. One Core per process: the stack stays put.
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _SIGNAL_STACK_PROBE, str(tiny_artifact)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("True"), out.stdout


def test_failed_quantization_leaves_nothing_behind(tiny_artifact, tmp_path):
    import shutil

    from offroad_seg_ros.tools.quantize import quantize

    art = tmp_path / "art"
    shutil.copytree(tiny_artifact, art, ignore=shutil.ignore_patterns("model_int8.*"))
    before = sorted(p.name for p in art.iterdir())
    calib = [np.random.default_rng(i).standard_normal((1, 3, 64, 96), dtype=np.float32) for i in range(2)]
    wrong = [np.zeros((1, 3, 32, 32), np.float32)]  # the agreement check fails on a shape the model was not made for
    with pytest.raises(Exception):  # noqa: B017 - OpenVINO's own error type
        quantize(art, calib, len(calib), "val", wrong)
    assert sorted(p.name for p in art.iterdir()) == before  # no model_int8.* and no temporary files


@pytest.mark.parametrize("name", ["torch", "onnxruntime", "openvino"])
def test_backends_come_from_the_registry(tiny_artifact, name):
    from offroad_seg_ros.inference.backend import BACKENDS, backend_class

    s = Segmenter(tiny_artifact, backend=name, precision="fp32", warmup_size=None)
    assert type(s.runtime) is backend_class(name) and type(s.runtime).__name__ == BACKENDS[name].split(":")[1]
    assert s.runtime.artifact.path == s.artifact.path


def test_an_unknown_backend_names_the_choices(tiny_artifact):
    with pytest.raises(ValueError, match=r"backend must be one of \('torch', 'onnxruntime', 'openvino'\), got 'trt'"):
        Segmenter(tiny_artifact, backend="trt")

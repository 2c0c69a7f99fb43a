"""`Segmenter`: RGB frames in, class masks and traversability cost images out.

ROS-free; the node, the evaluator and training validation share it (or its
`Preprocess`), so offline numbers are the robot's numbers. On a GPU the uint8
frame is uploaded once from pinned memory; normalising, resizing, padding, the
forward pass, argmax and the colour / cost lookups all run on the device, and
only the requested outputs are copied back.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from offroad_seg_ros.core.artifact import Artifact, ArtifactError, load_artifact, read_artifact
from offroad_seg_ros.core.preprocess import keep_resize_out_of_compile, predict_labels

OUTPUTS = ("mask", "cost", "color", "overlay", "confidence")
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
BACKENDS = ("torch", "onnxruntime", "openvino")


@dataclass
class Segmentation:
    """Outputs at the input resolution; only the requested ones are set."""

    mask: np.ndarray | None = None  # uint8 (H, W) class index, 255 = no prediction
    cost: np.ndarray | None = None  # uint8 (H, W) Nav2 cost
    color: np.ndarray | None = None  # uint8 (H, W, 3) RGB
    overlay: np.ndarray | None = None  # uint8 (H, W, 3) RGB blend of input and colour
    confidence: np.ndarray | None = None  # uint8 (H, W) max softmax x 255


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's CPU kernels run on `n` intra-op threads inside the block (0 = as
    they are); the count is restored after. Set per call, on the calling thread,
    because OpenMP keeps the count per thread and the node runs the model on its
    worker thread."""
    before = torch.get_num_threads()
    if n <= 0 or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available (use auto or cpu)")
    return dev


class Segmenter:
    """Runs a model artifact on frames.

    device: auto | cpu | cuda | cuda:N. precision: fp32 | fp16 | bf16 (and, with
    backend openvino: auto | int8).
    backend: torch | onnxruntime | openvino (CPU; need the artifact's model.onnx).
    threads: intra-op threads of the CPU runtime (0 = its default): torch's on
    the CPU with backend torch, else onnxruntime's or OpenVINO's. With those two,
    the light torch work around the network (normalise, resize, lookups) runs
    on the calling thread alone: torch's OpenMP workers and the runtime's
    spinning workers otherwise fight over the cores after every call (on 2
    cores, onnxruntime: 44 ms p50 / 50 ms p95 a frame -> 36 / 37 ms).
    compile: torch.compile the whole path (on CUDA in "reduce-overhead" mode,
    i.e. replayed CUDA graphs, re-captured per input shape). Off by default:
    the first compile takes tens of seconds.
    """

    def __init__(
        self,
        model: str | Path,
        device: str = "auto",
        precision: str = "fp32",
        backend: str = "torch",
        compile: bool = False,
        cost_overrides: dict[str, int] | None = None,
        overlay_alpha: float = 0.5,
        warmup_size: tuple[int, int] | None = (540, 960),
        threads: int = 0,
    ):
        if backend == "openvino":
            from offroad_seg_ros.inference.openvino_backend import OV_PRECISIONS

            if precision not in OV_PRECISIONS or device not in ("auto", "cpu") or compile:
                raise ValueError(f"backend openvino runs on the CPU without compile, precision one of {OV_PRECISIONS}; "
                                 f"got device {device!r}, precision {precision!r}, compile {compile}")
        elif precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if not 0.0 <= overlay_alpha <= 1.0:
            raise ValueError(f"overlay_alpha must be within 0..1, got {overlay_alpha}")
        if backend == "onnxruntime" and (device not in ("auto", "cpu") or precision != "fp32" or compile):
            raise ValueError(
                f"backend onnxruntime runs fp32 on the CPU without compile; got device {device!r}, "
                f"precision {precision!r}, compile {compile} (use device auto or cpu, precision fp32)"
            )
        self.device = resolve_device(device) if backend == "torch" else torch.device("cpu")
        self.dtype = PRECISIONS.get(precision, torch.float32)  # openvino's precision is its own
        if self.device.type == "cpu" and precision == "fp16":
            raise ValueError("precision fp16 needs a CUDA device; on CPU use fp32 or bf16")
        self.backend = backend
        self.precision = precision
        self._host_threads = 1 if backend != "torch" else (threads if self.device.type == "cpu" else 0)
        self.overlay_alpha = overlay_alpha
        self._session = None
        self._ov = None
        self.net: torch.nn.Module | None = None
        if backend == "onnxruntime":
            self.artifact: Artifact = read_artifact(model)
            self._session = self._onnx_session(self.artifact, threads)
        elif backend == "openvino":
            from offroad_seg_ros.inference.openvino_backend import OpenVinoModel

            self.artifact = read_artifact(model)
            self._ov = OpenVinoModel(self.artifact, precision, threads)
            self.precision = self._ov.precision  # what `auto` chose
        else:
            self.artifact, net = load_artifact(model)
            self.net = net.to(self.device, dtype=self.dtype).to(memory_format=torch.channels_last)
        self.classes = self.artifact.classes
        self.pre = self.artifact.preprocess
        self.color_lut = torch.from_numpy(self.classes.color_lut()).to(self.device)
        self.cost_lut = torch.from_numpy(self.classes.cost_lut(cost_overrides)).to(self.device)
        self._labels_fn = self._labels
        if compile:
            # One compiled graph per input shape: the confidence map is always
            # computed inside it (a few elementwise ops beside the model), since
            # a bool argument would make a second graph, compiled at the first
            # frame that asks for other outputs than the warm-up did.
            mode = "reduce-overhead" if self.device.type == "cuda" else "default"
            keep_resize_out_of_compile()
            compiled = torch.compile(self._labels_with_confidence, mode=mode, dynamic=False)
            self._labels_fn = lambda images, want_conf: compiled(images)
        if warmup_size:
            self.warm_up(warmup_size)

    def warm_up(self, size: tuple[int, int] = (540, 960)) -> None:
        """One frame of `size` (H, W) through every output: allocations, kernel
        selection and (with compile) the compiled graph happen here, not on the
        first camera frame."""
        self.segment_batch([np.zeros((*size, 3), np.uint8)], OUTPUTS)

    @property
    def name(self) -> str:
        return self.artifact.name

    @staticmethod
    def _onnx_session(artifact: Artifact, threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ArtifactError("backend onnxruntime needs `pip install onnxruntime`") from exc
        if artifact.onnx_path is None:
            raise ArtifactError(
                f"backend onnxruntime needs {artifact.path}/model.onnx; "
                "export with `offroad-seg export CKPT OUT --onnx`"
            )
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads > 0:
            opts.intra_op_num_threads = threads
        return ort.InferenceSession(str(artifact.onnx_path), opts, providers=["CPUExecutionProvider"])

    def _onnx_forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self._session is not None
        return torch.from_numpy(self._session.run(None, {"input": x.float().contiguous().numpy()})[0])

    # -- the device-side path ---------------------------------------------------
    def _labels(self, images: torch.Tensor, want_conf: bool):
        """uint8 (B, H, W, 3) on device -> class map (and confidence) at input size."""
        height, width = images.shape[1:3]
        if self._ov is not None:  # argmax and confidence inside the OpenVINO graph
            labels_np, conf_np = self._ov(self.pre(images).contiguous().numpy(), want_conf)
            labels = self.pre.labels_to_input_size(
                self.pre.crop(torch.from_numpy(labels_np), height, width), height, width)
            conf = None if conf_np is None else self.pre.labels_to_input_size(
                self.pre.crop(torch.from_numpy(conf_np), height, width), height, width)
            return labels, conf
        forward = self._onnx_forward if self._session is not None else self.net
        assert forward is not None
        labels, logits = predict_labels(forward, self.pre, images, self.dtype)
        conf = None
        if want_conf:
            conf = (logits.float().softmax(1).amax(1) * 255).round().to(torch.uint8)
            conf = self.pre.labels_to_input_size(conf, height, width)
        return labels, conf

    @staticmethod
    def _lookup(lut: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """lut[labels] (a class -> cost or colour table). On the CPU numpy's take
        on uint8 indices is ~5x torch's indexing, which needs int64 indices."""
        if labels.device.type == "cpu":
            return torch.from_numpy(np.take(lut.numpy(), labels.numpy(), axis=0))
        return lut[labels.long()]

    def _labels_with_confidence(self, images: torch.Tensor):
        return self._labels(images, True)

    def _upload(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        batch = np.ascontiguousarray(np.stack(frames) if len(frames) > 1 else frames[0][None])
        with warnings.catch_warnings():
            # Frames parsed from a message are read-only views; nothing writes to them.
            warnings.simplefilter("ignore", UserWarning)
            host = torch.from_numpy(batch)
        if self.device.type == "cuda":
            host = host.pin_memory()
            return host.to(self.device, non_blocking=True)
        return host

    def segment_batch(
        self, images: Sequence[np.ndarray], outputs: Iterable[str] = ("mask",)
    ) -> list[Segmentation]:
        """Segment RGB uint8 (H, W, 3) frames of one size in one forward pass."""
        with torch_threads(self._host_threads):
            return self._segment_batch(images, tuple(outputs))

    @torch.inference_mode()
    def _segment_batch(self, images: Sequence[np.ndarray], outputs: tuple[str, ...]) -> list[Segmentation]:
        bad = [o for o in outputs if o not in OUTPUTS]
        if bad:
            raise ValueError(f"unknown output(s) {bad}; choose from {OUTPUTS}")
        if not images:
            return []
        shape = images[0].shape
        for img in images:
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"expected RGB uint8 (H, W, 3) frames, got {img.dtype} {img.shape}")
            if img.shape != shape:
                raise ValueError(f"frames in one batch must share a size: {shape} vs {img.shape}")
        frames = self._upload(images)
        labels, conf = self._labels_fn(frames, "confidence" in outputs)
        device_out: dict[str, torch.Tensor] = {}
        if "mask" in outputs:
            device_out["mask"] = labels
        if "cost" in outputs:
            device_out["cost"] = self._lookup(self.cost_lut, labels)
        if "color" in outputs or "overlay" in outputs:
            color = self._lookup(self.color_lut, labels)
            if "color" in outputs:
                device_out["color"] = color
            if "overlay" in outputs:
                a = self.overlay_alpha
                blend = frames.to(torch.float32) * (1 - a) + color.to(torch.float32) * a
                device_out["overlay"] = blend.round().to(torch.uint8)
        if "confidence" in outputs:
            device_out["confidence"] = conf
        host = {k: v.to("cpu", non_blocking=True) for k, v in device_out.items()}
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        return [Segmentation(**{k: v[i].numpy() for k, v in host.items()}) for i in range(len(images))]

    def __call__(self, image: np.ndarray, outputs: Iterable[str] = ("mask",)) -> Segmentation:
        """Segment one RGB uint8 (H, W, 3) frame."""
        return self.segment_batch([image], outputs)[0]

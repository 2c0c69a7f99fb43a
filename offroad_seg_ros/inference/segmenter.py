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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offroad_seg_ros.core.artifact import Artifact
from offroad_seg_ros.core.calibration import confidence_level
from offroad_seg_ros.core.classes import IGNORE_INDEX, UNKNOWN_COST
from offroad_seg_ros.core.preprocess import check_model_input_width, keep_resize_out_of_compile
from offroad_seg_ros.inference.backend import Backend, backend_class
from offroad_seg_ros.inference.novelty_net import PIXEL, SHIFT, threshold_at
from offroad_seg_ros.inference.novelty_scores import sky_below_horizon
from offroad_seg_ros.inference.outputs import OUTPUTS

# The novelty image: the novel threshold maps to 128 (without a threshold, this quantile of ordinary
# pixels does), and the ordinary pixels' spread from their median to that quantile spans 64 grey
# levels: an affine map whatever the score's sign (the outlier head's logits are mostly negative).
NOVELTY_IMAGE_LEVEL = 0.99
NOVELTY_IMAGE_SPAN = 64.0


@dataclass
class Segmentation:
    """Outputs at the input resolution; only the requested ones are set."""

    mask: np.ndarray | None = None  # uint8 (H, W) class index, 255 = no prediction
    cost: np.ndarray | None = None  # uint8 (H, W) Nav2 cost
    color: np.ndarray | None = None  # uint8 (H, W, 3) RGB
    overlay: np.ndarray | None = None  # uint8 (H, W, 3) RGB blend of input and colour
    confidence: np.ndarray | None = None  # uint8 (H, W) max softmax x 255 (calibrated)
    known_mask: np.ndarray | None = None  # uint8 (H, W) the mask; 255 below min_confidence, novel_index if novel
    novelty: np.ndarray | None = None  # uint8 (H, W) novelty score, 128 = the novel threshold
    novel_pixels: int | None = None  # pixels flagged novel (with novel_threshold on and cost or known_mask asked)
    shift: float | None = None  # the frame's shift score (its mean feature density), where the artifact has one
    shifted: bool | None = None  # shift above the shift threshold (None: shift_threshold off)


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


class Segmenter:
    """Runs a model artifact on frames.

    backend: a runtime from `inference.backend.BACKENDS`: torch | onnxruntime |
    openvino (the last two on the CPU, from the artifact's model.onnx).
    device: auto | cpu | cuda | cuda:N. precision: fp32 | fp16 | bf16 (and, with
    backend openvino: auto | int8). threads: intra-op threads of the runtime
    (0 = its default). Each backend refuses what it can't do.
    compile: torch.compile the whole path (on CUDA in "reduce-overhead" mode,
    i.e. replayed CUDA graphs, re-captured per input shape); torch backend only.
    Off by default: the first compile takes tens of seconds.
    min_confidence: pixels whose confidence is below it (as a uint8 level,
    core.calibration.confidence_level) are unknown: cost 255, known_mask 255;
    the mask keeps its argmax. 0 = every pixel known.
    model_input_width: every frame is resized to this width (px, aspect kept)
    before the network; 0 = the artifact's: its scale of the training frames'
    width when it records that (any camera resolution gives the network the
    training frames' scale), else its scale of the incoming frame.
    novel_threshold: a quantile level of the novelty score on ordinary validation pixels
    (the artifact's `novelty` record, tools/novelty.py): pixels scoring above it (and, for an
    artifact without an outlier head, pixels predicted Sky well below the horizon) are novel:
    cost `novel_cost`, known_mask the class table's novel_index; the mask keeps its argmax. 0 = off.
    shift_threshold: a multiple of the highest shift score (a frame's mean feature density) of
    the validation frames: a frame above it is `shifted`. 0 = off. The default's choice:
    docs/trust.md. Both thresholds need the artifact's novelty statistics; without them
    they are inactive and `novelty_status` says why.
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
        min_confidence: float = 0.0,
        model_input_width: int = 0,
        novel_threshold: float = 0.999,
        novel_cost: int = 254,
        shift_threshold: float = 1.3,
    ):
        if not 0.0 <= overlay_alpha <= 1.0:
            raise ValueError(f"overlay_alpha must be within 0..1, got {overlay_alpha}")
        check_model_input_width(model_input_width)  # before the model loads
        self.runtime: Backend = backend_class(backend)(model, device, precision, threads, compile)
        self.backend = backend
        self.artifact: Artifact = self.runtime.artifact
        self.device = self.runtime.device
        self.precision = self.runtime.precision  # what `auto` chose
        self.overlay_alpha = overlay_alpha
        self.min_level = confidence_level(min_confidence)
        self.classes = self.artifact.classes
        self.pre = replace(self.artifact.preprocess, model_input_width=model_input_width)
        self.color_lut = torch.from_numpy(self.classes.color_lut()).to(self.device)
        self.cost_lut = torch.from_numpy(self.classes.cost_lut(cost_overrides)).to(self.device)
        self._novelty_limits(novel_threshold, novel_cost, shift_threshold)
        self._labels_fn = self._labels
        if compile:
            # One compiled graph per input shape: the confidence map is always
            # computed inside it (a few elementwise ops beside the model), since
            # a bool argument would make a second graph, compiled at the first
            # frame that asks for other outputs than the warm-up did.
            mode = "reduce-overhead" if self.device.type == "cuda" else "default"
            keep_resize_out_of_compile()
            compiled = torch.compile(self._labels_with_confidence, mode=mode, dynamic=False)
            self._labels_fn = lambda images, want_conf: compiled(images)  # type: ignore[assignment]
        if warmup_size:
            self.warm_up(warmup_size)

    def _novelty_limits(self, novel_threshold: float, novel_cost: int, shift_threshold: float) -> None:
        """The score limits the thresholds name, from the artifact's novelty record. An artifact
        without one runs without them (`novelty_status` says so): a robot keeps its older models."""
        if not 0.0 <= novel_threshold < 1.0:
            raise ValueError(f"novel_threshold must be a quantile level in [0, 1) (0 = off), got {novel_threshold}")
        if shift_threshold < 0:
            raise ValueError(f"shift_threshold must be >= 0 (a multiple of the validation frames' highest "
                             f"shift score; 0 = off), got {shift_threshold}")
        if not 0 <= novel_cost <= 255:
            raise ValueError(f"novel_cost must be within 0..255, got {novel_cost}")
        record = self.artifact.novelty
        self.sky = None  # the class the sky cue reads, where it applies
        self.novel_cost = novel_cost
        self.novel_limit = self.shift_limit = self.novelty_scale = self.novelty_mid = None
        self.novelty_status = "off" if not (novel_threshold or shift_threshold) else "on"
        if record is None:
            if novel_threshold or shift_threshold:
                self.novelty_status = (f"unavailable: {self.artifact.path} has no novelty statistics (fit them "
                                       f"with `offroad-seg outlier-head {self.artifact.path} DATA_ROOT`, or the "
                                       f"density alone with `offroad-seg novelty {self.artifact.path} DATA_ROOT`)")
            return
        pixels = record["pixel_quantiles"]
        pixel_score = record.get("pixel_score", "feature_density")
        if self.novelty_status == "on":
            self.novelty_status = f"on (pixel score: {pixel_score.replace('_', ' ')})"
        # The sky cue stands in for what the density misses (a puddle mirroring the sky); an
        # outlier head does without it, as the cue flags ordinary pixels the model calls Sky
        # (docs/trust.md, "Something new in view").
        if pixel_score == "feature_density":
            self.sky = self.classes.sky_index
        self.novel_limit = threshold_at(pixels, novel_threshold) if novel_threshold else None
        self.shift_limit = shift_threshold * threshold_at(record["frame_quantiles"], 1.0) if shift_threshold else None
        top = threshold_at(pixels, NOVELTY_IMAGE_LEVEL)
        self.novelty_mid = self.novel_limit if self.novel_limit is not None else top
        self.novelty_scale = NOVELTY_IMAGE_SPAN / max(top - threshold_at(pixels, 0.5), 1e-6)  # grey levels per unit

    def warm_up(self, size: tuple[int, int] = (540, 960)) -> None:
        """One frame of `size` (H, W) through every output: allocations, kernel
        selection and (with compile) the compiled graph happen here, not on the
        first camera frame."""
        frame = [np.zeros((*size, 3), np.uint8)]
        outputs = self.available_outputs
        compiled = self._labels_fn
        if compiled is not self._labels and self.device.type == "cuda":
            # An eager pass first, on this thread: cuDNN makes a thread's handle at its first
            # convolution, which must not fall inside a CUDA-graph capture (a compiled model
            # loaded on a worker thread failed there: bench/RESULTS.md, GPU).
            self._labels_fn = self._labels
            try:
                self.segment_batch(frame, outputs)
            finally:
                self._labels_fn = compiled
        self.segment_batch(frame, outputs)

    def release(self) -> None:
        """Drop the runtime (the network's memory) and give CUDA's cached memory
        back to the device; the Segmenter can't segment after this."""
        del self.runtime
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @property
    def available_outputs(self) -> tuple[str, ...]:
        """The outputs this model can make: `novelty` only with the artifact's novelty statistics."""
        return OUTPUTS if self.novelty_scale is not None else tuple(o for o in OUTPUTS if o != "novelty")

    @property
    def name(self) -> str:
        return self.artifact.name

    def network_input_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) a height x width frame is resized to before the network (then padded)."""
        return self.pre.scaled_size(height, width)

    # -- the device-side path ---------------------------------------------------
    def _labels(self, images: torch.Tensor, want_conf: bool) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                        torch.Tensor | None, torch.Tensor | None]:
        """uint8 (B, H, W, 3) on device -> class map, confidence or None, novelty score or None
        at input size, and the frames' shift scores (B,) or None."""
        height, width = images.shape[1:3]
        labels, conf, novelty = self.runtime.run(self.pre(images, dtype=self.runtime.dtype), want_conf)

        def to_input_size(m: torch.Tensor) -> torch.Tensor:
            return self.pre.labels_to_input_size(self.pre.crop(m, height, width), height, width)

        if novelty is None:
            return to_input_size(labels), None if conf is None else to_input_size(conf), None, None
        # (B, 2, h, w): the pixel score and the density; a model.onnx of a density-only
        # artifact exported before the outlier head existed gives the density alone, (B, h, w).
        pixel, density = (novelty[:, PIXEL], novelty[:, SHIFT]) if novelty.dim() == 4 else (novelty, novelty)
        shift = self.pre.crop(density, height, width).float().mean((1, 2))
        return (to_input_size(labels), None if conf is None else to_input_size(conf), to_input_size(pixel), shift)

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
        with torch_threads(self.runtime.host_threads):
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
        gated = self.min_level > 0 and ("cost" in outputs or "known_mask" in outputs)
        labels, conf, novelty, shift = self._labels_fn(frames, "confidence" in outputs or gated)
        unsure = None
        if gated:
            assert conf is not None
            unsure = conf < self.min_level
        gates = "cost" in outputs or "known_mask" in outputs
        # The sky cue once, for both the novel pixels and the novelty image, and only for them.
        cued = self.novel_limit is not None and (gates or "novelty" in outputs)
        sky_cue = sky_below_horizon(labels, self.sky) if cued and self.sky is not None else None
        novel = self._novel(novelty, sky_cue) if gates else None
        device_out: dict[str, torch.Tensor] = {}
        if "mask" in outputs:
            device_out["mask"] = labels
        if "known_mask" in outputs:
            known = labels if unsure is None else labels.masked_fill(unsure, IGNORE_INDEX)
            device_out["known_mask"] = known if novel is None else known.masked_fill(novel, self.classes.novel_index)
        if "cost" in outputs:
            cost = self._lookup(self.cost_lut, labels)
            cost = cost if unsure is None else cost.masked_fill(unsure, UNKNOWN_COST)
            device_out["cost"] = cost if novel is None else cost.masked_fill(novel, self.novel_cost)
        if "color" in outputs or "overlay" in outputs:
            color = self._lookup(self.color_lut, labels)
            if "color" in outputs:
                device_out["color"] = color
            if "overlay" in outputs:
                a = self.overlay_alpha
                blend = frames.to(torch.float32) * (1 - a) + color.to(torch.float32) * a
                device_out["overlay"] = blend.round().to(torch.uint8)
        if "confidence" in outputs:
            assert conf is not None  # asked for, so the backend made it
            device_out["confidence"] = conf
        if "novelty" in outputs:
            device_out["novelty"] = self._novelty_image(novelty, sky_cue)
        per_frame = self._per_frame(novel, shift)
        host = {k: v.to("cpu", non_blocking=True) for k, v in device_out.items()}
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        fields: list[dict[str, Any]] = [{**{k: v[i].numpy() for k, v in host.items()},
                                         **{k: v[i] for k, v in per_frame.items()}} for i in range(len(images))]
        return [Segmentation(**f) for f in fields]

    def _novel(self, novelty: torch.Tensor | None, sky_cue: torch.Tensor | None) -> torch.Tensor | None:
        """(B, H, W) bool: pixels above the novel threshold, or Sky well below the horizon; None
        with novel_threshold off."""
        if self.novel_limit is None:
            return None
        if novelty is None:
            raise RuntimeError(f"backend {self.backend} gave no novelty score for {self.artifact.path}: "
                               "its model.onnx predates the novelty statistics; re-export it "
                               f"(`offroad-seg novelty {self.artifact.path} DATA_ROOT` does)")
        novel = novelty > self.novel_limit
        return novel if sky_cue is None else novel | sky_cue

    def _novelty_image(self, novelty: torch.Tensor | None, sky_cue: torch.Tensor | None) -> torch.Tensor:
        """uint8: 128 at the novel threshold (else the ordinary pixels' 0.99 quantile), 64 grey levels
        per the ordinary pixels' spread (median to 0.99 quantile), 255 where the sky cue flags a pixel."""
        if novelty is None or self.novelty_scale is None:
            raise ValueError(f"output novelty needs novelty statistics in {self.artifact.path}: "
                             f"fit them with `offroad-seg novelty {self.artifact.path} DATA_ROOT`")
        assert self.novelty_mid is not None
        image = (128.0 + (novelty.float() - self.novelty_mid) * self.novelty_scale).clamp(0, 255).round()
        image = image.to(torch.uint8)
        return image if sky_cue is None else image.masked_fill(sky_cue, 255)

    def _per_frame(self, novel: torch.Tensor | None, shift: torch.Tensor | None) -> dict[str, list]:
        """The Segmentation's per-frame numbers, as lists over the batch."""
        out: dict[str, list] = {}
        if novel is not None:
            out["novel_pixels"] = novel.sum((1, 2)).tolist()
        if shift is not None:
            out["shift"] = shift.tolist()
            if self.shift_limit is not None:
                out["shifted"] = [s > self.shift_limit for s in out["shift"]]
        return out

    def __call__(self, image: np.ndarray, outputs: Iterable[str] = ("mask",)) -> Segmentation:
        """Segment one RGB uint8 (H, W, 3) frame."""
        return self.segment_batch([image], outputs)[0]

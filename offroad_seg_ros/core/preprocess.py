"""The one preprocessing policy, shared by training validation, the node and the evaluator.

Policy (recorded in the artifact): resize the frame by `scale` (keeping aspect,
1.0 = native), normalise with mean/std, pad bottom/right to a multiple of 32
(the encoder's stride) with the mean colour, run the model, crop the padding,
take the argmax and bring the class map back to the input resolution with
nearest-neighbour. Training crops are sampled at the same `scale`, so the
model sees objects at the size it will see them on the robot. (The reference
recipe trained on native-scale crops but squashed 960x540 to 320x320 at test
time, which changes both scale and aspect between training and use.)

Any camera resolution: an artifact that records the size of its training
frames (`train_size`) has `scale` apply to that size, so a frame of another
resolution is resized to the network input a training frame would have given
(a 1920x1080 frame by 0.25 for a model trained on 960x540 at 0.5). Older
artifacts, without the record, apply `scale` to whatever frame arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# model_input_width's range in pixels: the ONNX export's widest input is 128 x 32 (core/onnx_export.py).
MIN_INPUT_WIDTH, MAX_INPUT_WIDTH = 32, 4096


def check_model_input_width(width: Any) -> int:
    """The `model_input_width` option (node parameter, Segmenter argument): 0 or a width in pixels."""
    if isinstance(width, bool) or not isinstance(width, int) or \
            not (width == 0 or MIN_INPUT_WIDTH <= width <= MAX_INPUT_WIDTH):
        raise ValueError(f"model_input_width must be 0 (from the model artifact) or an integer number of pixels "
                         f"in {MIN_INPUT_WIDTH}..{MAX_INPUT_WIDTH}, got {width!r}")
    return width


@dataclass(frozen=True)
class Preprocess:
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scale: float = 1.0
    pad_multiple: int = 32
    # (width, height) of the training frames before `scale`, as recorded in the artifact; None in
    # artifacts written before it was recorded, whose `scale` applies to whatever frame arrives.
    train_size: tuple[int, int] | None = None
    # The node's override, never recorded: every frame is resized to this width (px); 0 = from the artifact.
    model_input_width: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.scale <= 4:
            raise ValueError(f"inference scale must be in (0, 4], got {self.scale}")
        if self.pad_multiple < 1:
            raise ValueError(f"pad_multiple must be >= 1, got {self.pad_multiple}")
        if self.train_size is not None and (not isinstance(self.train_size, tuple) or len(self.train_size) != 2
                                            or not all(isinstance(v, int) and v > 0 for v in self.train_size)):
            raise ValueError(f"train_size must be [width, height] in pixels, got {self.train_size!r}")
        check_model_input_width(self.model_input_width)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        size = d.get("train_size")
        return cls(
            mean=tuple(d.get("mean", IMAGENET_MEAN)),  # type: ignore[arg-type]
            std=tuple(d.get("std", IMAGENET_STD)),  # type: ignore[arg-type]
            scale=float(d.get("scale", 1.0)),
            pad_multiple=int(d.get("pad_multiple", 32)),
            train_size=tuple(size) if isinstance(size, list) else size,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["model_input_width"]  # a runtime choice, not the model's
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["policy"] = "scale, normalise, pad bottom/right to pad_multiple; argmax; nearest back"
        if self.train_size is None:
            del d["train_size"]  # written as before the record existed
        else:
            d["train_size"] = list(self.train_size)
            d["policy"] = "scale of train_size's width, " + d["policy"].removeprefix("scale, ")
        return d

    def resize_factor(self, width: int) -> float:
        """How much a frame `width` pixels wide is resized before the network."""
        if self.model_input_width:
            return self.model_input_width / width
        if self.train_size is None or width == self.train_size[0]:
            return self.scale
        # Matched by width, not by area: a camera's resolution modes (and its 16:9 and 4:3 crops of
        # one sensor, roughly) keep the horizontal field of view, so an object's size in pixels
        # follows the frame's width whatever its height; the height follows the frame's aspect.
        return self.scale * self.train_size[0] / width

    def scaled_size(self, height: int, width: int) -> tuple[int, int]:
        """The network's input size (before padding) for a height x width frame."""
        factor = self.resize_factor(width)
        if factor == 1.0:
            return height, width
        return max(1, round(height * factor)), max(1, round(width * factor))

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """Network input size for a (scaled) height x width: next multiple of pad_multiple."""
        m = self.pad_multiple
        return -(-height // m) * m, -(-width // m) * m

    def __call__(self, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 (B, H, W, 3) RGB on any device -> resized to `scaled_size`, normalised,
        padded (B, 3, Hp, Wp) network input."""
        return self.normalize(images, dtype, resize=True)

    def normalize(self, images: torch.Tensor, dtype: torch.dtype = torch.float32,
                  resize: bool = False) -> torch.Tensor:
        """Normalise and pad without resizing (training crops are already at
        the inference scale); `resize=True` is the full inference policy."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 (B, H, W, 3) RGB, got {images.dtype} {tuple(images.shape)}")
        height, width = images.shape[1:3]
        # Normalise in fp32; only the network input is cast to `dtype`.
        x = images.permute(0, 3, 1, 2)
        h, w = self.scaled_size(height, width) if resize else (height, width)
        if (h, w) != (height, width):
            shrink = self.resize_factor(width) < 1
            if x.device.type == "cpu":
                x = _resize(x, (h, w), shrink)
            else:  # CUDA has no uint8 kernels (and antialiased resize no half ones)
                x = F.interpolate(x.float(), size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)
        x = x.float()
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1) * 255
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1) * 255
        x = (x - mean) / std
        hp, wp = self.padded_size(h, w)
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, wp - w, 0, hp - h))  # zero after normalising = the mean colour
        return x.to(dtype).contiguous(memory_format=torch.channels_last)

    def crop(self, logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Remove the padding from model output (B, C, Hp, Wp) for an input of height x width."""
        h, w = self.scaled_size(height, width)
        return logits[..., :h, :w]

    def labels_to_input_size(self, labels: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, h, w) uint8 class map (or confidence) at model scale -> (B, height, width), nearest."""
        if labels.shape[-2:] == (height, width):
            return labels
        return F.interpolate(labels[:, None], size=(height, width), mode="nearest")[:, 0]


def _resize_uint8(images: torch.Tensor, size: tuple[int, int], antialias: bool) -> torch.Tensor:
    """Bilinear resize of uint8 (B, 3, H, W) on the CPU, in uint8: torch's
    vectorised uint8 kernels are ~9x its float ones (960x540 -> 480x270
    antialiased on one core: 0.4 vs 3.8 ms) and differ from float resampling
    only by the rounding to whole grey levels (at most 1). Kept out of
    torch.compile (see keep_resize_out_of_compile)."""
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=antialias)


_resize = _resize_uint8


def keep_resize_out_of_compile() -> None:
    """Call before torch.compile traces the inference path: its decomposition
    of the uint8 resize resamples in float and would not match the eager path.
    Not done at import: torch.compiler.disable imports torch._dynamo, ~3 s
    of every process's start-up (the node's included) that only compiling needs."""
    global _resize
    _resize = torch.compiler.disable(_resize_uint8)


def labels_from_logits(logits: torch.Tensor, want_conf: bool = False,
                       temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (B, C, h, w) -> uint8 class map (B, h, w) and, if asked, the
    confidence: max softmax of logits / temperature (the artifact's
    calibration) x 255, rounded, uint8. The one definition of both (the
    OpenVINO backend builds the same ops into its graph)."""
    # argmax over channels runs ~10x faster on channels-last memory on the CPU
    # (torch reduces a strided NCHW dim slowly); the torch backend's output is
    # channels-last already, onnxruntime's is not.
    logits = logits.contiguous(memory_format=torch.channels_last)
    labels = logits.argmax(1).to(torch.uint8)
    conf = None
    if want_conf:
        scaled = logits.float() if temperature == 1.0 else logits.float() / temperature
        conf = (scaled.softmax(1).amax(1) * 255).round().to(torch.uint8)
    return labels, conf


def predict_labels(
    forward: Callable[[torch.Tensor], torch.Tensor],
    pre: Preprocess,
    images: torch.Tensor,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The shared inference path: uint8 (B, H, W, 3) frames -> (class map
    uint8 (B, H, W) at input size, logits (B, C, h, w) at model scale).

    Training validation runs it; the Segmenter runs the same steps with its
    backend in place of `forward` (preprocess, `labels_from_logits`, crop, resize).
    """
    height, width = images.shape[1:3]
    logits = pre.crop(forward(pre(images, dtype=dtype)), height, width)
    labels, _ = labels_from_logits(logits)
    return pre.labels_to_input_size(labels, height, width), logits

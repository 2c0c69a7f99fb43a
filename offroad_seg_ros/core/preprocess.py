"""The one preprocessing policy, shared by training validation, the node and the evaluator.

Policy (recorded in the artifact): resize the frame by `scale` (keeping aspect,
1.0 = native), normalise with mean/std, pad bottom/right to a multiple of 32
(the encoder's stride) with the mean colour, run the model, crop the padding,
take the argmax and bring the class map back to the input resolution with
nearest-neighbour. Training crops are sampled at the same `scale`, so the
model sees objects at the size it will see them on the robot. (The reference
recipe trained on native-scale crops but squashed 960x540 to 320x320 at test
time, which changes both scale and aspect between training and use.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scale: float = 1.0
    pad_multiple: int = 32

    def __post_init__(self) -> None:
        if not 0 < self.scale <= 4:
            raise ValueError(f"inference scale must be in (0, 4], got {self.scale}")
        if self.pad_multiple < 1:
            raise ValueError(f"pad_multiple must be >= 1, got {self.pad_multiple}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        return cls(
            mean=tuple(d.get("mean", IMAGENET_MEAN)),  # type: ignore[arg-type]
            std=tuple(d.get("std", IMAGENET_STD)),  # type: ignore[arg-type]
            scale=float(d.get("scale", 1.0)),
            pad_multiple=int(d.get("pad_multiple", 32)),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["policy"] = "scale, normalise, pad bottom/right to pad_multiple; argmax; nearest back"
        return d

    def scaled_size(self, height: int, width: int) -> tuple[int, int]:
        if self.scale == 1.0:
            return height, width
        return max(1, round(height * self.scale)), max(1, round(width * self.scale))

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """Network input size for a (scaled) height x width: next multiple of pad_multiple."""
        m = self.pad_multiple
        return -(-height // m) * m, -(-width // m) * m

    def __call__(self, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 (B, H, W, 3) RGB on any device -> resized by `scale`, normalised,
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
            if x.device.type == "cpu":
                x = _resize(x, (h, w), self.scale < 1)
            else:  # CUDA has no uint8 kernels (and antialiased resize no half ones)
                x = F.interpolate(x.float(), size=(h, w), mode="bilinear", align_corners=False,
                                  antialias=self.scale < 1)
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

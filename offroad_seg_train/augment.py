"""Albumentations pipelines built from config data (never from code strings).

A pipeline is a list of single-key mappings: `{TransformName: {param: value}}`;
`OneOf` / `SomeOf` / `Sequential` take `transforms: [...]` the same way. Names
resolve only to albumentations transform classes (a registry lookup, no eval).
Normalisation is not part of the pipeline: crops stay uint8 until the shared
`Preprocess` normalises them on the training device, exactly as at inference.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import cv2

from offroad_seg_ros.core.classes import IGNORE_INDEX


# The reference recipe (smp's classic pipeline, ported to albumentations 2.x):
# ShiftScaleRotate -> Affine with nearest mask interpolation and the ignore
# value as mask fill; IAAAdditiveGaussianNoise(var 10..50) -> GaussNoise with
# std 3.2..7.1 of 255; Normalize runs later on the device (see above).
def reference_pipeline(crop: int = 320) -> list[dict[str, Any]]:
    return [
        {"HorizontalFlip": {"p": 0.5}},
        {"Affine": {"scale": [0.5, 1.5], "translate_percent": [-0.1, 0.1], "rotate": 0,
                    "border_mode": cv2.BORDER_CONSTANT, "fill": 0, "fill_mask": IGNORE_INDEX, "p": 1.0}},
        {"RandomCrop": {"height": crop, "width": crop, "pad_if_needed": True,
                        "border_mode": cv2.BORDER_CONSTANT, "fill": 0, "fill_mask": IGNORE_INDEX, "p": 1.0}},
        {"GaussNoise": {"std_range": [0.0124, 0.0277], "p": 0.2}},
        {"Perspective": {"p": 0.5, "fill": 0, "fill_mask": IGNORE_INDEX}},
        {"OneOf": {"p": 0.9, "transforms": [
            {"CLAHE": {"p": 1.0}}, {"RandomBrightnessContrast": {"p": 1.0}}, {"RandomGamma": {"p": 1.0}}]}},
        {"OneOf": {"p": 0.9, "transforms": [
            {"Sharpen": {"p": 1.0}}, {"Blur": {"blur_limit": 3, "p": 1.0}},
            {"MotionBlur": {"blur_limit": 3, "p": 1.0}}]}},
        {"OneOf": {"p": 0.9, "transforms": [
            {"RandomBrightnessContrast": {"p": 1.0}}, {"HueSaturationValue": {"p": 1.0}}]}},
    ]


def _build_one(spec: Mapping[str, Any]) -> A.BasicTransform | A.BaseCompose:
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ValueError(f"augmentation entry must be one {{Name: {{params}}}} mapping, got {spec!r}")
    (name, params), = spec.items()
    cls = getattr(A, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, (A.BasicTransform, A.BaseCompose))):
        raise ValueError(f"unknown albumentations transform {name!r}")
    params = dict(params or {})
    if issubclass(cls, A.BaseCompose):
        params["transforms"] = [_build_one(t) for t in params.get("transforms", [])]
    # Masks always use nearest interpolation; interpolating class IDs makes new classes.
    if "mask_interpolation" in inspect.signature(cls).parameters:
        params.setdefault("mask_interpolation", cv2.INTER_NEAREST)
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid parameters for {name}: {exc}") from exc


def build_pipeline(specs: Sequence[Mapping[str, Any]] | None) -> A.Compose:
    """Compose the configured transforms (uint8 image + uint8 index mask)."""
    return A.Compose([_build_one(s) for s in (specs or [])], seed=None)

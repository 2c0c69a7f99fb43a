"""The model artifact: a directory with `model.json` and `weights.safetensors`
(+ `model.onnx`, + the int8 OpenVINO model `model_int8.xml` / `.bin`).

This module is the one owner of the artifact's metadata file: it alone names,
reads and writes it. `save_artifact` writes a new artifact; `update_artifact`
is the one way anything is added to an existing one (the confidence's
temperature, the int8 record, ...), keeping every key it does not model.

Loading never unpickles and never downloads: the network is built with
`encoder_weights=None` and the tensors come from safetensors.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from offroad_seg_ros import __version__
from offroad_seg_ros.core.classes import ClassTable
from offroad_seg_ros.core.fsutil import atomic_directory, write_atomic
from offroad_seg_ros.core.model import build_model
from offroad_seg_ros.core.preprocess import Preprocess

FORMAT_VERSION = 1
MODEL_JSON = "model.json"
WEIGHTS = "weights.safetensors"
ONNX = "model.onnx"
INT8_XML = "model_int8.xml"  # OpenVINO's int8 model (+ .bin), written by tools/quantize.py
NOVELTY = "novelty.safetensors"  # the novelty score's statistics, written by tools/novelty.py

# model.json's top-level keys that Artifact models; any other is kept, as read, in Artifact.extra.
MODELLED_KEYS = frozenset({"format_version", "name", "architecture", "encoder", "model_kwargs", "num_classes",
                           "classes", "preprocess", "training", "calibration", "offroad_seg_version", "files"})
# The modelled keys an update may replace; the others describe the weights and are fixed when they are written.
UPDATABLE_KEYS = frozenset({"name", "training", "calibration"})


class ArtifactError(ValueError):
    """A model artifact is missing, malformed or does not match its weights."""


@dataclass
class ModelSpec:
    """What is needed to rebuild the network."""

    arch: str = "FPN"
    encoder: str = "resnext101_32x4d"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Artifact:
    """model.json, parsed. `extra` holds the top-level sections this class does not
    model (e.g. `int8`), as read, so that writing the artifact keeps them."""

    spec: ModelSpec
    classes: ClassTable
    preprocess: Preprocess
    name: str = "offroad-seg"
    training: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    has_onnx: bool = False
    # The confidence's temperature (tools/temperature.py, fitted on a validation split), under
    # model.json's key "calibration": {"temperature": T, ...how it was fitted}; T = 1 (the plain
    # softmax) when absent.
    calibration: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def temperature(self) -> float:
        return float(self.calibration.get("temperature", 1.0))

    def metadata(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "architecture": self.spec.arch,
            "encoder": self.spec.encoder,
            "model_kwargs": self.spec.kwargs,
            "num_classes": len(self.classes),
            "classes": self.classes.to_dict(),
            "preprocess": self.preprocess.to_dict(),
            "training": self.training,
            "calibration": self.calibration,
            "offroad_seg_version": __version__,
            "files": {"weights": WEIGHTS, **({"onnx": ONNX} if self.has_onnx else {})},
            **self.extra,
        }

    def build(self) -> torch.nn.Module:
        return build_model(self.spec.arch, self.spec.encoder, len(self.classes), None, **self.spec.kwargs)

    @property
    def onnx_path(self) -> Path | None:
        return self.path / ONNX if self.path and (self.path / ONNX).is_file() else None

    @property
    def novelty(self) -> dict[str, Any] | None:
        """model.json's `novelty` section (the score's method and its thresholds, tools/novelty.py)
        when the artifact stores the statistics it needs; None otherwise."""
        record = self.extra.get("novelty")
        if not isinstance(record, dict) or self.path is None or not (self.path / NOVELTY).is_file():
            return None
        return record

    @property
    def parent(self) -> str | None:
        """The artifact this one was adapted from, as its `provenance` record names it; None if unrecorded."""
        provenance = self.extra.get("provenance")
        parent = provenance.get("parent") if isinstance(provenance, dict) else None
        return None if parent is None else parent if isinstance(parent, str) else json.dumps(parent, sort_keys=True)

    def weights_digest(self, length: int = 12) -> str | None:
        """The first `length` hex digits of weights.safetensors' sha256, which tells two artifacts'
        weights apart whatever their names; None without the file (an ONNX-only artifact)."""
        weights = self.path / WEIGHTS if self.path is not None else None
        if weights is None or not weights.is_file():
            return None
        digest = hashlib.sha256()
        with weights.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()[:length]


def save_artifact(
    out_dir: str | Path,
    artifact: Artifact,
    model: torch.nn.Module,
    onnx: bool = False,
    force: bool = False,
) -> Path:
    """Write the artifact directory atomically: a temporary sibling, then rename."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    with atomic_directory(out_dir, force) as tmp:
        tmp.mkdir()
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        if onnx:
            from offroad_seg_ros.core.onnx_export import export_onnx

            export_onnx(model, artifact.preprocess, tmp / ONNX)
        artifact.has_onnx = onnx
        (tmp / MODEL_JSON).write_text(_dumps(artifact.metadata()))
    artifact.path = out_dir
    return out_dir


def read_artifact(path: str | Path) -> Artifact:
    """Parse `model.json` (no weights loaded)."""
    path = Path(path)
    return _parse(_read_metadata(path), path)


def update_artifact(path: str | Path, files: Mapping[str, str] | None = None, **sections: Any) -> Artifact:
    """Replace the top-level `sections` of an artifact's model.json (e.g.
    `calibration=record`, `int8=summary`) and add `files` entries; every other
    key stays as it is, unknown ones included. The result is checked as a read
    checks it, then written atomically. Returns the updated Artifact."""
    path = Path(path)
    meta = _read_metadata(path)
    fixed = sorted(set(sections) & (MODELLED_KEYS - UPDATABLE_KEYS))
    if fixed:
        raise ArtifactError(f"{path / MODEL_JSON}: {', '.join(fixed)} describe(s) the weights and cannot be "
                            f"updated; export a new artifact instead")
    meta.update(sections)
    if files:
        meta["files"] = {**(meta.get("files") or {}), **files}
    art = _parse(meta, path)
    write_atomic(path / MODEL_JSON, _dumps(meta))
    return art


def save_novelty(path: str | Path, tensors: Mapping[str, torch.Tensor], record: dict[str, Any]) -> Artifact:
    """Store the novelty score's statistics (novelty.safetensors, through a temporary name) and
    its record (model.json's `novelty` section)."""
    from safetensors.torch import save_file

    path = Path(path)
    _read_metadata(path)  # an artifact, before anything is written into it
    tmp = path / f".{NOVELTY}.tmp"
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        tmp.replace(path / NOVELTY)
    finally:
        tmp.unlink(missing_ok=True)
    return update_artifact(path, files={"novelty": NOVELTY}, novelty=record)


def load_novelty(artifact: Artifact) -> dict[str, torch.Tensor] | None:
    """The novelty statistics of an artifact that has them (see `Artifact.novelty`), else None."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if artifact.novelty is None:
        return None
    assert artifact.path is not None
    try:
        return load_file(str(artifact.path / NOVELTY))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{artifact.path / NOVELTY} is not a readable safetensors file: {exc}") from exc


def _dumps(meta: dict[str, Any]) -> str:
    return json.dumps(meta, indent=2) + "\n"


def _read_metadata(path: Path) -> dict[str, Any]:
    """model.json's top-level object, as stored."""
    meta_path = path / MODEL_JSON
    if not path.is_dir():
        raise ArtifactError(f"model artifact {path} does not exist or is not a directory")
    if not meta_path.is_file():
        raise ArtifactError(f"model artifact {path} has no {MODEL_JSON}")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ArtifactError(f"{meta_path} holds a JSON {type(meta).__name__}, not an object")
    return meta


def _parse(meta: dict[str, Any], path: Path) -> Artifact:
    """Check model.json's object and build the Artifact of the directory `path`."""
    meta_path = path / MODEL_JSON
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{meta_path}: format_version {meta.get('format_version')!r} is not supported "
            f"(this version reads {FORMAT_VERSION})"
        )
    try:
        classes = ClassTable.from_dict(meta["classes"])
        spec = ModelSpec(meta["architecture"], meta["encoder"], dict(meta.get("model_kwargs") or {}))
        pre = Preprocess.from_dict(meta["preprocess"])
        num_classes = int(meta["num_classes"])
        calibration = dict(meta.get("calibration") or {})
        temperature = float(calibration.get("temperature", 1.0))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{meta_path}: missing or invalid field: {exc}") from exc
    if num_classes != len(classes):
        raise ArtifactError(
            f"{meta_path}: num_classes is {num_classes} but the class table has {len(classes)} classes"
        )
    if not 0.01 <= temperature <= 100:
        raise ArtifactError(f"{meta_path}: calibration temperature {temperature} is outside 0.01..100")
    return Artifact(spec, classes, pre, name=str(meta.get("name", path.name)),
                    training=dict(meta.get("training") or {}), path=path,
                    has_onnx=(path / ONNX).is_file(), calibration=calibration,
                    extra={k: v for k, v in meta.items() if k not in MODELLED_KEYS})


def load_artifact(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[Artifact, torch.nn.Module]:
    """Artifact metadata plus the network with its weights, in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    art = read_artifact(path)
    weights = Path(path) / WEIGHTS
    if not weights.is_file():
        raise ArtifactError(f"model artifact {path} has no {WEIGHTS}")
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{weights} is not a readable safetensors file: {exc}") from exc
    try:
        model = art.build()
    except ValueError as exc:
        raise ArtifactError(f"{path}: cannot build {art.spec.arch}/{art.spec.encoder}: {exc}") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        head = [k for k in wrong if "segmentation_head" in k]
        if head and not missing and not unexpected:
            got = state[head[-1]].shape[0]
            raise ArtifactError(
                f"{weights} predicts {got} classes but {MODEL_JSON} lists {len(art.classes)}"
            )
        details = "; ".join(
            part for part in (
                f"missing {len(missing)} tensor(s) e.g. {missing[:3]}" if missing else "",
                f"unexpected {len(unexpected)} e.g. {unexpected[:3]}" if unexpected else "",
                f"{len(wrong)} with other shapes e.g. {wrong[:3]}" if wrong else "",
            ) if part
        )
        raise ArtifactError(
            f"{weights} does not match the architecture in {MODEL_JSON} "
            f"({art.spec.arch} + {art.spec.encoder}): {details}"
        )
    model.load_state_dict(state)
    return art, model.eval()

"""`offroad-seg adapt`: a model artifact adapted to a new place from that place's unlabelled frames.

1. The input normalisation is matched to the new place (`adapt_data.matched_preprocess`).
2. Self-training (`self_training.SelfTraining`) on the new frames, source frames replayed.
3. The gate (`gate.run_gate`) on the source validation split and on the new frames.
4. The confidence's temperature refitted on the source validation split through the adapted
   model (true labels; a temperature fitted to the model's own pseudo-labels tends to 0).
5. Written only when the gate passes, with its provenance (parent, data hash, settings, gate
   numbers) through the artifact's one owner, with ONNX and the int8 model when the parent had them.

docs/adaptation.md says why each choice and what it measured.
"""

from __future__ import annotations

import dataclasses
import datetime
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as L
import torch
from torch.utils.data import DataLoader

from offroad_seg_ros.core.artifact import Artifact, load_artifact, save_artifact
from offroad_seg_ros.core.fsutil import atomic_directory
from offroad_seg_ros.data.dataset import find_split

from .adapt_data import (
    AdaptCrops,
    TargetFrames,
    describe,
    matched_preprocess,
    pixel_statistics,
    read_source,
    read_target,
)
from .gate import GateResult, GateSettings, run_gate
from .scoring import Scored, score
from .self_training import AUX_FOOTPRINT, AUX_LABELS, AUX_NONE, SelfTraining, class_thresholds

LETHAL_COST = 254  # Nav2's LETHAL_OBSTACLE: the classes footprints argue against


class GateRefused(RuntimeError):
    """The adapted model failed its gate; nothing was written."""

    def __init__(self, result: GateResult):
        super().__init__("the adapted model failed its gate; nothing was written:\n" + result.table())
        self.result = result


@dataclass(frozen=True)
class AdaptSettings:
    """What a run does; recorded in the adapted artifact."""

    steps: int = 300
    batch: int = 4
    crop: int = 192
    lr: float = 1e-4
    ema: float = 0.99
    quantile: float = 0.5  # per-class threshold: this quantile of the teacher's confidence ...
    ceiling: float = 0.95  # ... capped here
    source_weight: float = 2.0
    footprint_weight: float = 1.0
    max_frames: int = 100
    source_frames: int = 60
    match_input: bool = True
    seed: int = 0
    gate: GateSettings = field(default_factory=GateSettings)

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "crop", "max_frames", "source_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"adapt {name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.quantile < 1 or not 0 < self.ceiling <= 1 or not 0 <= self.ema < 1 or self.lr <= 0:
            raise ValueError("adapt quantile must be in (0, 1), ceiling in (0, 1], ema in [0, 1), lr > 0")


@dataclass
class AdaptResult:
    out: Path | None
    gate: GateResult
    before: dict[str, Any]
    after: dict[str, Any]
    provenance: dict[str, Any]


def parent_id(art: Artifact) -> str:
    """The parent as the node's diagnostics name a model: <name>@<weights digest>."""
    return f"{art.name}@{art.weights_digest() or art.path}"


def _lethal(art: Artifact) -> list[int]:
    return [i for i, c in enumerate(art.classes.classes) if c.cost == LETHAL_COST]


def _fit(module: SelfTraining, crops: AdaptCrops, settings: AdaptSettings, work: Path, quiet: bool) -> None:
    """Lightning runs the steps (progress bar, checkpoints in `work`; an interrupted run resumes)."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    loader = DataLoader(crops, batch_size=settings.batch, shuffle=False, num_workers=0)
    ckpt = ModelCheckpoint(dirpath=work, save_last=True, every_n_train_steps=max(1, settings.steps // 4),
                           save_top_k=0)
    trainer = L.Trainer(max_steps=settings.steps, accelerator="cpu" if not torch.cuda.is_available() else "auto",
                        devices=1, logger=False, callbacks=[ckpt], enable_progress_bar=not quiet,
                        enable_model_summary=False, default_root_dir=work, deterministic=True)
    last = work / "last.ckpt"
    trainer.fit(module, loader, ckpt_path=str(last) if last.is_file() else None)


def _train(art: Artifact, model: torch.nn.Module, pre: Any, images: list[np.ndarray],
           replay: tuple[list[np.ndarray], list[np.ndarray]], aux: list[np.ndarray] | None, aux_kind: str,
           settings: AdaptSettings, work: Path, quiet: bool) -> SelfTraining:
    n = len(art.classes)
    thresholds = class_thresholds(model, pre, images, n, settings.quantile, settings.ceiling, art.temperature)
    module = SelfTraining(model, pre, thresholds, _lethal(art), settings.lr, settings.ema, settings.source_weight,
                          settings.footprint_weight, aux_kind, settings.steps)
    crops = AdaptCrops(images, replay, settings.crop, settings.steps, settings.batch, aux=aux, seed=settings.seed)
    _fit(module, crops, settings, work, quiet)
    return module


def oracle(model_dir: str | Path, labelled: str | Path, out: str | Path, source: str | Path,
           settings: AdaptSettings | None = None, quiet: bool = True) -> Path:
    """The reference an adaptation is measured against: the same recipe (matched input, the same
    steps, crops and source replay) with the new place's true labels in place of the teacher's.
    For measurement (bench/adapt_study.py): it needs labels a robot does not have."""
    settings = settings or AdaptSettings()
    out = Path(out)
    L.seed_everything(settings.seed, workers=True, verbose=False)
    art, model = load_artifact(model_dir)
    images, masks = read_source(labelled, art.classes, art.preprocess, settings.max_frames)
    replay = read_source(find_split(source, "train"), art.classes, art.preprocess, settings.source_frames)
    pre = art.preprocess
    if settings.match_input:
        pre = matched_preprocess(pre, pixel_statistics(replay[0]), pixel_statistics(images))
    work = out.with_name(f".{out.name}.oracle")
    module = _train(art, model, pre, images, replay, masks, AUX_LABELS, settings, work, quiet)
    val_images, val_masks = read_source(find_split(source, "val"), art.classes, art.preprocess)
    calibration = _temperature(module.teacher.eval(), pre, val_images, val_masks, len(art.classes))
    named = Artifact(art.spec, art.classes, pre, name=f"{art.name}-oracle", training=art.training,
                     calibration=calibration, extra={"provenance": {"parent": parent_id(art), "oracle": str(labelled)}})
    save_artifact(out, named, module.teacher.eval(), force=True)
    shutil.rmtree(work, ignore_errors=True)
    return out


def _footprint_shares(scored: Scored, footprints: list[np.ndarray] | None, lethal: list[int]) -> float | None:
    """The share of driven-over pixels `scored`'s class maps (keep_preds) call a lethal class."""
    if footprints is None or not any(f.any() for f in footprints):
        return None
    called = sum(int(np.isin(p[f], lethal).sum()) for p, f in zip(scored.preds, footprints))
    return called / max(1, sum(int(f.sum()) for f in footprints))


def adapt(model_dir: str | Path, target_source: str | Path, out: str | Path, source: str | Path,
          settings: AdaptSettings | None = None, image_topic: str | None = None,
          footprints: Callable[[TargetFrames], list[np.ndarray]] | None = None, force: bool = False,
          quiet: bool = False, stage: Callable[[str], None] | None = None, enforce_gate: bool = True) -> AdaptResult:
    """Adapt `model_dir` to the frames of `target_source` (folder or bag); `source` is the labelled
    dataset the model was trained on (its train split is replayed, its val split gates). Raises
    GateRefused, with the gate's numbers, when the adapted model fails its gate (`enforce_gate=False`,
    for measurement only, writes it anyway with the failed gate recorded)."""
    settings = settings or AdaptSettings()
    stage = stage or (lambda _: None)
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    L.seed_everything(settings.seed, workers=True, verbose=False)
    art, model = load_artifact(model_dir)
    n, names, temperature = len(art.classes), art.classes.names, art.temperature
    stage(f"reading up to {settings.max_frames} frames of {target_source}")
    target = read_target(target_source, art.preprocess, image_topic, settings.max_frames)
    stage(f"reading the labelled source {source} (train to replay, val to gate)")
    replay = read_source(find_split(source, "train"), art.classes, art.preprocess, settings.source_frames)
    val_images, val_masks = read_source(find_split(source, "val"), art.classes, art.preprocess)
    pre = art.preprocess
    if settings.match_input:
        pre = matched_preprocess(pre, pixel_statistics(replay[0]), pixel_statistics(target.images))
    fp = footprints(target) if footprints is not None else None
    lethal = _lethal(art)

    stage("scoring the parent on the source val split and the new frames")
    src_before = score(model, art.preprocess, n, val_images, val_masks, temperature)
    tgt_before = score(model, art.preprocess, n, target.images, temperature=temperature, keep_preds=fp is not None)
    fp_before = _footprint_shares(tgt_before, fp, lethal)

    work = out.with_name(f".{out.name}.adapt-{target.digest[:12]}")
    stage(f"self-training for {settings.steps} steps (checkpoints in {work})")
    module = _train(art, model, pre, target.images, replay, [f.astype(np.uint8) for f in fp] if fp else None,
                    AUX_FOOTPRINT if fp is not None else AUX_NONE, settings, work, quiet)
    shutil.rmtree(work, ignore_errors=True)  # the checkpoints only serve an interrupted run's resume
    adapted, student = module.teacher.eval(), module.student.eval()

    stage("the gate: source val, class shares, teacher-student agreement" + (", footprints" if fp else ""))
    src_after = score(adapted, pre, n, val_images, val_masks, temperature)
    tgt_after = score(adapted, pre, n, target.images, temperature=temperature, keep_preds=True)
    stu = score(student, pre, n, target.images, temperature=temperature, keep_preds=True)
    fp_after = _footprint_shares(tgt_after, fp, lethal)
    gate = run_gate(src_before, src_after, tgt_before, tgt_after, stu, names, settings.gate,
                    None if fp_before is None or fp_after is None else (fp_before, fp_after))
    if enforce_gate and not gate.passed:
        raise GateRefused(gate)

    stage("refitting the confidence's temperature on the source val split")
    calibration = _temperature(adapted, pre, val_images, val_masks, n)
    provenance = {
        "parent": parent_id(art), "parent_path": str(Path(model_dir).resolve()),
        "adapted_on": describe(target), "source": str(Path(source).resolve()),
        "settings": dataclasses.asdict(settings), "gate": gate.to_dict(),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "method": "input statistics matched to the target; EMA-teacher self-training with per-class "
                  "thresholds, strong augmentation and source replay (docs/adaptation.md)",
    }
    written = _write(out, art, pre, adapted, calibration, provenance, target, source, force, stage)
    before = {"source_val": src_before.summary(), "footprints_lethal": fp_before}
    after = {"source_val": src_after.summary(), "footprints_lethal": fp_after}
    return AdaptResult(written, gate, before, after, provenance)


def _temperature(model: torch.nn.Module, pre: Any, images: list[np.ndarray], masks: list[np.ndarray],
                 n: int) -> dict[str, Any]:
    from offroad_seg_ros.core.classes import IGNORE_INDEX
    from offroad_seg_ros.tools.temperature import fit_temperature

    logits, target = [], []
    with torch.no_grad():
        for image, mask in zip(images, masks):
            x = torch.from_numpy(image)[None]
            out = model(pre.normalize(x))[0, :, : image.shape[0], : image.shape[1]][:, ::2, ::2]
            m = torch.from_numpy(mask[::2, ::2].astype(np.int64)).reshape(-1)
            keep = m != IGNORE_INDEX
            logits.append(out.reshape(n, -1).T[keep])
            target.append(m[keep])
    t = fit_temperature(torch.cat(logits), torch.cat(target))
    before = score(model, pre, n, images, masks, 1.0).calibration.ece()
    after = score(model, pre, n, images, masks, t).calibration.ece()
    return {"temperature": t, "method": "temperature scaling, NLL (LBFGS), refitted after adaptation",
            "split": "source val", "frames": len(images), "ece_before": before, "ece_after": after}


def _write(out: Path, parent: Artifact, pre: Any, model: torch.nn.Module, calibration: dict[str, Any],
           provenance: dict[str, Any], target: TargetFrames, source: str | Path, force: bool,
           stage: Callable[[str], None]) -> Path:
    """The adapted artifact, whole or not at all: staged beside `out`, the novelty statistics
    refitted (on the source's train split, thresholds on its val split, as for an export) and
    int8 re-quantized there."""
    name = f"{parent.name}-adapted"
    art = Artifact(parent.spec, parent.classes, pre, name=name, training=parent.training,
                   calibration=calibration, extra={"provenance": provenance})
    with atomic_directory(out, force) as staged:
        stage(f"writing {out}" + (" with model.onnx" if parent.has_onnx else ""))
        save_artifact(staged, art, model, onnx=parent.has_onnx and parent.novelty is None)
        if parent.novelty is not None:
            # The adapted network's features are not the parent's: the outlier head is trained anew.
            from offroad_seg_ros.tools.novelty import fit_novelty
            from offroad_seg_train.outlier_head import fit_with_outlier_head

            refit = fit_with_outlier_head if parent.novelty.get("outlier_head") else fit_novelty
            refit(staged, source, onnx=parent.has_onnx, rank=int(parent.novelty.get("rank", 0)), stage=stage)
        if "int8" in parent.extra:
            from offroad_seg_ros.tools.quantize import quantize

            inputs = [pre(torch.from_numpy(im)[None]).contiguous().numpy() for im in target.images[:32]]
            quantize(staged, inputs, len(inputs), "adapted-on frames", inputs[:8], stage)
    return out


def settings_from(args: Any) -> AdaptSettings:
    """AdaptSettings from parsed command-line options of the same names."""
    known = {f.name for f in dataclasses.fields(AdaptSettings)} - {"gate"}
    values = {k: getattr(args, k) for k in known if getattr(args, k, None) is not None}
    gate = GateSettings(tolerance=args.tolerance) if getattr(args, "tolerance", None) is not None else GateSettings()
    return AdaptSettings(**values, gate=gate)


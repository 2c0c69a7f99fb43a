"""Any camera resolution sees the world the model was trained on (core/preprocess.py): an artifact
that records its training frames' size resizes a frame of another resolution to the network input
a training frame gives; one without the record scales each frame as it comes (the old policy); the
`model_input_width` option (node parameter) overrides both.

The tiny random-weights network is scale-sensitive enough to tell the two apart: between a frame
and its 1080p upscale its masks agree on ~99% of pixels through the record and on ~60% without it.
"""

import json
import shutil
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from offroad_seg_ros.core.artifact import (
    ONNX,
    ArtifactError,
    load_artifact,
    read_artifact,
    save_artifact,
    update_artifact,
)
from offroad_seg_ros.inference.segmenter import Segmenter
from offroad_seg_ros.node.params import PARAMETERS, segmenter_options
from offroad_seg_train.synth import render_scene

TRAINED = (960, 540)  # (width, height) recorded as the training frames' size; the artifact's scale is 0.5


@pytest.fixture(scope="module")
def recorded(tiny_artifact, tmp_path_factory):
    """tiny_artifact's network exported with the record of 960x540 training frames."""
    art, net = load_artifact(tiny_artifact)
    art.preprocess = replace(art.preprocess, train_size=TRAINED)
    out = save_artifact(tmp_path_factory.mktemp("recorded") / "tiny", art, net)
    shutil.copy(tiny_artifact / ONNX, out / ONNX)  # the same network: no second ONNX export
    update_artifact(out, files={"onnx": ONNX})
    return out


@pytest.fixture(scope="module")
def frame():
    """A 960x540 scene: the training frames' size."""
    return render_scene(np.random.default_rng(0))[0]


@pytest.fixture(scope="module")
def frame_1080p(frame):
    return cv2.resize(frame, (1920, 1080), interpolation=cv2.INTER_LINEAR)


def network_inputs(seg: Segmenter) -> list[tuple[int, int]]:
    """(height, width) of every input the Segmenter's runtime receives from now on (padded to /32)."""
    seen: list[tuple[int, int]] = []
    run = seg.runtime.run

    def recording(x: torch.Tensor, want_conf: bool):
        seen.append(tuple(x.shape[-2:]))
        return run(x, want_conf)

    seg.runtime.run = recording  # type: ignore[method-assign]
    return seen


def agreement(mask_540p: np.ndarray, mask: np.ndarray) -> float:
    """Share of equal pixels, `mask` brought to 960x540 by nearest."""
    return float((cv2.resize(mask, TRAINED, interpolation=cv2.INTER_NEAREST) == mask_540p).mean())


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino"])
def test_a_1080p_frame_is_seen_as_its_540p_original(recorded, frame, frame_1080p, backend):
    seg = Segmenter(recorded, device="cpu", backend=backend, warmup_size=None)
    assert seg.network_input_size(1080, 1920) == seg.network_input_size(540, 960) == (270, 480)
    seen = network_inputs(seg)
    small, big = seg(frame).mask, seg(frame_1080p).mask
    assert seen == [(288, 480), (288, 480)]  # the same network input, 270 padded to 288
    assert big.shape == (1080, 1920)  # outputs at the frame's own resolution
    assert agreement(small, big) >= 0.98


def test_without_the_record_a_1080p_frame_is_seen_at_twice_the_size(tiny_artifact, frame, frame_1080p):
    """The old policy, which the record fixes: the same check fails by far."""
    seg = Segmenter(tiny_artifact, device="cpu", warmup_size=None)
    seen = network_inputs(seg)
    small, big = seg(frame).mask, seg(frame_1080p).mask
    assert seen == [(288, 480), (544, 960)]
    assert agreement(small, big) < 0.9


def test_the_record_leaves_training_size_frames_alone(recorded, tiny_artifact, frame):
    with_record = Segmenter(recorded, device="cpu", warmup_size=None)(frame, ("mask", "confidence"))
    without = Segmenter(tiny_artifact, device="cpu", warmup_size=None)(frame, ("mask", "confidence"))
    np.testing.assert_array_equal(with_record.mask, without.mask)
    np.testing.assert_array_equal(with_record.confidence, without.confidence)


def test_frames_are_matched_by_width(recorded):
    pre = read_artifact(recorded).preprocess
    assert pre.scaled_size(720, 1280) == (270, 480)
    assert pre.scaled_size(360, 640) == (270, 480)
    assert pre.scaled_size(960, 1280) == (360, 480)  # 4:3 keeps its aspect
    assert pre.scaled_size(1080, 1440) == (360, 480)


def test_an_artifact_without_the_record_scales_each_frame_as_before(tiny_artifact, frame):
    """Written out by hand: scale 0.5 of the incoming 1280x720 frame (uint8 antialiased bilinear on
    the CPU), normalise, pad to /32, argmax, crop, nearest back."""
    art, net = load_artifact(tiny_artifact)
    assert art.preprocess.train_size is None and "train_size" not in art.metadata()["preprocess"]
    img = cv2.resize(frame, (1280, 720), interpolation=cv2.INTER_AREA)
    net = net.to(memory_format=torch.channels_last)  # as the torch backend runs it: the same kernels, bit for bit
    with torch.no_grad():
        x = F.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None], size=(360, 640), mode="bilinear",
                          antialias=True).float()
        mean = torch.tensor(art.preprocess.mean).view(1, 3, 1, 1) * 255
        std = torch.tensor(art.preprocess.std).view(1, 3, 1, 1) * 255
        x = F.pad((x - mean) / std, (0, 0, 0, 24)).contiguous(memory_format=torch.channels_last)
        labels = net(x)[..., :360, :640].argmax(1)
        labels = F.interpolate(labels[:, None].float(), size=(720, 1280), mode="nearest")[0, 0]
    seg = Segmenter(tiny_artifact, device="cpu", warmup_size=None)
    np.testing.assert_array_equal(seg(img).mask, labels.numpy().astype(np.uint8))


def test_the_record_is_read_back_and_kept_by_updates(recorded, tmp_path):
    art = read_artifact(recorded)
    assert art.preprocess.train_size == TRAINED
    meta = art.metadata()["preprocess"]
    assert meta["train_size"] == list(TRAINED) and "model_input_width" not in meta
    copy = shutil.copytree(recorded, tmp_path / "copy")
    assert update_artifact(copy, calibration={"temperature": 1.5}).preprocess.train_size == TRAINED
    assert read_artifact(copy).preprocess.train_size == TRAINED


@pytest.mark.parametrize("bad", [[960], [960, 0], [960.5, 540], "960x540"])
def test_a_malformed_record_is_named(recorded, tmp_path, bad):
    broken = shutil.copytree(recorded, tmp_path / "broken")
    meta = json.loads((broken / "model.json").read_text())
    meta["preprocess"]["train_size"] = bad
    (broken / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="train_size"):
        read_artifact(broken)


@pytest.mark.parametrize("artifact", ["recorded", "tiny_artifact"])
def test_model_input_width_overrides_the_artifact(request, artifact, frame_1080p):
    seg = Segmenter(request.getfixturevalue(artifact), device="cpu", warmup_size=None, model_input_width=320)
    assert seg.network_input_size(540, 960) == seg.network_input_size(1080, 1920) == (180, 320)
    seen = network_inputs(seg)
    assert seg(frame_1080p).mask.shape == (1080, 1920)
    assert seen == [(192, 320)]


def test_the_node_parameter_reaches_the_segmenter(recorded):
    params = {name: default for name, (default, _) in PARAMETERS.items()}
    seg = Segmenter(recorded, **segmenter_options({**params, "model_input_width": 640}))
    assert seg.network_input_size(1080, 1920) == (360, 640)
    assert Segmenter(recorded, **segmenter_options(params)).network_input_size(1080, 1920) == (270, 480)


@pytest.mark.parametrize("bad", [-1, 16, 5000, 480.0, True, "480"])
def test_a_bad_model_input_width_is_refused_by_name_before_loading(tmp_path, bad):
    params = {name: default for name, (default, _) in PARAMETERS.items()}
    # No model there: the option is checked first, so the error names it and not the artifact.
    with pytest.raises(ValueError, match=r"model_input_width must be 0 \(from the model artifact\) .* got "):
        Segmenter(tmp_path / "no-model", **segmenter_options({**params, "model_input_width": bad}))


def test_training_records_its_frame_size_and_export_writes_it(synth_root, tmp_path):
    """One training step on the generated 960x540 scenes: the checkpoint and its artifact record the
    frames' size; a checkpoint from before the record gets it from its data config, while that is there."""
    import pytorch_lightning as L

    from offroad_seg_train.data import DualityDataModule
    from offroad_seg_train.export import export_checkpoint
    from offroad_seg_train.module import CHECKPOINT_KEY, SegModule

    L.seed_everything(0)
    model = SegModule(arch="FPN", encoder="resnet18", encoder_weights=None, inference_scale=0.25,
                      model_kwargs={"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32})
    data = DualityDataModule(root=str(synth_root), batch_size=2, val_batch_size=1, crop_size=64,
                             augment=[{"RandomCrop": {"height": 64, "width": 64, "p": 1.0}}],
                             num_workers=0, scale=0.25, cache_dir=str(tmp_path / "cache"))
    trainer = L.Trainer(max_steps=1, limit_val_batches=1, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, num_sanity_val_steps=0,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, data)
    assert data.frame_size == TRAINED
    trainer.save_checkpoint(tmp_path / "new.ckpt")
    assert read_artifact(export_checkpoint(tmp_path / "new.ckpt", tmp_path / "new")).preprocess.train_size == TRAINED

    ckpt = torch.load(tmp_path / "new.ckpt", weights_only=True)
    del ckpt[CHECKPOINT_KEY]["preprocess"]["train_size"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    assert read_artifact(export_checkpoint(tmp_path / "old.ckpt", tmp_path / "old")).preprocess.train_size == TRAINED
    ckpt["datamodule_hyper_parameters"]["root"] = str(tmp_path / "moved")
    torch.save(ckpt, tmp_path / "older.ckpt")
    assert read_artifact(export_checkpoint(tmp_path / "older.ckpt", tmp_path / "older")).preprocess.train_size is None

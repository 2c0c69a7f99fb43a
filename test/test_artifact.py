import json
import shutil

import pytest
import torch
from conftest import make_artifact

from offroad_seg_ros.core.artifact import ArtifactError, load_artifact, read_artifact, save_artifact


def test_round_trip_identical_outputs(tiny_artifact, table):
    art, model = load_artifact(tiny_artifact)
    assert art.classes == table and art.spec.encoder == "resnet18" and art.preprocess.scale == 0.5
    art2, model2 = load_artifact(tiny_artifact)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(model(x), model2(x))
    meta = json.loads((tiny_artifact / "model.json").read_text())
    assert meta["classes"]["classes"][0]["raw_id"] == 100 and meta["files"]["onnx"] == "model.onnx"


def test_only_safetensors_and_json_are_read(tiny_artifact):
    names = sorted(p.name for p in tiny_artifact.iterdir())
    assert names == ["model.json", "model.onnx", "weights.safetensors"]


@pytest.mark.parametrize(
    "breakage, match",
    [
        (lambda d: shutil.rmtree(d), "does not exist"),
        (lambda d: (d / "weights.safetensors").unlink(), "no weights.safetensors"),
        (lambda d: (d / "model.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "weights.safetensors").write_bytes(b"\x00" * 64), "not a readable safetensors"),
        (lambda d: _edit(d, architecture="Unet"), "does not match the architecture"),
        (lambda d: _edit(d, encoder="resnet50"), "does not match the architecture"),
        (lambda d: _edit(d, format_version=99), "format_version 99"),
        (lambda d: _edit(d, num_classes=9), "num_classes is 9"),
    ],
)
def test_broken_artifacts_fail_clearly(tiny_artifact, tmp_path, breakage, match):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_artifact, broken)
    breakage(broken)
    with pytest.raises(ArtifactError, match=match):
        load_artifact(broken)


def test_wrong_class_count_is_named(tiny_artifact, tmp_path, table):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_artifact, broken)
    meta = json.loads((broken / "model.json").read_text())
    meta["classes"]["classes"].pop()
    meta["num_classes"] = 9
    (broken / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="predicts 10 classes but model.json lists 9"):
        load_artifact(broken)


def _edit(d, **fields):
    meta = json.loads((d / "model.json").read_text())
    meta.update(fields)
    (d / "model.json").write_text(json.dumps(meta))


def test_save_refuses_to_overwrite_and_leaves_no_temp(tiny_artifact, tmp_path, table):
    art, model = load_artifact(tiny_artifact)
    with pytest.raises(FileExistsError):
        save_artifact(tiny_artifact, art, model)
    out = make_artifact(tmp_path / "a", table)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    assert read_artifact(out).name == "tiny-random"

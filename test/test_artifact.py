import ast
import json
import shutil
from pathlib import Path

import pytest
import torch
from astutil import docstrings
from conftest import make_artifact

from offroad_seg_ros.core.artifact import ArtifactError, load_artifact, read_artifact, save_artifact, update_artifact

REPO = Path(__file__).resolve().parents[1]
OWNER = REPO / "offroad_seg_ros" / "core" / "artifact.py"  # the one module that names the metadata file


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


def test_an_update_keeps_the_keys_it_does_not_model(tiny_artifact, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(tiny_artifact, art)
    novelty = {"mean": [0.1, 0.2], "frames": 3}
    update_artifact(art, novelty=novelty, files={"novelty": "novelty.safetensors"})
    update_artifact(art, calibration={"temperature": 0.5})
    meta = json.loads((art / "model.json").read_text())
    assert meta["novelty"] == novelty and meta["calibration"] == {"temperature": 0.5}
    assert meta["files"] == {"weights": "weights.safetensors", "onnx": "model.onnx", "novelty": "novelty.safetensors"}
    read = read_artifact(art)
    assert read.extra == {"novelty": novelty} and read.temperature == 0.5
    # written again from what was read (a copy of the artifact), the unknown section stays too
    copy = save_artifact(tmp_path / "copy", read, load_artifact(art)[1])
    assert json.loads((copy / "model.json").read_text())["novelty"] == novelty


@pytest.mark.parametrize("sections, match", [
    (dict(num_classes=9), "num_classes describe"),
    (dict(architecture="Unet", encoder="resnet50"), "architecture, encoder describe"),
    (dict(calibration={"temperature": 1000.0}), "temperature 1000.0 is outside"),
])
def test_a_bad_update_is_refused_by_name_and_changes_nothing(tiny_artifact, tmp_path, sections, match):
    art = tmp_path / "art"
    shutil.copytree(tiny_artifact, art)
    before = (art / "model.json").read_text()
    with pytest.raises(ArtifactError, match=match):
        update_artifact(art, **sections)
    assert (art / "model.json").read_text() == before
    assert sorted(p.name for p in art.iterdir()) == ["model.json", "model.onnx", "weights.safetensors"]




def _help_texts(tree: ast.AST) -> set[int]:
    """ids of every node inside a `help=` argument (argparse's help text)."""
    return {id(n) for k in ast.walk(tree) if isinstance(k, ast.keyword) and k.arg == "help" for n in ast.walk(k.value)}


def test_only_the_artifact_module_names_its_metadata_file():
    """Reading, writing and updating model.json go through core/artifact.py: elsewhere the file
    name appears only in prose (docstrings, help and messages), never as a path, and MODEL_JSON
    not at all."""
    wrong = []
    files = [p for d in ("offroad_seg_ros", "offroad_seg_train", "bench") for p in sorted((REPO / d).rglob("*.py"))]
    assert OWNER in files and len(files) > 50
    for path in files:
        if path == OWNER:
            continue
        tree = ast.parse(path.read_text())
        allowed = docstrings(tree) | _help_texts(tree)
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None
            if text is not None and id(node) not in allowed and text.split("/")[-1].strip() == "model.json":
                wrong.append(f"{path.relative_to(REPO)}:{node.lineno} the literal {text!r}")
            names = {getattr(node, "id", None), getattr(node, "attr", None), getattr(node, "name", None)}
            if "MODEL_JSON" in names:
                wrong.append(f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')} MODEL_JSON")
    assert not wrong, wrong

"""The main job end to end on a tiny size: synth -> train -> export -> bag -> eval."""

import json

from offroad_seg_train.demo import run_demo
from offroad_seg_train.outlier_head import HeadSettings

TINY = ["--trainer.max_epochs", "2", "--data.batch_size", "2", "--data.val_batch_size", "2",
        "--model.inference_scale", "0.25", "--data.num_workers", "0", "--trainer.enable_progress_bar", "false"]
COUNTS = {"train": 4, "val": 2, "test": 2}
HEAD = HeadSettings(frames=4, variants=1, steps=20)


def test_demo_end_to_end_and_resumable(tmp_path, capsys):
    out = tmp_path / "demo"
    headline = run_demo(out, device="cpu", counts=COUNTS, train_args=TINY, outlier_head=HEAD)
    for path in ("model/model.json", "model/weights.safetensors", "test_bag/metadata.yaml",
                 "report/metrics.json", "report/report.md", "report/best_worst.png", "preview.png"):
        assert (out / path).is_file(), path
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["run"]["frames_scored"] == 2 and metrics["run"]["mode"] == "bag"
    assert "pixel accuracy" in headline
    first = capsys.readouterr().out
    assert first.count("finished in") == 5

    # A second run skips every finished stage; a removed report is redone alone.
    (out / "report" / "metrics.json").unlink()
    run_demo(out, device="cpu", counts=COUNTS, train_args=TINY, outlier_head=HEAD)
    second = capsys.readouterr().out
    assert second.count("skipping") == 4 and second.count("finished in") == 1
    assert "5/5 eval" in second.split("skipping")[-1]

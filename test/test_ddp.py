"""Distributed training for real: several processes through torchrun on
loopback (gloo, CPU), sharing one frame cache, as the README's multi-GPU and
multi-node commands run them."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from offroad_seg_train.data import FrameCache

BIN = Path(sys.executable).parent
TINY = """
seed_everything: 0
trainer:
  accelerator: cpu
  max_epochs: 1
  num_sanity_val_steps: 0
  enable_model_summary: false
  enable_progress_bar: false
  log_every_n_steps: 1
  callbacks:
    - class_path: pytorch_lightning.callbacks.ModelCheckpoint
      init_args: {monitor: val/mIoU, mode: max, save_top_k: 1, save_last: true}
model:
  arch: FPN
  encoder: resnet18
  encoder_weights: null
  loss: dice+ce
  inference_scale: 0.25
  model_kwargs: {decoder_pyramid_channels: 32, decoder_segmentation_channels: 32}
data:
  batch_size: 2
  # One frame per forward pass: a frame's result then cannot depend on which other
  # frames share its batch (CPU kernels block batches differently), only on the sampler.
  val_batch_size: 1
  num_workers: 0
  persistent_workers: false
  augment:
    - RandomCrop: {height: 96, width: 96, p: 1.0}
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp") / "tiny.yaml"
    path.write_text(TINY)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(args: list[str], config: Path, root: Path, cache: Path, run: Path, *, procs: int = 1,
           nnodes: int = 1, timeout: float = 300) -> str:
    """`offroad-seg train ...`, in one process or through torchrun; its output."""
    cli = [str(BIN / "offroad-seg"), "train", *args, "--config", str(config), "--data.root", str(root),
           "--data.cache_dir", str(cache), "--trainer.default_root_dir", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if procs == 1 and nnodes == 1:
        out = subprocess.run([*cli, "--trainer.devices", "1"], capture_output=True, text=True, env=env,
                             timeout=timeout)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout + out.stderr
    port = _free_port()
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", str(procs), "--trainer.num_nodes", str(nnodes)]
    runs = [subprocess.Popen([str(BIN / "torchrun"), "--nnodes", str(nnodes), "--nproc-per-node", str(procs),
                              "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(port),
                              *cli, *ddp], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            for rank in range(nnodes)]
    outs = [r.communicate(timeout=timeout)[0] for r in runs]
    assert all(r.returncode == 0 for r in runs), "\n".join(outs)
    return "\n".join(outs)


def _miou(output: str, prefix: str = "val") -> str:
    return re.findall(rf"{prefix}/mIoU (\d\.\d+)", output)[-1]


@pytest.fixture(scope="module")
def checkpoint(config, synth_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp_fit")
    out = _train(["fit"], config, synth_root, tmp / "cache", tmp / "run")
    assert "best val/mIoU" in out
    return tmp / "run" / "checkpoints" / "last.ckpt"


@pytest.mark.ddp
def test_validation_is_exact_whatever_the_world_size(config, synth_root, checkpoint, tmp_path):
    # 3 validation frames: 2 processes would pad them to 4, 3 processes split them one each.
    single = _miou(_train(["validate", "--ckpt_path", str(checkpoint)], config, synth_root, tmp_path / "c",
                          tmp_path / "r1"))
    for procs in (2, 3):
        out = _train(["validate", "--ckpt_path", str(checkpoint)], config, synth_root, tmp_path / "c",
                     tmp_path / f"r{procs}", procs=procs)
        assert _miou(out) == single, f"{procs} processes: {_miou(out)} vs one process: {single}"


@pytest.mark.ddp
def test_two_nodes_share_a_cache_train_resume_and_match_validation(config, synth_root, tmp_path):
    """The README's multi-node command as two nodes of one process each on
    loopback, both with one cache directory (a shared filesystem)."""
    run, cache = tmp_path / "run", tmp_path / "cache"
    out = _train(["fit"], config, synth_root, cache, run, nnodes=2)
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and len(ckpts) == 2, ckpts  # best + last, written by rank 0 alone
    assert list(run.glob("lightning_logs/version_*")), "logs beside the checkpoints"
    assert len(list(cache.glob("*.json"))) == 1  # one cache, built once
    fit_miou = _miou(out)
    single = _miou(_train(["validate", "--ckpt_path", str(run / "checkpoints" / "last.ckpt")], config,
                          synth_root, cache, tmp_path / "v"))
    assert fit_miou == single
    # Resume from last under DDP (two processes on one node this time).
    out = _train(["fit", "--ckpt_path", "last", "--trainer.max_epochs", "2"], config, synth_root, cache, run,
                 procs=2)
    assert "Restoring states from the checkpoint" in out and "best val/mIoU" in out


def _build(args: tuple[list, str, Path]) -> tuple[int, ...]:
    samples, _, cache = args
    from offroad_seg_ros.core.classes import ClassTable

    return FrameCache(samples, ClassTable.default(), 0.25, cache, workers=1).shape


def test_cache_built_by_one_process_while_others_wait(synth_root, tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    from offroad_seg_ros.data.dataset import list_samples

    samples = list_samples(synth_root / "train")
    with ProcessPoolExecutor(3) as pool:  # three ranks starting together on one cache directory
        shapes = list(pool.map(_build, [(samples, str(i), tmp_path) for i in range(3)]))
    assert len(set(shapes)) == 1 and shapes[0][0] == len(samples)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".lock", ".u8", ".u8"]  # no temp files left


def test_half_written_cache_is_rebuilt_not_used(synth_root, tmp_path):
    from offroad_seg_ros.core.classes import ClassTable
    from offroad_seg_ros.data.dataset import list_samples

    samples = list_samples(synth_root / "train")
    first = FrameCache(samples, ClassTable.default(), 0.25, tmp_path)
    want = np.array(first[3][0])
    with open(first.images_path, "r+b") as f:  # a build cut short (disk full, killed job)
        f.truncate(os.path.getsize(first.images_path) // 2)
    again = FrameCache(samples, ClassTable.default(), 0.25, tmp_path)
    np.testing.assert_array_equal(again[3][0], want)


def test_sync_batchnorm_on_the_cpu_is_refused_with_the_reason(config, synth_root, tmp_path):
    out = subprocess.run([str(BIN / "offroad-seg"), "train", "fit", "--config", str(config), "--data.root",
                          str(synth_root), "--trainer.sync_batchnorm", "true",
                          "--trainer.default_root_dir", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2 and "sync_batchnorm true needs CUDA devices" in out.stderr
    assert textwrap.dedent(out.stderr).count("\n") <= 2  # one paragraph, no traceback

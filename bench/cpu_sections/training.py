"""Training sections: a training step of the reference model, and DDP on CPU processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from results import Table, timeit

from offroad_seg_ros.core.classes import ClassTable


def bench_training(out: Table, tmp: Path, steps: int = 3, batch: int = 8) -> None:
    """Reference model (FPN + ResNeXt-101, random init) training steps at 320x320:
    fed from tensors in memory vs the real loader (cache + reference augment)."""
    from torch.utils.data import DataLoader, TensorDataset

    from offroad_seg_train.data import DualityDataModule
    from offroad_seg_train.module import SegModule

    torch.manual_seed(0)
    data = DualityDataModule(root=str(tmp / "synth1"), val_split="train", batch_size=batch, num_workers=2,
                             persistent_workers=True, cache_dir=str(tmp / "cache"))
    data.setup("fit")
    mem = DataLoader(TensorDataset(torch.randint(0, 255, (batch * 2, 320, 320, 3), dtype=torch.uint8),
                                   torch.randint(0, 10, (batch * 2, 320, 320), dtype=torch.uint8)),
                     batch_size=batch, drop_last=True)
    model = SegModule(encoder_weights=None)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)

    def rate(loader) -> float:
        it = iter(loader)

        def step():
            nonlocal it
            try:
                images, masks = next(it)
            except StopIteration:
                it = iter(loader)
                images, masks = next(it)
            opt.zero_grad()
            logits = model.model(model.pre.normalize(images))[..., :320, :320]
            model.loss(logits, masks.long()).backward()
            opt.step()

        return batch / float(np.median(timeit(step, steps, warmup=1)))

    real, memory = rate(data.train_dataloader()), rate(mem)
    out.row(f"train step FPN-RX101 320x320 batch {batch} fp32, fed from memory", memory, "img/s", "train_mem_per_s")
    out.row("  same, real pipeline (cache + reference augment, 2 workers)", real, "img/s", "train_real_per_s")
    out.row("  ratio real / memory", real / memory, "", "train_ratio")


def bench_ddp(out: Table, tmp: Path, table: ClassTable) -> None:
    """Training samples/s with 1 and 2 CPU processes (torchrun, gloo) on the same generated data:
    one epoch of the small recipe at half scale, its wall time from Lightning's fit start to end."""
    import re
    import socket

    from offroad_seg_train.synth import generate

    root = tmp / "ddp_data"
    generate(root, {"train": 32, "val": 2}, seed=0, workers=2, progress=None)
    cfg = Path(__file__).resolve().parents[2] / "config" / "train_cpu.yaml"
    exe = Path(sys.executable).parent
    for procs in (1, 2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cli = [str(exe / "offroad-seg"), "train", "fit", "--config", str(cfg), "--data.root", str(root),
               "--data.cache_dir", str(tmp / "ddp_cache"), "--trainer.default_root_dir", str(tmp / f"ddp{procs}"),
               "--trainer.max_epochs", "2", "--data.batch_size", "4", "--data.num_workers", "0",
               "--data.persistent_workers", "false", "--trainer.enable_progress_bar", "false",
               "--trainer.accelerator", "cpu", "--trainer.devices", str(procs)]
        if procs > 1:
            cli = [str(exe / "torchrun"), "--nproc-per-node", str(procs), "--master-port", str(port), *cli,
                   "--trainer.strategy", "ddp"]
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // procs))}
        t0 = time.perf_counter()
        proc = subprocess.run(cli, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
        assert re.search(r"best val/mIoU", proc.stdout + proc.stderr)
        out.row(f"ddp: 2 epochs x 32 scenes (half scale, batch 4/process), {procs} process(es), wall incl. start-up",
            seconds, "s", f"ddp_{procs}proc_s")
        out.row(f"ddp: {procs} process(es), training samples/s (incl. start-up and validation)", 64 / seconds,
            "samples/s", f"ddp_{procs}proc_samples_per_s")

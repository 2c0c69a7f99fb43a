#!/usr/bin/env bash
# The one GPU check: on a GPU machine with PyTorch but no network, install the
# project's missing packages from .whl/ (bench/fetch_wheels.sh fills it), run
# the GPU tests, then time the node path, the batched path, training
# throughput and a short reference-recipe training run. Table on stdout, JSON
# and logs in $OUT (default bench/out). Meant to finish within 8 minutes.
#   bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
if [ -d .whl ]; then
  # Every dependency is in .whl (fetch_wheels.sh), so --no-deps; --target keeps the image's own
  # environment untouched.
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl 2>&1 | tail -3
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# The source checkout runs as is (config/ is found beside the package).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
$PY -c "import offroad_seg_ros.inference.segmenter, offroad_seg_train.cli, rosbags; print('imports ok')" \
  2>&1 | tee "$OUT/imports.log" || exit 1
# conftest hides GPUs from the other tests; these need one.
CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} timeout 150 $PY -m pytest -rs -q -p no:cacheprovider test/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log" | tail -15
timeout 420 $PY bench/gpu_bench.py --out "$OUT" 2>&1 | tee "$OUT/gpu_bench.log" | grep -v "it/s"
# Multi-GPU scaling (machines with more than one GPU): the reference recipe for 30 steps per
# process through torchrun on 1, 2, 4, 8 GPUs; images/s = GPUs x batch x steps / fit seconds.
NGPU=$(nvidia-smi -L | wc -l)
if [ "$NGPU" -gt 1 ]; then
  $PY -c "from offroad_seg_train.synth import generate; generate('$OUT/scaling_data', {'train': 128, 'val': 4})"
  for n in 1 2 4 8; do
    [ "$n" -le "$NGPU" ] || break
    start=$(date +%s.%N)
    timeout 240 $PY -m torch.distributed.run --nproc-per-node "$n" -m offroad_seg_ros.cli train fit \
      --config config/train.yaml --data.root "$OUT/scaling_data" --model.encoder_weights null \
      --trainer.devices "$n" --trainer.strategy ddp --trainer.max_epochs 1 --trainer.limit_train_batches 30 \
      --trainer.limit_val_batches 1 --trainer.precision bf16-mixed --trainer.default_root_dir "/tmp/scaling$n" \
      > "$OUT/scaling_$n.log" 2>&1
    end=$(date +%s.%N)
    echo "scaling: $n GPU(s): $(echo "$n * 32 * 30 / ($end - $start)" | bc -l | cut -c1-7) img/s incl. start-up" \
      | tee -a "$OUT/scaling.txt"
  done
fi

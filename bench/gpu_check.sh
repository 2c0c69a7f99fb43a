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
$PY -c "import offroad_seg_ros.segmenter, offroad_seg_train.cli, rosbags; print('imports ok')" \
  2>&1 | tee "$OUT/imports.log" || exit 1
timeout 150 $PY -m pytest -q -p no:cacheprovider test/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log" | tail -15
timeout 420 $PY bench/gpu_bench.py --out "$OUT" 2>&1 | tee "$OUT/gpu_bench.log" | grep -v "it/s"

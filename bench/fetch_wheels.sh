#!/usr/bin/env bash
# Download, on a machine with PyPI access, the wheels that the GPU image lacks
# (it has torch, torchvision, lightning, timm, opencv, matplotlib, safetensors,
# torchmetrics, tensorboard, scipy, pydantic), into .whl/ for Python 3.12.
# The GPU machine has no network; `bench/gpu_check.sh` installs from .whl/.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
mkdir -p .whl
for pkg in segmentation-models-pytorch==0.6.0 albumentations==2.0.8 albucore stringzilla simsimd \
           rosbags==0.11.9 ruamel.yaml ruamel.yaml.clib apsw backports.zstd lz4 \
           jsonargparse==4.53.0 docstring-parser typeshed-client; do
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_34_x86_64 \
    --platform manylinux_2_35_x86_64 --platform manylinux_2_31_x86_64 -d .whl "$pkg" \
    || python3 -m pip download --quiet --no-deps -d .whl "$pkg"
done
du -sh .whl

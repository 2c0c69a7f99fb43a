#!/usr/bin/env bash
# Download, on a machine with PyPI access, the wheels that the GPU image lacks
# (it has torch, torchvision, lightning, timm, huggingface-hub, opencv,
# matplotlib, safetensors, torchmetrics, tensorboard, scipy, PyYAML, onnx,
# onnxruntime), into .whl/ for Python 3.12. Versions are the ones CI tests;
# every dependency is listed, because gpu_check.sh installs them --no-deps.
# The GPU machine has no network; `bench/gpu_check.sh` installs from .whl/.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
rm -rf .whl && mkdir -p .whl
for pkg in segmentation-models-pytorch==0.6.0 simplejpeg==1.9.0 \
           albumentations==2.0.8 albucore==0.0.24 stringzilla==5.3.2 simsimd==6.5.16 \
           pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
           typing-extensions==4.16.0 \
           rosbags==0.11.9 ruamel.yaml==0.19.1 apsw==3.54.1.0 backports.zstd==1.8.0 lz4==4.4.5 \
           jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0; do
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_34_x86_64 \
    --platform manylinux_2_35_x86_64 --platform manylinux_2_31_x86_64 -d .whl "$pkg" 2>&1 | { grep -v "is ignored" || true; }
done
du -sh .whl

#!/usr/bin/env bash
# Download, on a machine with PyPI access, the wheels that the GPU image lacks
# (it has torch, torchvision, lightning, timm, huggingface-hub, opencv,
# matplotlib, safetensors, torchmetrics, tensorboard, scipy, PyYAML, onnx,
# onnxruntime), into .whl/ for Python 3.12, at the versions of the tested lock
# (locks/main.txt); every dependency is listed, because gpu_check.sh installs them --no-deps.
# The GPU machine has no network; `bench/gpu_check.sh` installs from .whl/.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
rm -rf .whl && mkdir -p .whl
NAMES="segmentation-models-pytorch simplejpeg albumentations albucore stringzilla simsimd pydantic pydantic-core
       annotated-types typing-inspection typing-extensions rosbags ruamel-yaml apsw backports-zstd lz4
       jsonargparse docstring-parser typeshed-client"
PINS=$(python3 - "$PYVER" $NAMES <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("lockfile", "locks/lockfile.py")
lockfile = importlib.util.module_from_spec(spec); spec.loader.exec_module(lockfile)
ver = sys.argv[1]
pins = lockfile.read_lock(__import__("pathlib").Path("locks/main.txt"),
                          {"python_version": ver, "python_full_version": ver + ".0"})
missing = [n for n in sys.argv[2:] if n not in pins]
if missing:
    sys.exit(f"locks/main.txt does not pin {', '.join(missing)} for Python {ver}")
print(" ".join(f"{n}=={pins[n]}" for n in sys.argv[2:]))
PY
)
for pkg in $PINS; do
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_34_x86_64 \
    --platform manylinux_2_35_x86_64 --platform manylinux_2_31_x86_64 -d .whl "$pkg" 2>&1 | { grep -v "is ignored" || true; }
done
du -sh .whl

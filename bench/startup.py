"""Time to first mask: a fresh Python process imports the runtime, loads an
artifact into a Segmenter (warm-up included) and segments one 960x540 frame,
as the node does at start. torch.compile's caches live in
TORCHINDUCTOR_CACHE_DIR, so 'cold' uses an empty one and 'warm' reuses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_CHILD = """
import time
t0 = time.perf_counter()
import json, sys
import numpy as np
from offroad_seg_ros.inference.segmenter import Segmenter
kwargs = json.loads(sys.argv[2])
seg = Segmenter(sys.argv[1], **kwargs)
seg(np.zeros((540, 960, 3), np.uint8), ["mask", "cost"])
print(time.perf_counter() - t0)
"""


def time_to_first_mask(artifact: Path, cache_dir: Path, **segmenter_kwargs) -> float:
    """Seconds from process start to the first mask (imports included)."""
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache_dir),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _CHILD, str(artifact), json.dumps(segmenter_kwargs)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])

"""`python -m offroad_seg_ros.cli` (torchrun starts training this way)."""

import sys

from offroad_seg_ros.cli.app import main

sys.exit(main())

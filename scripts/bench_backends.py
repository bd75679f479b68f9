#!/usr/bin/env python3
"""Benchmark the inference backends; the same as `mmp_ros bench-backends` (see its --help).

    python scripts/bench_backends.py --checkpoint models/mmp.pt --baseline-checkpoint \
        models/none.pt --sizes model,480x640
    python scripts/bench_backends.py --checkpoint models/mmp.pt --backends torch \
        --device cuda --fp16
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmp_ros.inference.bench import main

if __name__ == '__main__':
    sys.exit(main())

"""`python3 benchmarks/perf.py`: the same as `synthaudit perf` / `python3 -m models.perf` (docs/performance.md)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthaudit.models.perf import main

if __name__ == "__main__":
    sys.exit(main())

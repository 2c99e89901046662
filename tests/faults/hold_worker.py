"""A real Celery worker whose stages can pause at a hold point, so that a test can kill it (SIGKILL) or
restart Redis/Postgres while a stage is half done. Test-only: production code has no such hook.

`SYNTHAUDIT_TEST_HOLD_DIR` names a folder; while it holds a file named after a stage, that stage pauses
at its first progress report (i.e. after real work began, before its artifact is written), writes
`<workdir>/.held-<stage>` (the pid of the process holding) and waits until `<workdir>/.release-<stage>`
appears. A stage holds once per audit: the re-run after a kill finds `.held-<stage>` and goes through.

Usage: python tests/faults/hold_worker.py <celery worker arguments>
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

HOLD_TIMEOUT_S = 120.0


def _held(stage: str, run, hold_dir: Path):  # type: ignore[no-untyped-def]
    def run_held(workdir, inputs, config, on_progress):  # type: ignore[no-untyped-def]
        marker = Path(workdir) / f".held-{stage}"
        release = Path(workdir) / f".release-{stage}"
        if not (hold_dir / stage).exists() or marker.exists():
            return run(workdir, inputs, config, on_progress)
        holding = {"done": False}

        def progress(fraction: float) -> None:
            on_progress(fraction)
            if holding["done"]:
                return
            holding["done"] = True
            marker.write_text(str(os.getpid()))
            deadline = time.monotonic() + HOLD_TIMEOUT_S
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
                on_progress(fraction)  # keeps the cancellation check alive, as a real stage does

        return run(workdir, inputs, config, progress)

    return run_held


def install() -> None:
    hold_dir = Path(os.environ["SYNTHAUDIT_TEST_HOLD_DIR"])
    from synthaudit.models import stages

    for stage, run in list(stages._RUNNERS.items()):
        stages._RUNNERS[stage] = _held(stage, run, hold_dir)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
    install()
    from celery.__main__ import main

    sys.argv = ["celery", "-A", "synthaudit.worker.celery_app", "worker", *sys.argv[1:]]
    sys.exit(main())

"""A real Celery worker started with LOG_FORMAT=json writes its log lines as JSON objects, like the API."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any


def test_a_worker_with_log_format_json_writes_json_lines(
    distributed_env: dict[str, str], proc_tools: Any, tmp_path: Path
) -> None:
    env = {**distributed_env, "LOG_FORMAT": "json", "CELERY_QUEUE": f"logs-{uuid.uuid4().hex[:8]}"}
    argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool", "solo"]
    argv += ["-Q", env["CELERY_QUEUE"], "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    argv += ["-n", f"logs-{uuid.uuid4().hex[:6]}@%h"]
    proc = proc_tools.Proc("celery worker", argv, env, tmp_path / "worker.log")
    try:
        proc.wait_for(lambda: " ready." in proc.output(), 90, "'ready' in its log")
    finally:
        proc.stop()
    entries = []
    for line in proc.output().splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    by_message = {e["message"]: e for e in entries}
    mode = next(e for m, e in by_message.items() if m.startswith("synthaudit worker: distributed"))
    assert mode["level"] == "INFO" and mode["logger"] == "worker.celery_app" and mode["ts"]
    assert any(m.endswith(" ready.") for m in by_message)  # Celery's own lines too
    assert not any(" ready." in line and not line.startswith("{") for line in proc.output().splitlines())

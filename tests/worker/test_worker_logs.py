"""Log lines: a real Celery worker started with LOG_FORMAT=json writes JSON objects, like the API; an
unexpected error (in an encoder job, on the embedded runner's thread, anywhere `log.exception` is used) is
logged as its type and stack, never its message, which can quote storage paths made from file names."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any


def test_a_worker_with_log_format_json_writes_json_lines(
    distributed_env: dict[str, str], proc_tools: Any, tmp_path: Path
) -> None:
    env = {**distributed_env, "LOG_FORMAT": "json", "CELERY_QUEUE": f"logs-{uuid.uuid4().hex[:8]}"}
    argv = [sys.executable, "-m", "celery", "-A", "synthaudit.worker.celery_app", "worker", "--pool", "solo"]
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
    assert mode["level"] == "INFO" and mode["logger"] == "synthaudit.worker.celery_app" and mode["ts"]
    assert any(m.endswith(" ready.") for m in by_message)  # Celery's own lines too
    assert not any(" ready." in line and not line.startswith("{") for line in proc.output().splitlines())


# --- issue 14 #17: unexpected errors are logged as their type and stack, never their message ---------

SECRET = "PATIENT-SECRET"


def _png(path: Path, seed: int) -> None:
    import numpy as np
    from PIL import Image
    from synthetic_sets import random_image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(random_image(np.random.default_rng(seed), 32)).save(path)


def test_an_unexpected_encoder_error_logs_no_storage_path(tmp_path: Path, proc_tools: Any) -> None:
    """A real embedded server whose storage path holds a name (`…/PATIENT-SECRET/storage`, standing for a
    path made from a file name) and a dataset with `PATIENT-SECRET.png`; saving the encoder's weights
    fails with an OSError quoting the path (STORAGE_DIR/encoders is made a file): the job fails naming
    the error type, and no log line but the start-up line naming the storage folder holds the path."""
    import httpx

    start_server = proc_tools.start_server

    home = tmp_path / SECRET
    env = proc_tools.clean_env(SYNTHAUDIT_HOME=str(home), PROGRESS_INTERVAL_S="0.2")
    server = start_server(env, tmp_path / "api.log", home / "storage")
    try:
        for i, name in enumerate([f"{SECRET}.png", "b.png", "c.png"]):
            _png(tmp_path / "upload" / name, i)
        uploads = sorted((tmp_path / "upload").iterdir())
        files = [("files", (p.name, p.read_bytes(), "image/png")) for p in uploads]
        with httpx.Client(base_url=server.url, timeout=60) as client:
            dataset = client.post("/v1/datasets", data={"role": "real"}, files=files)
            assert dataset.status_code == 201, dataset.text
            encoders = home / "storage" / "encoders"
            if encoders.exists():
                encoders.rmdir()
            encoders.write_text("not a folder")
            config = {"pretrain_images_seen": 64, "image_size": 32}
            body = {"dataset_id": dataset.json()["id"], "config": config}
            created = client.post("/v1/encoders", json=body)
            assert created.status_code == 202, created.text
            deadline = time.monotonic() + 120
            while (encoder := client.get(f"/v1/encoders/{created.json()['id']}").json())["status"] not in (
                "succeeded",
                "failed",
            ):
                assert time.monotonic() < deadline, encoder
                time.sleep(0.3)
        assert encoder["status"] == "failed" and "internal error" in encoder["error"], encoder
        assert SECRET not in encoder["error"]
    finally:
        server.proc.stop()
    log = server.proc.output()
    assert f"encoder {created.json()['id']}: unexpected FileExistsError" in log
    # Only the operator's own start-up line names the storage folder; no other line holds the path.
    startup = "synthaudit API: embedded mode"
    leaks = [line for line in log.splitlines() if SECRET in line and startup not in line]
    assert not leaks, log[-3000:]


def test_the_embedded_runner_logs_crashed_jobs_and_purges_without_messages(
    tmp_path: Path, caplog: Any, monkeypatch: Any
) -> None:
    """A job on the runner's thread and the hourly retention purge fail with errors quoting an uploaded
    file's storage path (…/images/PATIENT-SECRET.png): the log names the error type, not the path."""
    import functools
    import logging
    import threading

    from synthaudit.app.core.config import Settings
    from synthaudit.app.core.migrations import ensure_schema
    from synthaudit.worker.context import WorkerContext
    from synthaudit.worker.runner import EmbeddedRunner

    settings = Settings(synthaudit_home=tmp_path, heartbeat_interval_s=0.1, orphan_after_s=5.0)
    ensure_schema(settings.database_url, auto_upgrade=True)
    ctx = WorkerContext.from_settings(settings)
    stored = ctx.storage.dataset_images(uuid.uuid4()) / f"{SECRET}.png"

    def crash(path: Path) -> None:
        raise RuntimeError(f"cannot decode {path}")

    def purge_fails(*_: object) -> None:
        raise PermissionError(13, "Permission denied", str(stored))

    monkeypatch.setattr("synthaudit.app.core.retention.purge_expired", purge_fails)
    caplog.set_level(logging.INFO)
    runner = EmbeddedRunner(ctx)
    runner.start()
    try:
        done = threading.Event()
        runner.submit_call(functools.partial(crash, stored))
        runner.submit_call(done.set)
        assert done.wait(30)
        runner._last_purge = float("-inf")
        runner._maybe_purge()
        assert runner.alive
    finally:
        runner.stop()
    text = caplog.text
    assert "embedded runner: job crash: unexpected RuntimeError" in text
    assert "embedded runner: retention purge: unexpected PermissionError" in text
    assert SECRET not in text, text


def test_any_logged_exception_shows_its_type_not_its_message(capsys: Any) -> None:
    """log.exception anywhere (a library's too) on a handler set up by configure_log_format, text or JSON."""
    import io
    import json
    import logging

    from synthaudit.app.core.logs import configure_log_format

    for fmt in ("text", "json"):
        buffer = io.StringIO()
        logger = logging.getLogger(f"synthaudit-test-{fmt}")
        logger.propagate = False
        logger.addHandler(logging.StreamHandler(buffer))
        configure_log_format(fmt, logger)
        try:
            open(f"/nonexistent/{SECRET}.png")  # noqa: SIM115
        except OSError:
            logger.exception("reading failed")
        output = buffer.getvalue()
        assert "reading failed" in output and "FileNotFoundError" in output
        assert SECRET not in output, output
        if fmt == "json":
            assert json.loads(output.splitlines()[0])["exception"] == "FileNotFoundError"

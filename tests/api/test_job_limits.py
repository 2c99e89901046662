"""Time limits of background jobs (issue 14 #15): an encoder pretraining job on the embedded runner (no
Celery, so no Celery time limit) stops at STAGE_SOFT_TIME_LIMIT_S and fails with a message; the runner
carries on with the next job. Over HTTP, on a real embedded server with a 3 s limit."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx


def _wait_encoder(client: httpx.Client, encoder_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(f"/v1/encoders/{encoder_id}").json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        assert time.monotonic() < deadline, f"encoder still {body['status']} after {timeout} s: {body}"
        time.sleep(0.3)


def test_an_embedded_encoder_job_stops_at_its_time_limit(
    tmp_path: Path,
    proc_tools: Any,
    membership_set,
    helpers,  # type: ignore[no-untyped-def]
) -> None:
    start_server = proc_tools.start_server
    home = tmp_path / "home"
    env = proc_tools.clean_env(
        SYNTHAUDIT_HOME=str(home),
        PROGRESS_INTERVAL_S="0.2",
        STAGE_SOFT_TIME_LIMIT_S="3",
        STAGE_TIME_LIMIT_S="4",
    )
    server = start_server(env, tmp_path / "api.log", home / "storage")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            root, _ = membership_set
            dataset = helpers.upload(client, "real", sorted((root / "real").glob("*.png")))
            assert dataset.status_code == 201, dataset.text
            # 5 M images seen: hours on two CPU cores, far past the 3 s limit
            body = {"dataset_id": dataset.json()["id"], "config": {"pretrain_images_seen": 5_000_000}}
            created = client.post("/v1/encoders", json=body)
            assert created.status_code == 202, created.text
            started = time.monotonic()
            encoder = _wait_encoder(client, created.json()["id"], 90)
            assert encoder["status"] == "failed", encoder
            assert "ran longer than its 3 s time limit" in encoder["error"], encoder
            assert "pretrain_images_seen" in encoder["error"]
            assert time.monotonic() - started < 60
            assert not (home / "storage" / "encoders" / f"{encoder['id']}.safetensors").exists()
            assert client.get("/readyz").status_code == 200  # the runner thread is alive
    finally:
        server.proc.stop()
    assert "passed its time limit" in server.proc.output()

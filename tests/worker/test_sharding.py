"""Scale-out: with two real Celery workers and EMBED_SHARDS=3, an audit's embed + search run as a chord of
three shards and a merge, and the CSV is the unsharded engine's CSV, byte for byte."""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The MAE method: shards embed with a model in two worker processes. 40 generated -> shards of 16 + 16 + 8.
CONFIG = {"method": "paper", "image_size": 32, "batch_size": 8, "pretrain_images_seen": 64, "seed": 0}


@pytest.fixture(scope="module")
def sharding_deployment(
    distributed_env: dict[str, str],
    tenant_keys: dict[str, str],
    proc_tools: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """uvicorn + two Celery workers on their own queue, every audit's embed + search split in 3 shards."""
    env = {
        **distributed_env,
        "CELERY_QUEUE": f"synthaudit-shards-{uuid.uuid4().hex[:8]}",
        "EMBED_SHARDS": "3",
    }
    logs = tmp_path_factory.mktemp("sharding-logs")
    workers = []
    for name in ("a", "b"):
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "synthaudit.worker.celery_app",
            "worker",
            "--pool",
            "solo",
            "--concurrency",
            "1",
            "-Q",
            env["CELERY_QUEUE"],
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"shard-{name}-{uuid.uuid4().hex[:6]}@%h",
        ]
        workers.append(proc_tools.Proc(f"celery worker {name}", argv, env, logs / f"worker-{name}.log"))
    server = None
    try:
        server = proc_tools.start_server(env, logs / "api.log", Path(env["STORAGE_DIR"]))
        for worker in workers:
            worker.wait_for(lambda w=worker: " ready." in w.output(), 90, "'ready' in its log")
        yield {"server": server, "workers": workers, "headers": proc_tools.bearer(tenant_keys["a"])}
    finally:
        for proc in [*workers, *([server.proc] if server else [])]:
            proc.stop()


def test_sharded_audit_on_two_workers_gives_the_unsharded_csv(
    sharding_deployment: dict[str, Any], membership_set, helpers, tmp_path: Path
) -> None:
    import httpx

    from synthaudit.models.config import AuditConfig
    from synthaudit.models.results import write_results_csv
    from synthaudit.models.stages import AuditInputs, run_audit

    server, workers = sharding_deployment["server"], sharding_deployment["workers"]
    root, truth = membership_set
    labels = dict(sorted(truth.items())[:12])
    with httpx.Client(base_url=server.url, timeout=60.0, headers=sharding_deployment["headers"]) as client:
        real, generated = helpers.upload_set(client, root)
        body = {
            "real_dataset_id": real,
            "generated_dataset_id": generated,
            "labels": labels,
            "config": CONFIG,
        }
        response = client.post("/v1/audits", json=body)
        assert response.status_code == 202, response.text
        audit_id = response.json()["id"]
        done = helpers.wait(client, audit_id, timeout=240.0)
        assert done["status"] == "succeeded", (done, workers[0].tail(), workers[1].tail())
        assert {"decode", "pretrain", "embed", "search", "decide"} <= set(done["stage_timings"])
        csv_text = client.get(f"/v1/audits/{audit_id}/results.csv").text

    # Three shards ran (each exactly once), on the two workers, then one merge.
    logs = [w.output() for w in workers]
    shard_runs = [int(i) for log in logs for i in re.findall(rf"audit {audit_id}: shard (\d+) done", log)]
    assert sorted(shard_runs) == [0, 1, 2], logs
    merges = sum(
        len(re.findall(rf"synthaudit\.embed_merge\[{audit_id}-embed\] succeeded", log)) for log in logs
    )
    assert merges == 1, logs
    assert all(audit_id in log for log in logs)  # both workers worked on this audit
    assert not (server.storage / "audits" / audit_id / "shards").exists()  # shard files cleaned up

    # The single-process, unsharded engine gives the same CSV.
    config = AuditConfig.from_dict(done["config"])
    outcome = run_audit(AuditInputs(root / "real", root / "generated", labels), config, tmp_path / "work")
    write_results_csv(outcome.rows, tmp_path / "engine.csv")
    assert csv_text == (tmp_path / "engine.csv").read_text()

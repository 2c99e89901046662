"""End to end through uvicorn + Postgres + Redis + a real Celery worker: an audit to `succeeded` with the
same CSV and metrics document as the in-process engine (with labels, with a reference dataset),
idempotent retries, cancel (queued and running), delete."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

FAST = {"method": "pixels", "image_size": 32, "seed": 0}
SLOW = {"method": "paper", "image_size": 64, "pretrain_images_seen": 50_000_000}


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def count_rows(pg_url: str, table, audit_id: str) -> int:  # type: ignore[no-untyped-def]
    from synthaudit.app.core.db import make_engine

    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.scalar(
                    select(func.count()).select_from(table).where(table.audit_id == uuid.UUID(audit_id))
                )
            )
    finally:
        engine.dispose()


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def uploaded(client_module, membership_set, helpers) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    return helpers.upload_set(client_module, membership_set[0])


@pytest.fixture(scope="module")
def client_module(api, celery_worker):  # type: ignore[no-untyped-def]
    import httpx

    with httpx.Client(base_url=api.url, timeout=60.0, headers=api.headers) as c:
        yield c


def test_audit_succeeds_with_the_engines_csv(
    client_module, uploaded, membership_set, api, pg_url, helpers, tmp_path: Path
) -> None:
    from synthaudit.app.core.tables import AuditMetrics, AuditResult
    from synthaudit.models.config import AuditConfig
    from synthaudit.models.results import write_results_csv
    from synthaudit.models.stages import AuditInputs, run_audit
    from synthaudit.models.summary import metrics_document

    client, (real, generated), (root, truth) = client_module, uploaded, membership_set
    labels = dict(sorted(truth.items())[:12])
    assert set(labels.values()) == {0, 1}
    # 7 labels 0 are too few a reference for FDR 0.1 (p >= 1/8): the F1 threshold on the labels decides.
    config = {**FAST, "decision": "calibrated"}
    body = {"real_dataset_id": real, "generated_dataset_id": generated, "labels": labels, "config": config}
    key = f"test-{uuid.uuid4()}"
    response = client.post("/v1/audits", json=body, headers={"Idempotency-Key": key})
    assert response.status_code == 202, response.text
    audit = response.json()
    assert response.headers["location"] == f"/v1/audits/{audit['id']}"
    assert audit["status"] in ("queued", "running") and audit["labelled_images"] == 12

    replay = client.post("/v1/audits", json=body, headers={"Idempotency-Key": key})
    assert replay.status_code == 202 and replay.json()["id"] == audit["id"]
    assert replay.headers["location"] == response.headers["location"]
    assert replay.headers["idempotent-replayed"] == "true"
    other = client.post("/v1/audits", json={**body, "labels": None}, headers={"Idempotency-Key": key})
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]

    done = helpers.wait(client, audit["id"])
    assert done["status"] == "succeeded", done
    assert done["progress"] == 100.0 and done["stage"] == "decide" and done["error"] is None
    assert (
        done["started_at"]
        and done["finished_at"]
        and set(done["stage_timings"]) == {"decode", "pretrain", "embed", "search", "decide"}
    )

    result = client.get(f"/v1/audits/{audit['id']}/results.csv")
    assert result.status_code == 200 and result.headers["content-type"].startswith("text/csv")
    assert result.text.splitlines()[0] == "id,used,score,nearest_generated,similarity,p_value,q_value,role"
    rows = rows_of(result.text)
    assert [r["id"] for r in rows] == sorted(truth)
    for row in rows:
        if truth[row["id"]] == 1:  # an exact copy is in the generated set
            assert row["used"] == "1" and float(row["similarity"]) == pytest.approx(1.0, abs=1e-4)
            copy = root / "generated" / f"{row['nearest_generated']}.png"
            assert np.array_equal(pixels(copy), pixels(root / "real" / f"{row['id']}.png"))

    # The service's CSV is the engine's CSV for the same inputs, config and labels.
    config = AuditConfig.from_dict(done["config"])
    outcome = run_audit(AuditInputs(root / "real", root / "generated", labels), config, tmp_path / "work")
    write_results_csv(outcome.rows, tmp_path / "cli.csv")
    assert result.text == (tmp_path / "cli.csv").read_text()
    metrics = client.get(f"/v1/audits/{audit['id']}/metrics").json()
    assert metrics.pop("audit_id") == audit["id"]
    assert metrics == json.loads(json.dumps(metrics_document(outcome.metrics, outcome.rejected)))

    clef = client.get(
        f"/v1/audits/{audit['id']}/results.csv", params={"format": "imageclef"}
    ).text.splitlines()
    assert clef == [f"{r['id']},{r['used']}" for r in rows]

    assert isinstance(metrics["threshold"], float) and metrics["decision_rule"] == "calibrated"
    assert metrics["calibrated"] is True and metrics["counts"]["reference"] == 7  # p-values all the same
    assert metrics["counts"]["real"] == 20 and metrics["counts"]["generated"] == 40
    assert metrics["counts"]["labelled"] == 12
    assert {"accuracy", "precision", "recall", "specificity", "f1", "auc", "tpr_at_1pct_fpr"} <= set(
        metrics["metrics"]
    )
    assert count_rows(pg_url, AuditResult, audit["id"]) == 20

    workdir = api.storage / "audits" / audit["id"]
    assert (workdir / "results.csv").exists()
    assert client.delete(f"/v1/audits/{audit['id']}").status_code == 204
    assert client.get(f"/v1/audits/{audit['id']}").status_code == 404
    assert not workdir.exists()
    assert count_rows(pg_url, AuditResult, audit["id"]) == 0
    assert count_rows(pg_url, AuditMetrics, audit["id"]) == 0


def test_a_reference_dataset_audit_gives_the_clis_csv_and_metrics(
    client_module, uploaded, membership_set, reference_set, pg_url, helpers, tmp_path: Path
) -> None:
    """Postgres (JSONB) + Celery: the same results.csv bytes and metrics document as `synthaudit audit
    --reference … --metrics …`; the reference set's images are stored (for patients.csv) but not listed."""
    from synthaudit.app.core.tables import AuditResult

    client, (real, generated), (root, truth) = client_module, uploaded, membership_set
    response = helpers.upload(client, "reference", sorted(reference_set.glob("*.png")))
    assert response.status_code == 201, response.text
    reference = response.json()["id"]
    body = {
        "real_dataset_id": real,
        "generated_dataset_id": generated,
        "reference_dataset_id": reference,
        "labels": {k: v for k, v in sorted(truth.items()) if v == 1},  # known-used: the power
        "config": {**FAST, "fdr": 0.05},
    }
    audit = client.post("/v1/audits", json=body).json()
    assert audit["reference_dataset_id"] == reference
    done = helpers.wait(client, audit["id"])
    assert done["status"] == "succeeded", done
    csv_bytes, metrics = helpers.outputs(client, audit["id"])

    labels = tmp_path / "labels.csv"
    labels.write_text("id,used\n" + "".join(f"{k},1\n" for k in body["labels"]))
    arguments = [
        "--real",
        str(root / "real"),
        "--generated",
        str(root / "generated"),
        "--reference",
        str(reference_set),
        "--labels",
        str(labels),
        "--method",
        "pixels",
        "--image-size",
        "32",
        "--seed",
        "0",
        "--fdr",
        "0.05",
    ]
    cli_csv, cli_metrics = helpers.cli_outputs(arguments, tmp_path / "cli")
    assert csv_bytes == cli_csv
    assert metrics == cli_metrics
    assert metrics["calibrated"] and metrics["fdr"] == 0.05 and metrics["power"]["n_known_used"] == 8
    assert [r["id"] for r in rows_of(csv_bytes.decode())] == sorted(truth)
    assert count_rows(pg_url, AuditResult, audit["id"]) == 20 + 40  # the reference rows are kept
    assert client.delete(f"/v1/datasets/{reference}").status_code == 204


def test_cancel_running_and_queued_audits(client_module, uploaded, celery_worker, helpers) -> None:
    client, (real, generated) = client_module, uploaded
    slow = client.post(
        "/v1/audits", json={"real_dataset_id": real, "generated_dataset_id": generated, "config": SLOW}
    ).json()
    queued = client.post(
        "/v1/audits", json={"real_dataset_id": real, "generated_dataset_id": generated, "config": FAST}
    ).json()
    running = helpers.wait(client, slow["id"], check=lambda a: a["stage"] == "pretrain")
    assert running["status"] == "running"

    assert client.delete(f"/v1/datasets/{real}").status_code == 409  # in use by an active audit
    assert client.get(f"/v1/audits/{slow['id']}/results.csv").status_code == 409

    cancelled = client.post(f"/v1/audits/{queued['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.post(f"/v1/audits/{slow['id']}/cancel").json()["status"] == "cancelled"

    celery_worker.wait_for(
        lambda: f"audit {slow['id']}: stopped during pretrain" in celery_worker.output(),
        60,
        "the running audit stopping",
    )
    assert client.post(f"/v1/audits/{slow['id']}/cancel").status_code == 409
    for audit_id in (slow["id"], queued["id"]):
        final = client.get(f"/v1/audits/{audit_id}").json()
        assert final["status"] == "cancelled" and final["finished_at"]
    assert client.get(f"/v1/audits/{queued['id']}").json()["started_at"] is None

"""Data protection over HTTP: retention purges uploaded images and derived artifacts but keeps results and
metrics; DELETE removes files and rows at once (and the work folders that hold decoded copies); no
DICOM tag, patient identifier or image content reaches the logs or the error messages; checkpoints
are read from safetensors only."""

from __future__ import annotations

import io
import logging
import pickle
import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

from app.db import make_engine, make_session_factory
from app.services.storage import Storage
from app.tables import Audit, Dataset, utcnow

FAST = {"method": "pixels", "image_size": 32, "seed": 0}
PATIENT_ID, PATIENT_NAME = "PID-7f3e9a-SECRET", "Roe^Secretia"


def backdate(pg_url: str, days: int, audits: list[str], datasets: list[str]) -> None:
    engine = make_engine(pg_url)
    try:
        with engine.begin() as conn:
            then = utcnow() - timedelta(days=days)
            conn.execute(update(Audit).where(Audit.id.in_(audits)).values(created_at=then))
            conn.execute(update(Dataset).where(Dataset.id.in_(datasets)).values(created_at=then))
    finally:
        engine.dispose()


def purge(pg_url: str, storage: Path, days: int) -> tuple[int, int]:
    from app.services.retention import purge_expired

    engine = make_engine(pg_url)
    try:
        return purge_expired(make_session_factory(engine), Storage(storage), days)
    finally:
        engine.dispose()


def run_audit(client, helpers, real: str, generated: str) -> str:  # type: ignore[no-untyped-def]
    body = {"real_dataset_id": real, "generated_dataset_id": generated, "config": FAST}
    response = client.post("/v1/audits", json=body)
    assert response.status_code == 202, response.text
    done = helpers.wait(client, response.json()["id"])
    assert done["status"] == "succeeded", done
    return str(done["id"])


def test_retention_purges_images_and_artifacts_but_keeps_results(
    client, api, celery_worker, membership_set, helpers, pg_url
) -> None:
    real, generated = helpers.upload_set(client, membership_set[0])
    audit_id = run_audit(client, helpers, real, generated)
    csv_before = client.get(f"/v1/audits/{audit_id}/results.csv").text
    metrics_before = client.get(f"/v1/audits/{audit_id}/metrics").json()
    files = [api.storage / "datasets" / d for d in (real, generated)] + [api.storage / "audits" / audit_id]
    assert all(f.exists() for f in files)

    backdate(pg_url, 40, [audit_id], [real, generated])
    purged = purge(pg_url, api.storage, 30)
    assert purged[0] >= 1 and purged[1] >= 2
    assert not any(f.exists() for f in files)
    # Results and metrics stay, from the database.
    assert client.get(f"/v1/audits/{audit_id}/results.csv").text == csv_before
    assert client.get(f"/v1/audits/{audit_id}/metrics").json() == metrics_before
    dataset = client.get(f"/v1/datasets/{real}").json()
    assert dataset["purged_at"] and dataset["image_count"] == 20
    assert client.get(f"/v1/datasets/{real}/images").json()["items"] == []
    again = client.post("/v1/audits", json={"real_dataset_id": real, "generated_dataset_id": generated})
    assert again.status_code == 422 and "purged" in again.json()["detail"]
    assert purge(pg_url, api.storage, 30) == (0, 0)  # nothing left to purge
    assert client.delete(f"/v1/audits/{audit_id}").status_code == 204


def test_delete_removes_files_rows_and_derived_copies(client, api, celery_worker, membership_set, helpers, pg_url) -> None:
    real, generated = helpers.upload_set(client, membership_set[0])
    audit_id = run_audit(client, helpers, real, generated)
    workdir = api.storage / "audits" / audit_id
    assert (workdir / "images.npz").exists()  # decoded pixels of both datasets
    assert client.delete(f"/v1/datasets/{real}").status_code == 204
    assert not (api.storage / "datasets" / real).exists() and not workdir.exists()
    assert client.get(f"/v1/datasets/{real}").status_code == 404
    assert client.delete(f"/v1/audits/{audit_id}").status_code == 204
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            from sqlalchemy import text

            left = conn.execute(
                text("SELECT count(*) FROM images WHERE dataset_id = :d"), {"d": real}
            ).scalar_one()
            results = conn.execute(
                text("SELECT count(*) FROM audit_results WHERE audit_id = :a"), {"a": audit_id}
            ).scalar_one()
    finally:
        engine.dispose()
    assert left == 0 and results == 0
    assert client.delete(f"/v1/datasets/{generated}").status_code == 204


def test_no_patient_data_in_logs_or_errors(embedded_client, embedded_api, helpers, tmp_path) -> None:
    import dicom_sets

    rng = np.random.default_rng(0)
    files = []
    for i in range(4):
        pixels = rng.integers(0, 255, (32, 32), dtype=np.uint8)
        files.append((f"img{i}.dcm", dicom_sets.dicom_file(pixels, PATIENT_ID, "1.2.3", "1.2.3.4")))
    broken = dicom_sets.dicom_file(np.zeros((32, 32), np.uint8), PATIENT_ID, "1.2.3", "1.2.3.4")[:-600]
    files.append(("broken.dcm", broken))
    files = [(n, d.replace(f"Doe^{PATIENT_ID}".encode(), PATIENT_NAME.encode().ljust(len(f"Doe^{PATIENT_ID}")))) for n, d in files]

    def post(role: str):  # type: ignore[no-untyped-def]
        parts = [("files", (name, io.BytesIO(data), "application/dicom")) for name, data in files]
        return embedded_client.post("/v1/datasets", data={"role": role}, files=parts)

    real, generated = post("real"), post("generated")
    assert real.status_code == 201, real.text
    for body in (real.json(), generated.json()):
        assert [r["name"] for r in body["rejected"]] == ["broken.dcm"]
        assert PATIENT_ID not in str(body) and "Secretia" not in str(body)
    real_id, generated_id = real.json()["id"], generated.json()["id"]
    body = {"real_dataset_id": real_id, "generated_dataset_id": generated_id, "config": FAST}
    done = helpers.wait(embedded_client, embedded_client.post("/v1/audits", json=body).json()["id"])
    assert done["status"] == "succeeded", done
    # A failing audit: its error message must not carry the tags either.
    for path in (embedded_api.storage / "datasets" / generated_id / "images").iterdir():
        path.write_bytes(path.read_bytes()[:200])  # corrupted behind the service's back
    failed = helpers.wait(embedded_client, embedded_client.post("/v1/audits", json=body).json()["id"])
    assert failed["status"] == "failed" and failed["error"]
    for text in (failed["error"], str(failed)):
        assert PATIENT_ID not in text and "Secretia" not in text
    log = embedded_api.proc.output()
    for secret in (PATIENT_ID, "Secretia", "img0", "broken.dcm"):
        assert secret not in log, f"{secret!r} in the service log"
    assert not re.search(r"(?:\\x[0-9a-f]{2}){16}", log)  # no raw bytes dumped


def test_unexpected_errors_are_logged_without_their_message(caplog) -> None:
    from app.problems import log_unexpected

    try:
        raise ValueError(f"cannot read {PATIENT_ID}.dcm")
    except ValueError as exc:
        with caplog.at_level(logging.ERROR, logger="synthaudit"):
            log_unexpected("test", exc)
    assert "ValueError" in caplog.text and PATIENT_ID not in caplog.text


def test_checkpoints_are_read_from_safetensors_only(client, tmp_path) -> None:
    from models.pretrain import CheckpointError, load_checkpoint

    evil = tmp_path / "encoder.safetensors"
    evil.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))  # a pickle wearing the right suffix
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    for key in ("checkpoint", "weights"):
        body = {"real_dataset_id": str(evil), "generated_dataset_id": str(evil), "config": {key: str(evil)}}
        assert client.post("/v1/audits", json=body).status_code == 422
    # The service's code never unpickles: no torch.load, pickle or np.load(allow_pickle=True).
    repo = Path(__file__).resolve().parents[2]
    sources = [*repo.glob("app/**/*.py"), *repo.glob("worker/**/*.py"), repo / "models/pretrain.py", repo / "models/stages.py"]
    for source in sources:
        text = source.read_text()
        for pattern in ("torch.load(", "pickle.load", "allow_pickle=True", "import pickle"):
            assert pattern not in text, f"{pattern} in {source.relative_to(repo)}"

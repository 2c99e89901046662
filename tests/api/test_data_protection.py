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

from synthaudit.app.core.db import make_engine, make_session_factory
from synthaudit.app.core.storage import Storage
from synthaudit.app.core.tables import Audit, Dataset, utcnow

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
    from synthaudit.app.core.retention import purge_expired

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


def test_delete_removes_files_rows_and_derived_copies(
    client, api, celery_worker, membership_set, helpers, pg_url
) -> None:
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
    files = [
        (n, d.replace(f"Doe^{PATIENT_ID}".encode(), PATIENT_NAME.encode().ljust(len(f"Doe^{PATIENT_ID}"))))
        for n, d in files
    ]

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
    from synthaudit.app.core.logs import log_unexpected

    try:
        raise ValueError(f"cannot read {PATIENT_ID}.dcm")
    except ValueError as exc:
        with caplog.at_level(logging.ERROR, logger="synthaudit"):
            log_unexpected("test", exc)
    assert "ValueError" in caplog.text and PATIENT_ID not in caplog.text


def test_checkpoints_are_read_from_safetensors_only(client, tmp_path) -> None:
    from synthaudit.models.pretrain import CheckpointError, load_checkpoint

    evil = tmp_path / "encoder.safetensors"
    evil.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))  # a pickle wearing the right suffix
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    for key in ("checkpoint", "weights"):
        body = {"real_dataset_id": str(evil), "generated_dataset_id": str(evil), "config": {key: str(evil)}}
        assert client.post("/v1/audits", json=body).status_code == 422
    # The service's code never unpickles: no torch.load, pickle or np.load(allow_pickle=True).
    repo = Path(__file__).resolve().parents[2]
    sources = [
        *repo.glob("app/**/*.py"),
        *repo.glob("worker/**/*.py"),
        repo / "models/pretrain.py",
        *repo.glob("models/stages/*.py"),
    ]
    for source in sources:
        text = source.read_text()
        for pattern in ("torch.load(", "pickle.load", "allow_pickle=True", "import pickle"):
            assert pattern not in text, f"{pattern} in {source.relative_to(repo)}"


# --- issue 14 #16: private files; #12: the pseudonym secret -------------------------------------------


def _modes(root: Path) -> dict[str, int]:
    """Path (relative to root) -> permission bits, for root and everything under it."""
    import os
    import stat

    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            out[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return out


def _embedded_under_umask(proc_tools, home: Path, umask: str, **env: str):  # type: ignore[no-untyped-def]
    """uvicorn on the embedded default started from a shell whose umask lets everyone read everything."""
    import sys

    port = proc_tools.free_port()
    command = (
        f"umask {umask} && exec {sys.executable} -m uvicorn --factory app.main:app_factory "
        f"--host 127.0.0.1 --port {port} --log-level warning"
    )
    # (BIND_HOST: only versions before issue 14 read it, to let this bare uvicorn go without keys.)
    environment = proc_tools.clean_env(
        SYNTHAUDIT_HOME=str(home), PROGRESS_INTERVAL_S="0.2", BIND_HOST="127.0.0.1", **env
    )
    proc = proc_tools.Proc("uvicorn", ["bash", "-c", command], environment, home.parent / f"{home.name}.log")
    url = f"http://127.0.0.1:{port}"
    proc.wait_for(lambda: _status(f"{url}/readyz") == 200, 60, "readiness")
    return proc, url


def _status(url: str) -> int:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_the_embedded_home_and_uploads_are_private_whatever_the_umask(
    proc_tools, membership_set, helpers, tmp_path
) -> None:
    """Under umask 000 (everything world-writable by default): home, storage, the SQLite file and its
    WAL, uploaded files (multipart and from an archive) and an audit's work folder are 0700 / 0600."""
    import zipfile

    import httpx

    home = tmp_path / "home"
    proc, url = _embedded_under_umask(proc_tools, home, "000")
    try:
        with httpx.Client(base_url=url, timeout=60.0) as client:
            real, generated = helpers.upload_set(client, membership_set[0])
            archive = tmp_path / "more.zip"
            with zipfile.ZipFile(archive, "w") as zf:
                for png in sorted((membership_set[0] / "real").glob("*.png"))[:3]:
                    zf.write(png, f"sub/{png.name}")
            assert helpers.upload(client, "real", [archive]).status_code == 201
            run_audit(client, helpers, real, generated)
    finally:
        proc.stop()
    modes = _modes(home)
    assert "synthaudit.db" in modes and "storage/datasets" in modes and any("sub" in p for p in modes)
    assert any(p.startswith("storage/audits/") for p in modes)  # the audit's work folder
    loose = {p: oct(m) for p, m in modes.items() if m not in (0o700, 0o600)}
    assert not loose, f"{len(loose)} paths not private, e.g. {dict(list(loose.items())[:8])}"
    for path, mode in modes.items():
        assert (mode == 0o700) == (home / path).is_dir(), (path, oct(mode))


def test_an_existing_world_readable_home_is_tightened(proc_tools, tmp_path) -> None:
    """A home left 0755 / 0644 by an older version is made private at the next start."""
    home = tmp_path / "old-home"
    (home / "storage" / "datasets").mkdir(parents=True)
    (home / "synthaudit.db").touch()
    for path, mode in ((home, 0o755), (home / "storage", 0o755), (home / "synthaudit.db", 0o644)):
        path.chmod(mode)
    proc, _ = _embedded_under_umask(proc_tools, home, "022")
    proc.stop()
    modes = _modes(home)
    assert (modes["."], modes["storage"], modes["synthaudit.db"]) == (0o700, 0o700, 0o600)


def test_outside_the_embedded_mode_group_key_secret_is_required(
    pg_url, redis_url, proc_tools, tmp_path
) -> None:
    """The distributed API (uvicorn and `synthaudit serve`) refuses to start without a real secret."""
    import subprocess
    import sys

    for secret in ("", "short"):
        env = proc_tools.clean_env(
            DATABASE_URL=pg_url,
            CELERY_BROKER_URL=redis_url,
            SYNTHAUDIT_HOME=str(tmp_path),
            GROUP_KEY_SECRET=secret,
        )
        port = str(proc_tools.free_port())
        for argv in (
            [sys.executable, "-m", "uvicorn", "--factory", "synthaudit.app.main:app_factory", "--port", port],
            [
                sys.executable,
                "-c",
                "from synthaudit.app.cli import main; raise SystemExit(main())",
                "serve",
                "--port",
                port,
            ],
        ):
            try:
                run = subprocess.run(
                    argv,
                    cwd=proc_tools.repo,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                pytest.fail(f"started without GROUP_KEY_SECRET={secret!r}: {argv[-3:]}")
            assert run.returncode != 0 and "GROUP_KEY_SECRET" in run.stderr, run.stderr[-2000:]
    # The serve command says it in one line, without a traceback.
    assert "Traceback" not in run.stderr and run.stderr.strip().startswith("synthaudit: ")


def test_the_embedded_mode_keeps_its_own_secret(proc_tools, tmp_path) -> None:
    """Without GROUP_KEY_SECRET the embedded mode makes one (0600, in its home), keeps it across restarts,
    and keys the default tenant's pseudonyms with it."""
    import sqlite3

    import dicom_sets
    import httpx

    from synthaudit.models.groups import pseudonym, tenant_key

    home = tmp_path / "home"
    pixels = np.random.default_rng(1).integers(0, 255, (32, 32), dtype=np.uint8)
    data = dicom_sets.dicom_file(pixels, PATIENT_ID, "1.2.3", "1.2.3.4")
    secrets_seen = []
    for _ in range(2):
        proc, url = _embedded_under_umask(proc_tools, home, "022", GROUP_KEY_SECRET="")
        try:
            files = [("files", ("a.dcm", io.BytesIO(data), "application/dicom"))]
            assert httpx.post(f"{url}/v1/datasets", data={"role": "real"}, files=files).status_code == 201
        finally:
            proc.stop()
        secret_file = home / "group_key_secret"
        assert secret_file.stat().st_mode & 0o777 == 0o600
        secrets_seen.append(secret_file.read_text().strip())
    assert secrets_seen[0] == secrets_seen[1] and re.fullmatch(r"[0-9a-f]{64}", secrets_seen[0])
    with sqlite3.connect(home / "synthaudit.db") as db:
        keys = {k for (k,) in db.execute("SELECT patient_key FROM images")}
    assert keys == {pseudonym("patient", PATIENT_ID, tenant_key(secrets_seen[0], "default"))}
    assert pseudonym("patient", PATIENT_ID) not in keys  # not the unkeyed pseudonym anyone can compute


def test_the_same_patient_has_unrelated_pseudonyms_in_two_tenants(
    client, other_client, celery_worker, helpers, tmp_path
) -> None:
    """Tenant b uploads candidate PatientIDs and reads its patients.csv: its pseudonyms say nothing about
    tenant a's (re-identification across tenants)."""
    import csv

    from dicom_sets import LAYOUT, make_dicom_set

    data = make_dicom_set(tmp_path / "dicom")
    seen = {}
    for name, tenant_client, tenant in ((("a", client, "tenant-a")), ("b", other_client, "tenant-b")):
        ids = []
        for role, pattern in (("real", "*.dcm"), ("generated", "*.png")):
            response = helpers.upload(tenant_client, role, sorted((data.root / role).glob(pattern)))
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        audit = run_audit(tenant_client, helpers, ids[0], ids[1])
        rows = csv.DictReader(io.StringIO(tenant_client.get(f"/v1/audits/{audit}/patients.csv").text))
        seen[name] = {r["patient"] for r in rows}
        assert seen[name] == {helpers.pseudonym(raw, tenant) for raw in LAYOUT}
    assert len(seen["a"]) == len(LAYOUT) and not seen["a"] & seen["b"]

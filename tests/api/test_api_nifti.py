"""NIfTI volumes end to end (issue 21, phase 1): a folder and a zip of .nii.gz audited by the CLI, and the
same volumes uploaded over HTTP in the embedded mode (SQLite, in-process runner) and the distributed mode
(Postgres, Celery): the same results.csv, one row per kept slice (`<volume>_z042`)."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pytest
from nifti_sets import write_volume_set

FAST = {"method": "pixels", "image_size": 32, "seed": 0}
CLI_FAST = ["--method", "pixels", "--image-size", "32", "--seed", "0"]


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """6 real CT-like volumes; generated: copies of r0..r2 and 3 fresh volumes."""
    root = tmp_path_factory.mktemp("volumes")
    return root, write_volume_set(root)


@pytest.fixture(scope="module")
def cli_csv(volumes, tmp_path_factory: pytest.TempPathFactory, helpers) -> tuple[bytes, dict]:  # type: ignore[no-untyped-def]
    root, _ = volumes
    inputs = ["--real", str(root / "real"), "--generated", str(root / "generated")]
    return helpers.cli_outputs([*inputs, *CLI_FAST], tmp_path_factory.mktemp("cli"))


def rows_of(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def audit_over_http(client, helpers, root: Path) -> tuple[bytes, dict]:  # type: ignore[no-untyped-def]
    ids = []
    for role in ("real", "generated"):
        response = helpers.upload(client, role, sorted((root / role).glob("*.nii.gz")))
        assert response.status_code == 201, response.text
        assert response.json()["image_count"] == len(list((root / role).glob("*.nii.gz")))  # volumes
        assert response.json()["rejected"] == []
        ids.append(response.json()["id"])
    body = {"real_dataset_id": ids[0], "generated_dataset_id": ids[1], "config": FAST}
    response = client.post("/v1/audits", json=body)
    assert response.status_code == 202, response.text
    done = helpers.wait(client, response.json()["id"])
    assert done["status"] == "succeeded", done
    return helpers.outputs(client, done["id"])


def test_the_cli_audits_a_folder_of_volumes_slice_by_slice(volumes, cli_csv) -> None:  # type: ignore[no-untyped-def]
    _root, copied = volumes
    rows = rows_of(cli_csv[0])
    assert len(rows) == 6 * 12  # 16 axial slices each, 2 empty ones at each end dropped
    assert {r["id"].rsplit("_", 1)[0] for r in rows} == {f"r{i}" for i in range(6)}
    assert {r["id"].rsplit("_", 1)[1] for r in rows} == {f"z{k:03d}" for k in range(2, 14)}
    used = {r["id"].rsplit("_", 1)[0] for r in rows if r["used"] == "1"}
    assert used == copied  # the copied volumes' slices, and only theirs
    assert sum(r["used"] == "1" for r in rows) == 3 * 12


def test_a_zip_of_volumes_gives_the_folders_csv(volumes, cli_csv, helpers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, _ = volumes
    for role in ("real", "generated"):
        with zipfile.ZipFile(tmp_path / f"{role}.zip", "w") as zf:
            for path in sorted((root / role).glob("*.nii.gz")):
                zf.write(path, f"{role}/{path.name}")
    inputs = ["--real", str(tmp_path / "real.zip"), "--generated", str(tmp_path / "generated.zip")]
    zipped = helpers.cli_outputs([*inputs, *CLI_FAST], tmp_path / "cli")
    assert zipped[0] == cli_csv[0]


def test_the_axis_is_an_audit_setting(volumes, helpers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, _ = volumes
    inputs = ["--real", str(root / "real"), "--generated", str(root / "generated"), "--nifti-axis", "all"]
    csv_bytes, _metrics = helpers.cli_outputs([*inputs, *CLI_FAST], tmp_path / "cli")
    letters = {r["id"].rsplit("_", 1)[1][0] for r in rows_of(csv_bytes)}
    assert letters == {"x", "y", "z"}


def test_an_upload_in_the_embedded_mode_gives_the_clis_csv(
    embedded_client, volumes, cli_csv, helpers
) -> None:  # type: ignore[no-untyped-def]
    root, _ = volumes
    csv_bytes, metrics = audit_over_http(embedded_client, helpers, root)
    assert csv_bytes == cli_csv[0]
    assert metrics == cli_csv[1]


def test_a_zip_of_volumes_uploads_as_the_files_do(embedded_client, volumes, helpers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, _ = volumes
    archive = tmp_path / "generated.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((root / "generated").glob("*.nii.gz")):
            zf.write(path, f"generated/{path.name}")
    response = helpers.upload(embedded_client, "generated", [archive])
    assert response.status_code == 201, response.text
    assert response.json()["image_count"] == 6 and response.json()["rejected"] == []
    listing = embedded_client.get(f"/v1/datasets/{response.json()['id']}/images").json()
    assert [i["id"] for i in listing["items"]] == [f"g{i}" for i in range(6)]  # one row per volume
    bad = embedded_client.post(
        "/v1/audits",
        json={
            "real_dataset_id": response.json()["id"],
            "generated_dataset_id": response.json()["id"],
            "config": {"nifti_axis": "oblique"},
        },
    )
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")


@pytest.mark.slow
def test_an_upload_in_the_distributed_mode_gives_the_clis_csv(
    api, celery_worker, volumes, cli_csv, helpers
) -> None:  # type: ignore[no-untyped-def]
    import httpx

    root, _ = volumes
    with httpx.Client(base_url=api.url, timeout=60.0, headers=api.headers) as client:
        csv_bytes, metrics = audit_over_http(client, helpers, root)
    assert csv_bytes == cli_csv[0]
    assert metrics == cli_csv[1]

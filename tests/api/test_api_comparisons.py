"""Checkpoint comparisons over HTTP: POST /v1/comparisons runs `synthaudit compare` as a job, in the embedded
mode (SQLite, the runner thread) and the distributed one (Postgres, Redis, a real Celery worker), and
serves the CLI's comparison.csv and each checkpoint's results.csv byte for byte; tenants are isolated and
bad requests are problem+json."""

from __future__ import annotations

import contextlib
import io
import shutil
import stat
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_sets import make_membership_set, random_image

PROBLEM = "application/problem+json"
CONFIG = {"method": "pixels", "image_size": 32, "seed": 5}
CHECKPOINTS = ("epoch-5", "epoch-20", "epoch-80")
FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """real/ (10 used, 10 not used), reference/ (40 fresh), and three checkpoints of 8 fresh images each:
    epoch-5 copies no real image, epoch-20 half of the used ones, epoch-80 all of them."""
    root = tmp_path_factory.mktemp("comparison-series")
    make_membership_set(root / "set", n_used=10, n_unused=10, n_fresh_generated=4, exact_copies=True, seed=8)
    shutil.move(root / "set" / "real", root / "real")
    rng = np.random.default_rng(9)
    (root / "reference").mkdir()
    for j in range(40):
        Image.fromarray(random_image(rng, 32)).save(root / "reference" / f"q{j:02d}.png")
    labels = (root / "set" / "labels.csv").read_text().split()
    used = sorted(line.split(",")[0] for line in labels if line.endswith(",1"))
    for name, share in zip(CHECKPOINTS, (0.0, 0.5, 1.0), strict=True):
        folder = root / "ckpts" / name
        folder.mkdir(parents=True)
        for j in range(8):
            Image.fromarray(random_image(rng, 32)).save(folder / f"g{j:03d}.png")
        for k, image_id in enumerate(used[: int(share * len(used))]):
            shutil.copyfile(root / "real" / f"{image_id}.png", folder / f"c{k:03d}.png")
    return root


@pytest.fixture(scope="module")
def cli_out(series: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`synthaudit compare` on the series, with the settings the service is given."""
    from synthaudit.app.cli import main

    out = tmp_path_factory.mktemp("cli-compare") / "out"
    argv = ["compare", "--real", str(series / "real"), "--reference", str(series / "reference")]
    argv += [a for name in CHECKPOINTS for a in ("--generated", str(series / "ckpts" / name))]
    argv += ["--out", str(out), "--method", "pixels", "--image-size", "32", "--seed", "5"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(argv) == 0
    return out


def upload_series(client, series: Path, helpers) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Upload real, reference and the checkpoints (datasets named after their folders); their ids."""
    ids = {}
    for key, role, folder in (
        ("real", "real", series / "real"),
        ("reference", "reference", series / "reference"),
        *((name, "generated", series / "ckpts" / name) for name in CHECKPOINTS),
    ):
        response = helpers.upload(client, role, sorted(folder.glob("*.png")), name=folder.name)
        assert response.status_code == 201, response.text
        ids[key] = response.json()["id"]
    return ids


def comparison_body(ids: dict[str, str]) -> dict:
    """Checkpoints posted out of order; the first one named explicitly, the others by their dataset."""
    generated = [
        {"dataset_id": ids["epoch-80"]},
        {"dataset_id": ids["epoch-5"], "name": "epoch-5"},
        {"dataset_id": ids["epoch-20"]},
    ]
    return {
        "real_dataset_id": ids["real"],
        "reference_dataset_id": ids["reference"],
        "generated": generated,
        "config": CONFIG,
    }


def wait(client, comparison_id: str, timeout: float = 300.0) -> dict:  # type: ignore[no-untyped-def]
    """Poll until the comparison ends; the progress seen on the way never goes down."""
    deadline, seen = time.monotonic() + timeout, [0.0]
    while True:
        response = client.get(f"/v1/comparisons/{comparison_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["progress"] >= seen[-1], (body, seen)
        seen.append(body["progress"])
        if body["status"] in FINAL:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.25)


def run_and_check(client, series: Path, cli_out: Path, helpers) -> tuple[dict, dict[str, str]]:  # type: ignore[no-untyped-def]
    """POST a comparison of the series, wait for it, and check every file against the CLI's folder."""
    ids = upload_series(client, series, helpers)
    response = client.post("/v1/comparisons", json=comparison_body(ids))
    assert response.status_code == 202, response.text
    created = response.json()
    assert response.headers["Location"] == f"/v1/comparisons/{created['id']}"
    assert created["status"] == "queued" and created["level"] == 0.05
    assert [c["name"] for c in created["checkpoints"]] == list(CHECKPOINTS)  # checkpoint order
    assert created["checkpoints"][0]["dataset_id"] == ids["epoch-5"]
    done = wait(client, created["id"])
    assert done["status"] == "succeeded", done
    assert done["progress"] == 100.0 and done["stage"] is None and done["error"] is None
    base = f"/v1/comparisons/{created['id']}"

    csv = client.get(f"{base}/comparison.csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.content == (cli_out / "comparison.csv").read_bytes()
    for name in CHECKPOINTS:
        results = client.get(f"{base}/checkpoints/{name}/results.csv")
        assert results.status_code == 200, results.text
        assert results.content == (cli_out / name / "results.csv").read_bytes()
        imageclef = client.get(f"{base}/checkpoints/{name}/results.csv", params={"format": "imageclef"})
        assert imageclef.status_code == 200 and b"," in imageclef.content
        assert not imageclef.text.startswith("id,")
    report = client.get(f"{base}/report")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert report.headers["cache-control"] == "private, no-store"
    assert done["summary"] and done["summary"] in report.text.replace("&#x27;", "'")

    rows = done["checkpoints"]
    assert [r["name"] for r in rows] == list(CHECKPOINTS) and [r["step"] for r in rows] == [5, 20, 80]
    lines = (cli_out / "comparison.csv").read_text().splitlines()[1:]
    for row, line in zip(rows, lines, strict=True):
        cells = line.split(",")
        assert row["verdict"] == cells[2] and row["n_generated"] == int(cells[8])
        assert row["holm_p"] == pytest.approx(float(cells[4]), rel=1e-5)
        assert row["evidence"] is (cells[5] == "1")
        assert row["flagged"] == int(cells[6])
        assert row["results"] == f"{base}/checkpoints/{row['name']}/results.csv"
    assert rows[-1]["evidence"] is True and rows[0]["evidence"] is False  # epoch-80 copies, epoch-5 not
    listed = client.get("/v1/comparisons", params={"status": "succeeded"}).json()
    assert created["id"] in {c["id"] for c in listed["items"]}
    return done, ids


def test_embedded_comparison_equals_the_cli(embedded_client, embedded_api, series, cli_out, helpers) -> None:  # type: ignore[no-untyped-def]
    client = embedded_client
    done, ids = run_and_check(client, series, cli_out, helpers)
    folder = embedded_api.storage / "comparisons" / done["id"]
    assert not (folder / "work").exists()  # the decoded images and features go when the job ends
    modes = {p: stat.S_IMODE(p.lstat().st_mode) for p in [folder, *folder.rglob("*")]}
    assert all(mode == (0o700 if p.is_dir() else 0o600) for p, mode in modes.items()), modes
    assert (folder / "out" / "comparison.csv").exists()

    # A checkpoint's results.csv is what a separate audit of that checkpoint gives.
    audit = client.post(
        "/v1/audits",
        json={
            "real_dataset_id": ids["real"],
            "generated_dataset_id": ids["epoch-80"],
            "reference_dataset_id": ids["reference"],
            "config": CONFIG,
        },
    )
    assert audit.status_code == 202, audit.text
    assert helpers.wait(client, audit.json()["id"])["status"] == "succeeded"
    separate = client.get(f"/v1/audits/{audit.json()['id']}/results.csv").content
    assert separate == client.get(f"/v1/comparisons/{done['id']}/checkpoints/epoch-80/results.csv").content
    assert client.delete(f"/v1/audits/{audit.json()['id']}").status_code == 204

    # A finished comparison's datasets can be deleted: its table and files stay.
    assert client.delete(f"/v1/datasets/{ids['epoch-5']}").status_code == 204
    kept = client.get(f"/v1/comparisons/{done['id']}").json()
    assert kept["checkpoints"][0]["dataset_id"] is None and kept["checkpoints"] != done["checkpoints"]
    assert [c["holm_p"] for c in kept["checkpoints"]] == [c["holm_p"] for c in done["checkpoints"]]
    assert client.get(f"/v1/comparisons/{done['id']}/comparison.csv").status_code == 200
    assert client.delete(f"/v1/comparisons/{done['id']}").status_code == 204
    assert client.get(f"/v1/comparisons/{done['id']}").status_code == 404
    assert client.get(f"/v1/comparisons/{done['id']}/comparison.csv").status_code == 404
    assert not folder.exists()
    log = embedded_api.proc.output()
    assert "comparison " + done["id"] in log and "epoch-80" not in log and "q00" not in log


def test_a_cancelled_comparison_never_runs_and_serves_no_files(
    embedded_client, embedded_api, series, helpers
) -> None:  # type: ignore[no-untyped-def]
    """The embedded runner runs one job at a time: the second comparison waits behind the first, is
    cancelled there, and is skipped when its turn comes."""
    client = embedded_client
    ids = upload_series(client, series, helpers)
    first = client.post("/v1/comparisons", json=comparison_body(ids)).json()
    second = client.post("/v1/comparisons", json=comparison_body(ids)).json()
    busy = client.delete(f"/v1/datasets/{ids['epoch-20']}")  # in use by a queued comparison
    assert busy.status_code == 409 and "comparison" in busy.json()["detail"], busy.text
    cancelled = client.post(f"/v1/comparisons/{second['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    again = client.post(f"/v1/comparisons/{second['id']}/cancel")
    assert again.status_code == 409 and again.headers["content-type"].startswith(PROBLEM)
    files = client.get(f"/v1/comparisons/{second['id']}/comparison.csv")
    assert files.status_code == 409 and files.json()["type"] == "urn:synthaudit:problem:not-ready"
    assert wait(client, first["id"])["status"] == "succeeded"
    assert wait(client, second["id"])["status"] == "cancelled"
    assert not (embedded_api.storage / "comparisons" / second["id"]).exists()
    listed = client.get("/v1/comparisons", params={"status": "cancelled"}).json()["items"]
    assert [c["id"] for c in listed] == [second["id"]]
    for comparison in (first, second):
        assert client.delete(f"/v1/comparisons/{comparison['id']}").status_code == 204
    assert client.delete(f"/v1/datasets/{ids['epoch-20']}").status_code == 204  # no longer in use


def test_bad_comparison_requests_are_problems(embedded_client, series, helpers) -> None:  # type: ignore[no-untyped-def]
    client = embedded_client
    ids = upload_series(client, series, helpers)
    good = comparison_body(ids)
    missing = str(uuid.uuid4())
    spaced = helpers.upload(
        client, "generated", sorted((series / "ckpts" / "epoch-5").glob("*.png")), name="final model"
    )
    assert spaced.status_code == 201, spaced.text
    cases = [
        ({**good, "real_dataset_id": missing}, "invalid-request", "no dataset"),
        (
            {**good, "generated": [*good["generated"][:2], {"dataset_id": missing}]},
            "invalid-request",
            "no dataset",
        ),
        ({**good, "reference_dataset_id": ids["real"]}, "invalid-request", "role 'real'"),
        ({**good, "real_dataset_id": ids["epoch-5"]}, "invalid-request", "role 'generated'"),
        (
            {**good, "generated": [{"dataset_id": ids["real"]}, *good["generated"][:1]]},
            "invalid-request",
            "not 'generated'",
        ),
        (
            {
                **good,
                "generated": [
                    {"dataset_id": ids["epoch-5"], "name": "x"},
                    {"dataset_id": ids["epoch-20"], "name": "x"},
                ],
            },
            "invalid-request",
            "the same checkpoint name as generated[0]",
        ),
        (
            {**good, "generated": [{"dataset_id": ids["epoch-5"], "name": "=cmd()"}, *good["generated"][2:]]},
            "invalid-request",
            "the name is not a checkpoint name",
        ),
        (
            {**good, "generated": [{"dataset_id": spaced.json()["id"]}, *good["generated"][1:]]},
            "invalid-request",
            "the dataset's name (the default name) is not a checkpoint name",
        ),
        (
            {**good, "generated": [{"dataset_id": ids["epoch-5"]}] * 33},
            "invalid-request",
            "MAX_COMPARISON_CHECKPOINTS",
        ),
        ({**good, "generated": good["generated"][:1]}, "validation-error", "generated"),
        ({**good, "level": 1.5}, "validation-error", "level"),
        ({**good, "nope": 1}, "validation-error", "nope"),
        ({**good, "config": {"method": "no-such-method"}}, "invalid-request", "config"),
        (
            {**good, "reference_dataset_id": None, "config": {**CONFIG, "decision": "fdr"}},
            "invalid-request",
            "fdr",
        ),
    ]
    before = client.get("/v1/comparisons", params={"limit": 200}).json()["items"]
    for body, slug, needle in cases:
        response = client.post("/v1/comparisons", json=body)
        assert response.status_code == 422, (needle, response.text)
        assert response.headers["content-type"].startswith(PROBLEM)
        problem = response.json()
        assert problem["type"] == f"urn:synthaudit:problem:{slug}", (needle, problem)
        assert needle in problem["detail"], (needle, problem)
    assert client.get("/v1/comparisons", params={"limit": 200}).json()["items"] == before  # nothing stored
    for path in (f"/v1/comparisons/{missing}", f"/v1/comparisons/{missing}/report"):
        response = client.get(path)
        assert response.status_code == 404 and response.json()["type"] == "urn:synthaudit:problem:not-found"
    assert client.get("/v1/comparisons/not-a-uuid").status_code == 422


def test_distributed_comparison_equals_the_cli_and_is_the_tenants_own(  # type: ignore[no-untyped-def]
    client, other_client, celery_worker, api, series, cli_out, helpers
) -> None:
    done, ids = run_and_check(client, series, cli_out, helpers)
    assert "comparison " + done["id"] in celery_worker.output()
    base = f"/v1/comparisons/{done['id']}"
    name = CHECKPOINTS[0]
    unknown = f"/v1/comparisons/{uuid.uuid4()}"
    for method, path in (
        ("GET", base),
        ("GET", f"{base}/comparison.csv"),
        ("GET", f"{base}/report"),
        ("GET", f"{base}/checkpoints/{name}/results.csv"),
        ("POST", f"{base}/cancel"),
        ("DELETE", base),
    ):
        theirs = other_client.request(method, path)
        assert theirs.status_code == 404, (method, path, theirs.text)
        nobody = other_client.request(method, path.replace(base, unknown))
        assert theirs.json()["detail"].replace(done["id"], "<id>") == nobody.json()["detail"].replace(
            unknown.rsplit("/", 1)[1], "<id>"
        )
    page = other_client.get("/v1/comparisons", params={"limit": 200}).json()
    assert done["id"] not in {c["id"] for c in page["items"]}
    # Tenant b cannot compare tenant a's datasets: as if they did not exist.
    stolen = other_client.post("/v1/comparisons", json=comparison_body(ids))
    assert stolen.status_code == 422 and "no dataset" in stolen.json()["detail"]
    assert client.get(base).json()["status"] == "succeeded"  # nothing of a's changed
    assert client.get(f"{base}/checkpoints/no-such-checkpoint/results.csv").status_code == 404
    assert client.delete(base).status_code == 204
    assert not (api.storage / "comparisons" / done["id"]).exists()

"""Reusable encoders: POST /v1/encoders pretrains once; an audit with `encoder_id` skips pretraining and
gives the same CSV as an audit that pretrains the same encoder itself (same images, budget and seed)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from synthetic_sets import make_membership_set

TINY = {"image_size": 32, "pretrain_images_seen": 64, "seed": 3}


def wait_encoder(client, encoder_id: str, timeout: float = 180.0) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/encoders/{encoder_id}").json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.25)


def tensors(data: bytes) -> dict:
    from safetensors.torch import load

    return load(data)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("encoder-set")
    make_membership_set(root, n_used=4, n_unused=4, n_fresh_generated=8, size=32, seed=11)
    return root


def test_a_registered_encoder_is_reused_with_the_same_result(
    embedded_client, embedded_api, tiny_set, helpers
) -> None:
    client = embedded_client
    real, generated = helpers.upload_set(client, tiny_set)
    response = client.post(
        "/v1/encoders", json={"dataset_ids": [real, generated], "name": "tiny", "config": TINY}
    )
    assert response.status_code == 202, response.text
    encoder_id = response.json()["id"]
    assert response.headers["Location"] == f"/v1/encoders/{encoder_id}"
    encoder = wait_encoder(client, encoder_id)
    assert encoder["status"] == "succeeded", encoder
    assert encoder["n_images"] == 20 and len(encoder["data_hash"]) == 64
    assert encoder["final_loss"] is not None and encoder["final_loss"] > 0
    assert encoder["config"]["seed"] == 3 and encoder["config"]["mae_preset"] == "mae_tiny_patch8_64"
    listed = client.get("/v1/encoders").json()
    assert encoder_id in {e["id"] for e in listed["items"]}

    base = {"real_dataset_id": real, "generated_dataset_id": generated}
    pretrains = client.post("/v1/audits", json={**base, "config": {"method": "paper", **TINY}}).json()
    reuses = client.post(
        "/v1/audits", json={**base, "encoder_id": encoder_id, "config": {"method": "paper", "seed": 3}}
    )
    assert reuses.status_code == 202, reuses.text
    reuses = reuses.json()
    assert reuses["encoder_id"] == encoder_id and reuses["config"]["image_size"] == 32
    assert reuses["config"]["checkpoint"] == f"encoder:{encoder_id}"  # no server path is shown
    finished = [helpers.wait(client, audit["id"], timeout=240) for audit in (pretrains, reuses)]
    assert [a["status"] for a in finished] == ["succeeded", "succeeded"]
    assert finished[0]["trail"]["encoder"] is None
    assert finished[1]["trail"]["encoder"]["id"] == encoder_id
    assert finished[1]["trail"]["encoder"]["data_hash"] == encoder["data_hash"]
    assert finished[0]["trail"]["inputs"] == finished[1]["trail"]["inputs"]  # the same input sets

    own = embedded_api.storage / "audits" / pretrains["id"] / "encoder.safetensors"
    assert own.exists()  # the first audit pretrained ...
    assert not (
        embedded_api.storage / "audits" / reuses["id"] / "encoder.safetensors"
    ).exists()  # ... not this
    csv_a = client.get(f"/v1/audits/{pretrains['id']}/results.csv").text
    csv_b = client.get(f"/v1/audits/{reuses['id']}/results.csv").text
    assert csv_a == csv_b
    weights = client.get(f"/v1/encoders/{encoder_id}/weights")
    assert weights.status_code == 200
    registered, pretrained = tensors(weights.content), tensors(own.read_bytes())
    assert registered.keys() == pretrained.keys()
    assert all((registered[k] == pretrained[k]).all() for k in registered)  # bit for bit on CPU

    # Reuse needs an MAE method and a finished encoder of this tenant.
    for extra, needle in (
        ({"encoder_id": str(uuid.uuid4()), "config": {"method": "paper"}}, "no encoder"),
        ({"encoder_id": encoder_id, "config": {"method": "pixels"}}, "uses no MAE"),
        (
            {"encoder_id": encoder_id, "config": {"method": "paper", "mae_preset": "mae_small_patch16_224"}},
            "differs",
        ),
    ):
        bad = client.post("/v1/audits", json={**base, **extra})
        assert bad.status_code == 422 and needle in bad.json()["detail"], bad.text
    assert client.post("/v1/encoders", json={"dataset_id": str(uuid.uuid4())}).status_code == 422
    assert client.post("/v1/encoders", json={}).status_code == 422

    assert client.delete(f"/v1/encoders/{encoder_id}").status_code == 204
    assert client.get(f"/v1/encoders/{encoder_id}").status_code == 404
    for audit in (pretrains, reuses):
        client.delete(f"/v1/audits/{audit['id']}")


def test_cli_pretrain_then_audit_with_the_checkpoint(tiny_set, tmp_path: Path, capsys) -> None:
    """`synthaudit pretrain` on [real, generated] = the encoder `synthaudit audit` would pretrain itself."""
    from synthaudit.app.cli import main
    from synthaudit.models.pretrained import describe_encoder

    enc = tmp_path / "enc.safetensors"
    assert (
        main(
            [
                "pretrain",
                "--images",
                str(tiny_set / "real"),
                str(tiny_set / "generated"),
                "--out",
                str(enc),
                "--image-size",
                "32",
                "--pretrain-images-seen",
                "64",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    assert "training data sha256" in capsys.readouterr().out
    info = describe_encoder(enc)
    assert info["n_images"] == 20 and len(info["data_hash"]) == 64 and info["final_loss"] > 0
    common = [
        "audit",
        "--real",
        str(tiny_set / "real"),
        "--generated",
        str(tiny_set / "generated"),
        "--method",
        "paper",
        "--image-size",
        "32",
        "--seed",
        "3",
    ]
    assert main([*common, "--pretrain-images-seen", "64", "--out", str(tmp_path / "a.csv")]) == 0
    assert main([*common, "--checkpoint", str(enc), "--out", str(tmp_path / "b.csv")]) == 0
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert main(["pretrain", "--images", str(tmp_path / "missing"), "--out", str(enc)]) == 2

"""Helpers of the in-process tier (tests/inprocess): the app's client with two tenants' keys, small PNGs."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image
from synthetic_sets import random_image

GROUP_KEY_SECRET = "synthaudit-inprocess-group-key-secret-0123456789"


@dataclass
class InProcess:
    """The app's client (no key), and two tenants' keys."""

    client: TestClient
    keys: dict[str, str]

    def as_tenant(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}


def png(seed: int, size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(random_image(np.random.default_rng(seed), size)).save(buf, format="PNG")
    return buf.getvalue()


def upload_pngs(client: TestClient, headers: dict[str, str], role: str, seeds: range) -> str:
    """POST /v1/datasets with one small PNG per seed; the dataset's id."""
    files = [("files", (f"img{seed:04d}.png", png(seed), "image/png")) for seed in seeds]
    response = client.post("/v1/datasets", headers=headers, data={"role": role}, files=files)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])

"""Audit rows for the worker tests on a real (SQLite) database: datasets with PNGs on disk, an audit over them."""

from __future__ import annotations

import uuid

import numpy as np
from PIL import Image

from synthaudit.app.core import repository as repo
from synthaudit.app.core.db import session_scope
from synthaudit.app.core.tables import Audit, Dataset
from synthaudit.worker.context import WorkerContext


def make_audit(ctx: WorkerContext, images: dict[str, int] | None = None, status: str = "queued") -> uuid.UUID:
    """Two datasets (with `images[role]` 16x16 PNGs on disk, 3 each by default; a `reference` count adds a
    reference dataset) and a pixels audit over them in `status` (a running one stands in the embed stage)."""
    from synthaudit.models.config import AuditConfig

    ids = {}
    with session_scope(ctx.sessions) as session:
        for role, count in (images or {"real": 3, "generated": 3}).items():
            dataset = Dataset(role=role, image_count=count, total_bytes=0, rejected=[])
            repo.add_dataset(session, dataset, [])
            folder = ctx.storage.dataset_images(dataset.id)
            folder.mkdir(parents=True)
            for i in range(count):
                seed = i + (1000 if role == "reference" else 0)  # reference images differ from real ones
                arr = np.random.default_rng(seed).integers(0, 255, (16, 16), dtype=np.uint8)
                Image.fromarray(arr).save(folder / f"{role}{i}.png")
            ids[role] = dataset.id
        audit = Audit(
            real_dataset_id=ids["real"],
            generated_dataset_id=ids["generated"],
            reference_dataset_id=ids.get("reference"),
            status=status,
            stage="embed" if status == "running" else None,
            config=AuditConfig(method="pixels", image_size=16).to_dict(),
            stage_timings={},
            progress=0.0,
        )
        repo.add_audit(session, audit)
        return audit.id


def audit_row(ctx: WorkerContext, audit_id: uuid.UUID) -> Audit:
    """The audit's row, detached from its session."""
    with session_scope(ctx.sessions) as session:
        audit = repo.get_audit(session, audit_id)
        assert audit is not None
        session.expunge(audit)
        return audit

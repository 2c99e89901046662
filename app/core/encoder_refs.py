"""`encoder:<id>` checkpoint references: how an audit names a registered encoder without a server path."""

from __future__ import annotations

import uuid
from typing import Any

from synthaudit.app.core.storage import Storage

CHECKPOINT_REF = "encoder:"


def resolve_checkpoint(config: dict[str, Any], storage: Storage) -> dict[str, Any]:
    """An audit config with `encoder:<id>` replaced by the encoder's file (other configs unchanged)."""
    ref = config.get("checkpoint")
    if isinstance(ref, str) and ref.startswith(CHECKPOINT_REF):
        path = storage.encoder_weights(uuid.UUID(ref[len(CHECKPOINT_REF) :]))
        if not path.exists():
            raise FileNotFoundError("the audit's encoder file is missing (was the encoder deleted?)")
        return {**config, "checkpoint": str(path)}
    return config

"""Ending an audit as failed: the message the user reads on its row, and its webhook."""

from __future__ import annotations

import uuid

from synthaudit.app.core import repository as repo
from synthaudit.app.core.db import session_scope
from synthaudit.app.core.webhooks import notify_finished
from synthaudit.worker.context import WorkerContext


def fail(ctx: WorkerContext, audit_id: uuid.UUID, message: str) -> None:
    """Mark the audit failed with a message for the user (no-op when it already ended)."""
    with session_scope(ctx.sessions) as session:
        repo.fail_audit(session, audit_id, message)
    notify_finished(ctx.sessions, audit_id, ctx.settings)  # its webhook, if any (background, never raises)

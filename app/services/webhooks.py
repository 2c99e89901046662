"""Completion webhooks: one signed POST per finished audit (succeeded, failed or cancelled), retried with
exponential backoff for a bounded number of attempts.

Exactly one process sends an audit's webhook: the one whose conditional UPDATE moves `webhook_status`
from NULL to `sending` (after the audit reached a final status). Delivery runs on a background thread so
neither the worker nor the API request waits for the receiver; the outcome (`delivered` or `failed`,
and the number of attempts) is written back to the audit row.

A process that dies while it sends (a killed worker, a restarted API) leaves the audit in `sending`:
`resend_stalled`, called by the recovery sweep and the embedded runner, puts every claim older than
twice the longest possible delivery back to NULL and sends it again. The receiver may then see the
same `delivery_id` twice (if the dead process had already delivered): it must treat that id as an
idempotency key.

Receivers verify `X-Synthaudit-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw request body under
the shared WEBHOOK_SECRET (docs/workflow.md shows how).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.tables import Audit, AuditMetrics, utcnow

log = logging.getLogger(__name__)
FINAL_STATUSES = ("succeeded", "failed", "cancelled")
SIGNATURE_HEADER = "X-Synthaudit-Signature"
EVENT = "audit.finished"
USER_AGENT = "synthaudit-webhook/1"


def sign(body: bytes, secret: str) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secret: str) -> bool:
    """What a receiver does: recompute the signature and compare in constant time."""
    return bool(header) and hmac.compare_digest(sign(body, secret), str(header))


@dataclass(frozen=True)
class Delivery:
    """The result of sending one webhook."""

    delivered: bool
    attempts: int
    last_error: str | None = None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # a redirect is a failed attempt
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post_once(url: str, body: bytes, headers: dict[str, str], timeout: float) -> str | None:
    """POST the body; None on a 2xx answer, else a short reason (status code or error type)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return type(getattr(exc, "reason", exc)).__name__
    return None if 200 <= status < 300 else f"HTTP {status}"


def deliver(
    url: str,
    payload: dict[str, Any],
    secret: str,
    *,
    max_attempts: int = 5,
    backoff_s: float = 2.0,
    timeout_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST the JSON payload until a 2xx answer, at most max_attempts times; waits backoff_s * 2^n
    (with ±20 % jitter) between attempts. The body (and so its signature) is the same on every attempt."""
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Synthaudit-Event": str(payload.get("event", EVENT)),
        "X-Synthaudit-Delivery": str(payload.get("delivery_id", "")),
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    error: str | None = None
    for attempt in range(1, max_attempts + 1):
        error = post_once(url, body, headers, timeout_s)
        if error is None:
            return Delivery(True, attempt)
        if attempt < max_attempts:
            sleep(backoff_s * 2 ** (attempt - 1) * random.uniform(0.8, 1.2))
    return Delivery(False, max_attempts, error)


def payload_of(audit: Audit, metrics: AuditMetrics | None) -> dict[str, Any]:
    """The webhook body: ids, final status, error, counts and links (no image names, no labels)."""
    base = f"/v1/audits/{audit.id}"
    body: dict[str, Any] = {
        "event": EVENT,
        "delivery_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"synthaudit:{audit.id}:{EVENT}")),
        "audit_id": str(audit.id),
        "status": audit.status,
        "error": audit.error,
        "created_at": audit.created_at.isoformat() if audit.created_at else None,
        "finished_at": audit.finished_at.isoformat() if audit.finished_at else None,
        "sent_at": utcnow().isoformat(),
        "links": {"self": base},
    }
    if audit.status == "succeeded":
        body["links"].update(
            results=f"{base}/results.csv", metrics=f"{base}/metrics", report=f"{base}/report"
        )
        if metrics is not None:
            body["threshold"] = metrics.threshold
            body["decision_rule"] = metrics.decision_rule
            body["counts"] = metrics.counts
    return body


def _claim(session: Session, audit_id: uuid.UUID) -> bool:
    """NULL → sending, only for a finished audit with a webhook: true for exactly one caller."""
    result = session.execute(
        update(Audit)
        .where(
            Audit.id == audit_id,
            Audit.webhook_url.is_not(None),
            Audit.webhook_status.is_(None),
            Audit.status.in_(FINAL_STATUSES),
        )
        .values(webhook_status="sending", webhook_claimed_at=utcnow())
    )
    return result.rowcount > 0  # type: ignore[attr-defined]


def delivery_window_s(settings: Any) -> float:
    """The longest one delivery can take: every attempt timing out, plus the backoffs at +20 % jitter."""
    attempts = int(settings.webhook_max_attempts)
    backoffs = settings.webhook_backoff_s * (2 ** (attempts - 1) - 1) * 1.2
    return attempts * settings.webhook_timeout_s + backoffs


def resend_stalled(
    sessions: sessionmaker[Session], settings: Any, background: bool = True
) -> list[uuid.UUID]:
    """Send again every webhook left in `sending` for longer than 2 × delivery_window_s + 60 s (its
    sending process died); return those audits' ids. Safe to run from several processes at once."""
    cutoff = utcnow() - timedelta(seconds=2 * delivery_window_s(settings) + 60.0)
    stalled = and_(
        Audit.webhook_status == "sending",
        or_(Audit.webhook_claimed_at.is_(None), Audit.webhook_claimed_at < cutoff),
    )
    with session_scope(sessions) as session:
        candidates = list(session.scalars(select(Audit.id).where(stalled)))
    resent: list[uuid.UUID] = []
    for audit_id in candidates:
        with session_scope(sessions) as session:
            released = session.execute(
                update(Audit)
                .where(Audit.id == audit_id, stalled)
                .values(webhook_status=None, webhook_claimed_at=None)
            )
        if released.rowcount != 1:  # type: ignore[attr-defined]
            continue  # another process released it first, or it was delivered meanwhile
        log.warning("audit %s: webhook stalled in 'sending' (its sender died); sending it again", audit_id)
        notify_finished(sessions, audit_id, settings, background=background)
        resent.append(audit_id)
    return resent


def notify_finished(
    sessions: sessionmaker[Session], audit_id: uuid.UUID, settings: Any = None, background: bool = True
) -> threading.Thread | None:
    """Send the audit's webhook if it has one and nobody sent it yet (never raises)."""
    try:
        with session_scope(sessions) as session:
            if not _claim(session, audit_id):
                return None
            audit = session.get(Audit, audit_id)
            assert audit is not None
            url, payload = str(audit.webhook_url), payload_of(audit, session.get(AuditMetrics, audit_id))
    except Exception as exc:  # noqa: BLE001 - a webhook must never break the job that finished
        log.warning("audit %s: webhook not started (%s)", audit_id, type(exc).__name__)
        return None
    if settings is None:
        from app.config import get_settings

        settings = get_settings()

    def run() -> None:
        result = deliver(
            url,
            payload,
            settings.webhook_secret,
            max_attempts=settings.webhook_max_attempts,
            backoff_s=settings.webhook_backoff_s,
            timeout_s=settings.webhook_timeout_s,
        )
        log.info(
            "audit %s: webhook %s after %d attempt(s)%s",
            audit_id,
            "delivered" if result.delivered else "failed",
            result.attempts,
            f" ({result.last_error})" if result.last_error else "",
        )
        try:
            with session_scope(sessions) as session:
                session.execute(
                    update(Audit)
                    .where(Audit.id == audit_id)
                    .values(
                        webhook_status="delivered" if result.delivered else "failed",
                        webhook_attempts=result.attempts,
                    )
                )
        except Exception as exc:  # noqa: BLE001
            log.warning("audit %s: webhook outcome not recorded (%s)", audit_id, type(exc).__name__)

    if not background:
        run()
        return None
    thread = threading.Thread(target=run, name=f"synthaudit-webhook-{audit_id}", daemon=True)
    thread.start()
    return thread

"""Completion webhooks: one signed POST per finished audit (succeeded, failed or cancelled), retried with
exponential backoff for a bounded number of attempts.

Exactly one process sends an audit's webhook: the one whose conditional UPDATE moves `webhook_status`
from NULL to `sending` (after the audit reached a final status). Delivery runs on the process's bounded
delivery pool (app/core/webhook_pool.py: WEBHOOK_MAX_CONCURRENCY threads), so neither the worker
nor the API request waits for the receiver; the outcome (`delivered` or `failed`, and the number of
attempts) is written back to the audit row.

A process that dies while it sends (a killed worker, a restarted API) leaves the audit in `sending`:
`resend_stalled`, called by the recovery sweep and the embedded runner, puts every claim older than
twice the longest possible delivery back to NULL and sends it again. A delivery the full pool could not
take is left in `sending` without a claim time, so the next sweep sends it. The receiver may see the
same delivery twice (if the dead process had already delivered): it must treat `webhook-id` as an
idempotency key.

Every attempt is signed by the Standard Webhooks scheme with the webhook's own secret
(app/core/webhook_signing.py); an audit without a secret is never sent unsigned. Every attempt
resolves the receiver's host again and connects only to the addresses it checked (app/core/net_guard.py):
no loopback, private, link-local or reserved address, ports 80 and 443, unless WEBHOOK_ALLOWED_HOSTS
lists the destination. Redirects are not followed (a 3xx answer is a failed attempt).
"""

from __future__ import annotations

import json
import logging
import random
import re
import socket
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from synthaudit.app.core import net_guard
from synthaudit.app.core import repository as repo
from synthaudit.app.core.db import session_scope
from synthaudit.app.core.logs import log_unexpected
from synthaudit.app.core.tables import Audit, AuditMetrics, utcnow
from synthaudit.app.core.webhook_pool import DeliveryPool, delivery_pool
from synthaudit.app.core.webhook_signing import signed_headers

log = logging.getLogger(__name__)
EVENT = "audit.finished"
USER_AGENT = "synthaudit-webhook/2"
MAX_RESPONSE_HEAD = 64 * 1024  # bytes of the receiver's answer read, at most (only its status matters)
Allowlist = Collection[tuple[str, int | None]]


@dataclass(frozen=True)
class Delivery:
    """The result of sending one webhook."""

    delivered: bool
    attempts: int
    last_error: str | None = None


class _Unanswered(OSError):
    """The receiver closed the connection or sent something that is not an HTTP answer."""


def request_bytes(target: net_guard.Target, body: bytes, headers: dict[str, str]) -> bytes:
    """The whole HTTP/1.1 request: Host is the URL's name, whatever address the socket reached."""
    lines = [f"POST {target.path} HTTP/1.1", f"Host: {target.host_header}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("ascii") + body


def read_status(sock: socket.socket, deadline: float) -> int:
    """The status of the receiver's final answer (1xx heads skipped), read by `deadline` (monotonic)."""
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            match = re.match(rb"HTTP/1\.[01] ([1-5][0-9][0-9])[ \r]", data[: end + 2])
            if match is None:
                raise _Unanswered("not an HTTP answer")
            status = int(match.group(1))
            if not 100 <= status < 200:
                return status
            data = data[end + 4 :]
            continue
        if len(data) > MAX_RESPONSE_HEAD:
            raise _Unanswered("answer head too long")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no answer in time")
        sock.settimeout(remaining)
        chunk = sock.recv(8192)
        if not chunk:
            raise _Unanswered("closed without an answer")
        data += chunk


def post_once(
    target: net_guard.Target, addresses: list[str], body: bytes, headers: dict[str, str], timeout: float
) -> str | None:
    """POST to one of the checked addresses; None on a 2xx answer, else a short reason (status code or
    error type). The attempt ends after `timeout` seconds in all, however slowly the receiver answers."""
    deadline = time.monotonic() + timeout
    try:
        with net_guard.connect(target, addresses, timeout) as sock:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.sendall(request_bytes(target, body, headers))
            status = read_status(sock, deadline)
    except (OSError, ValueError) as exc:
        return type(exc).__name__
    return None if 200 <= status < 300 else f"HTTP {status}"


def deliver(
    url: str,
    payload: dict[str, Any],
    secret: str | None,
    *,
    allowlist: Allowlist = (),
    max_attempts: int = 5,
    backoff_s: float = 2.0,
    timeout_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST the JSON payload until a 2xx answer, at most max_attempts times; waits backoff_s * 2^n
    (with ±20 % jitter) between attempts. The body and its `webhook-id` are the same on every attempt;
    each attempt has its own timestamp and signature. Nothing is sent without a secret, nor to a
    destination the guard refuses (checked again before every attempt; a refusal is not retried)."""
    if not secret:
        return Delivery(False, 0, "no signing secret")
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    msg_id = str(payload.get("delivery_id") or uuid.uuid4())
    base_headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Synthaudit-Event": str(payload.get("event", EVENT)),
    }
    error: str | None = None
    for attempt in range(1, max_attempts + 1):
        try:
            target = net_guard.parse_target(url)
            addresses = net_guard.resolve(target, allowlist)
        except net_guard.Unresolvable:
            error = "host does not resolve"
        except net_guard.Refused as exc:
            return Delivery(False, attempt - 1, f"refused: {exc}")
        else:
            headers = {**base_headers, **signed_headers(secret, msg_id, body)}
            error = post_once(target, addresses, body, headers, timeout_s)
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


def _start(sessions: sessionmaker[Session], audit_id: uuid.UUID, claimed_at: datetime) -> bool:
    """When a pool thread takes the delivery: renew the claim (time spent waiting in the pool is not
    the sender's silence), unless the sweep gave it to another sender meanwhile (then False)."""
    with session_scope(sessions) as session:
        return repo.renew_webhook_claim(session, audit_id, claimed_at)


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
    with session_scope(sessions) as session:
        candidates = repo.stalled_webhooks(session, cutoff)
    resent: list[uuid.UUID] = []
    for audit_id in candidates:
        with session_scope(sessions) as session:
            released = repo.release_stalled_webhook(session, audit_id, cutoff)
        if not released:
            continue  # another process released it first, or it was delivered meanwhile
        log.warning("audit %s: webhook stalled in 'sending' (its sender died); sending it again", audit_id)
        notify_finished(sessions, audit_id, settings, background=background)
        resent.append(audit_id)
    return resent


def allowlist_of(settings: Any) -> frozenset[tuple[str, int | None]]:
    """The operator's WEBHOOK_ALLOWED_HOSTS, parsed (empty: public destinations on 80/443 only)."""
    return net_guard.parse_allowlist(str(getattr(settings, "webhook_allowed_hosts", "") or ""))


def notify_finished(
    sessions: sessionmaker[Session],
    audit_id: uuid.UUID,
    settings: Any = None,
    background: bool = True,
    pool: DeliveryPool | None = None,
) -> bool:
    """Send the audit's webhook if it has one and nobody sent it yet, on the delivery pool (this
    process's, unless one is given; inline when not `background`); True when this call took it on.
    Never raises."""
    try:
        with session_scope(sessions) as session:
            claimed_at = repo.claim_webhook(session, audit_id)
            if claimed_at is None:
                return False
            audit = repo.get_audit(session, audit_id)
            assert audit is not None
            url, secret = str(audit.webhook_url), audit.webhook_secret
            payload = payload_of(audit, repo.get_metrics(session, audit_id))
    except Exception as exc:  # noqa: BLE001 - a webhook must never break the job that finished
        log.warning("audit %s: webhook not started (%s)", audit_id, type(exc).__name__)
        return False
    if settings is None:
        from synthaudit.app.core.config import get_settings

        settings = get_settings()

    def run() -> None:
        if background and not _start(sessions, audit_id, claimed_at):
            log.info("audit %s: webhook taken over by another sender while queued", audit_id)
            return
        try:
            result = deliver(
                url,
                payload,
                secret,
                allowlist=allowlist_of(settings),
                max_attempts=settings.webhook_max_attempts,
                backoff_s=settings.webhook_backoff_s,
                timeout_s=settings.webhook_timeout_s,
            )
        except Exception as exc:  # noqa: BLE001 - recorded as failed rather than left to loop
            log_unexpected(f"audit {audit_id}: webhook", exc)
            result = Delivery(False, 0, type(exc).__name__)
        log.info(
            "audit %s: webhook %s after %d attempt(s)%s",
            audit_id,
            "delivered" if result.delivered else "failed",
            result.attempts,
            f" ({result.last_error})" if result.last_error else "",
        )
        _record(sessions, audit_id, result)

    if not background:
        run()
        return True
    pool = pool or delivery_pool(settings.webhook_max_concurrency, settings.webhook_max_queued)
    if not pool.submit(run):
        log.warning("audit %s: webhook delivery pool full; left for the stalled-webhook sweep", audit_id)
        _release_for_sweep(sessions, audit_id)
    return True


def _record(sessions: sessionmaker[Session], audit_id: uuid.UUID, result: Delivery) -> None:
    try:
        with session_scope(sessions) as session:
            repo.record_webhook(session, audit_id, result.delivered, result.attempts)
    except Exception as exc:  # noqa: BLE001
        log.warning("audit %s: webhook outcome not recorded (%s)", audit_id, type(exc).__name__)


def _release_for_sweep(sessions: sessionmaker[Session], audit_id: uuid.UUID) -> None:
    """`sending` without a claim time: the next resend_stalled takes it at once."""
    try:
        with session_scope(sessions) as session:
            repo.release_webhook_claim(session, audit_id)
    except Exception as exc:  # noqa: BLE001 - the claim then ages out like a dead sender's
        log.warning("audit %s: webhook claim not released (%s)", audit_id, type(exc).__name__)

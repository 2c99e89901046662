"""Webhook signatures by the Standard Webhooks specification (https://www.standardwebhooks.com), through
its reference implementation, the `standardwebhooks` package.

Every delivery carries three headers:

- `webhook-id`: the delivery id, the same on every attempt (the receiver's idempotency key);
- `webhook-timestamp`: the attempt's time, integer seconds since the epoch (a receiver refuses one
  that is more than a few minutes off: replay protection);
- `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.

The key is the webhook's own secret, `whsec_<base64 of 32 random bytes>`, made when its audit is created
and shown to its creator once, so one tenant's secret never signs another tenant's notifications.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks import Webhook, WebhookVerificationError

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the specification asks for 24 to 64
TOLERANCE_S = 300  # what receivers are told to accept (the package's own tolerance)


def new_secret() -> str:
    """A fresh signing secret, `whsec_` + base64 of 32 bytes from the OS's CSPRNG."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 signature>` of one message (the body as sent, byte for byte)."""
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    return Webhook(secret).sign(msg_id=msg_id, timestamp=when, data=body.decode("utf-8"))


def signed_headers(secret: str, msg_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt, stamped now."""
    if "." in msg_id or not msg_id:
        raise ValueError("a webhook-id must be non-empty and hold no '.'")
    timestamp = int(time.time() if now is None else now)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """What a receiver does (docs/workflow.md): headers present, the timestamp within 5 minutes of now,
    one `v1` signature equal to the expected one (constant-time comparison)."""
    try:
        Webhook(secret).verify(body, dict(headers), json_parse=False)
    except (WebhookVerificationError, ValueError):  # ValueError: a malformed signature list
        return False
    return True

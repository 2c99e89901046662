"""Webhook signatures by the Standard Webhooks specification (issue 14 #9): the published example vector,
fresh secrets, what a receiver accepts and refuses, no delivery without a secret, and the receiver
snippet of docs/workflow.md run against a real delivery."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from synthaudit.app.core.webhook_signing import new_secret, sign, signed_headers, verify

REPO = Path(__file__).resolve().parents[2]
# The example of the reference implementation's test suite (standard-webhooks, libraries/*/tests).
VECTOR = {
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "msg_id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "timestamp": 1614265330,
    "body": b'{"test": 2432232314}',
    "signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}


def test_the_signature_matches_the_published_example() -> None:
    v = VECTOR
    assert sign(v["secret"], v["msg_id"], v["timestamp"], v["body"]) == v["signature"]
    # The same by hand: HMAC-SHA256 of "{id}.{timestamp}.{body}" under the base64-decoded secret.
    key = base64.b64decode(v["secret"].removeprefix("whsec_"))
    content = f"{v['msg_id']}.{v['timestamp']}.".encode() + v["body"]
    digest = hmac.new(key, content, hashlib.sha256).digest()
    assert "v1," + base64.b64encode(digest).decode() == v["signature"]


def test_secrets_are_fresh_32_byte_whsec_keys() -> None:
    made = {new_secret() for _ in range(200)}
    assert len(made) == 200
    assert all(s.startswith("whsec_") and len(base64.b64decode(s[6:], validate=True)) == 32 for s in made)


def test_what_a_receiver_accepts_and_refuses() -> None:
    secret, body = new_secret(), b'{"audit_id":"a","status":"succeeded"}'
    headers = signed_headers(secret, "d-1", body)
    assert verify(secret, headers, body)
    assert Webhook(secret).verify(body, headers) == json.loads(body)  # the reference package agrees
    assert not verify(secret, headers, body + b" ")  # a changed body
    assert not verify(new_secret(), headers, body)  # another webhook's (another tenant's) secret
    assert not verify(secret, {**headers, "webhook-id": "d-2"}, body)  # another delivery's id
    assert not verify(secret, {**headers, "webhook-timestamp": str(int(time.time()) + 5)}, body)
    assert not verify(secret, signed_headers(secret, "d-1", body, now=time.time() - 360), body)  # replay
    assert not verify(secret, signed_headers(secret, "d-1", body, now=time.time() + 360), body)
    assert not verify(secret, {k: v for k, v in headers.items() if k != "webhook-signature"}, body)
    assert not verify(secret, {**headers, "webhook-signature": "v1,not-base64!"}, body)
    assert not verify(secret, {**headers, "webhook-signature": "garbage"}, body)
    with pytest.raises(ValueError):
        signed_headers(secret, "a.b", body)  # an id must not shift the signed content's fields


class _Receiver:
    """Runs `check(headers, body)` on each POST at its arrival and records the verdict."""

    def __init__(self, check: Any) -> None:
        self.verdicts: list[bool] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.verdicts.append(bool(check(dict(self.headers), body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def docs_snippet() -> Any:
    """The receiver's `verify_webhook` from docs/workflow.md, as printed there."""
    text = (REPO / "docs" / "workflow.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def verify_webhook(" in b]
    assert len(blocks) == 1
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], "docs/workflow.md", "exec"), namespace)
    return namespace["verify_webhook"]


def test_the_documented_receiver_check_accepts_a_real_delivery_and_nothing_else() -> None:
    from synthaudit.app.core.net_guard import parse_allowlist
    from synthaudit.app.core.webhooks import deliver

    verify_webhook = docs_snippet()
    secret = new_secret()
    receiver = _Receiver(lambda headers, body: verify_webhook(secret, headers, body))
    try:
        allowlist = parse_allowlist(f"127.0.0.1:{receiver.port}")
        url = f"http://127.0.0.1:{receiver.port}/hook"
        assert deliver(url, {"delivery_id": "d-7", "status": "failed"}, secret, allowlist=allowlist).delivered
        assert deliver(url, {"delivery_id": "d-8"}, new_secret(), allowlist=allowlist).delivered
        assert receiver.verdicts == [True, False]  # the second was signed with another secret
    finally:
        receiver.stop()
    headers = signed_headers(secret, "d-9", b"{}", now=time.time() - 400)
    assert not verify_webhook(secret, headers, b"{}")  # a replay outside the 5-minute window


def test_a_webhook_without_a_secret_is_not_sent() -> None:
    """No unsigned delivery, ever (an audit created before per-webhook secrets has none)."""
    from synthaudit.app.core.net_guard import parse_allowlist
    from synthaudit.app.core.webhooks import deliver

    receiver = _Receiver(lambda headers, body: True)
    try:
        allowlist = parse_allowlist(f"127.0.0.1:{receiver.port}")
        for secret in (None, ""):
            result = deliver(f"http://127.0.0.1:{receiver.port}/", {}, secret, allowlist=allowlist)
            assert not result.delivered and result.attempts == 0 and result.last_error == "no signing secret"
        assert receiver.verdicts == []
    finally:
        receiver.stop()

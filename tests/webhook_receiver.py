"""A loopback webhook receiver for the tests: records every POST, answers as told.

A plain module under tests/ (on pytest's pythonpath), not conftest: `from conftest import` picks
tests/models/conftest.py when both folders are collected.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _audit_id(body: bytes) -> str | None:
    """The `audit_id` of a webhook body (None for a body that is not a JSON object)."""
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value.get("audit_id") if isinstance(value, dict) else None


class Receiver:
    """Records every POST (headers, path, body, audit id, answer, arrival time) and answers `status`
    (with `location` when given) after holding the request `hold_s` seconds; with `fail_first`, answers
    500 to the first call of each audit instead. Counts the requests it holds at once (`max_active`)."""

    def __init__(
        self,
        hold_s: float = 0.0,
        status: int = 200,
        location: str | None = None,
        *,
        fail_first: bool = False,
        path: str = "/hook",
    ) -> None:
        self.calls: list[dict[str, Any]] = []
        self.active = self.max_active = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                audit_id = _audit_id(body)
                with receiver.lock:
                    first = not any(c["audit_id"] == audit_id for c in receiver.calls)
                    answer = 500 if fail_first and first else status
                    receiver.calls.append(
                        {
                            "audit_id": audit_id,
                            "body": body,
                            "headers": dict(self.headers),
                            "path": self.path,
                            "answered": answer,
                            "at": time.time(),
                        }
                    )
                    receiver.active += 1
                    receiver.max_active = max(receiver.max_active, receiver.active)
                time.sleep(hold_s)
                with receiver.lock:
                    receiver.active -= 1
                self.send_response(answer)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self.allowed = f"127.0.0.1:{self.port}"  # its WEBHOOK_ALLOWED_HOSTS entry
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, audit_id: str) -> list[dict[str, Any]]:
        """The calls made for one audit, in arrival order."""
        with self.lock:
            return [c for c in self.calls if c["audit_id"] == audit_id]

    def stop(self) -> None:
        """Shut the server down and close its socket."""
        self.server.shutdown()
        self.server.server_close()

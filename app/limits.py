"""An ASGI middleware capping the request body of uploads, answering 413 problem+json."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from synthaudit.app.problems import problem_response


class UploadSizeLimit:
    """Refuse request bodies above `max_bytes` on POST requests to the given path prefixes, and (when
    `other_max_bytes` is set) bodies above that on every other request."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, paths: tuple[str, ...], other_max_bytes: int | None = None
    ) -> None:
        self.app, self.max_bytes, self.paths = app, max_bytes, paths
        self.other_max_bytes = other_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST" and scope["path"].startswith(self.paths):
            limit, setting = self.max_bytes, "MAX_UPLOAD_BYTES"
        elif self.other_max_bytes is not None:
            limit, setting = self.other_max_bytes, "MAX_JSON_BYTES"
        else:
            await self.app(scope, receive, send)
            return
        await self._limited(scope, receive, send, limit, setting)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, limit: int, setting: str) -> None:
        detail = f"the request body is larger than the limit of {limit} bytes ({setting})"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = problem_response(
                413, detail, type_="urn:synthaudit:problem:payload-too-large", instance=scope["path"]
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, detail)  # FastAPI re-raises it from body parsing
            return message

        await self.app(scope, limited_receive, send)

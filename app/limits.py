"""An ASGI middleware capping the request body of uploads, answering 413 problem+json."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.problems import problem_response


class UploadSizeLimit:
    """Refuse request bodies above `max_bytes` on POST requests to the given path prefixes."""

    def __init__(self, app: ASGIApp, max_bytes: int, paths: tuple[str, ...]) -> None:
        self.app, self.max_bytes, self.paths = app, max_bytes, paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(self.paths):
            await self.app(scope, receive, send)
            return
        detail = f"the upload is larger than the limit of {self.max_bytes} bytes (MAX_UPLOAD_BYTES)"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
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
                if received > self.max_bytes:
                    raise HTTPException(413, detail)  # FastAPI re-raises it from body parsing
            return message

        await self.app(scope, limited_receive, send)

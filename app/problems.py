"""Errors as RFC 9457 `application/problem+json`, for the service's own errors, HTTP errors and validation."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from synthaudit.app.core.logs import log_unexpected

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:synthaudit:problem:"


class ProblemError(Exception):
    """A service error with a status, a stable type slug and a message the user can act on."""

    status: int = 400
    slug: str = "bad-request"

    def __init__(
        self, detail: str, *, extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}
        self.headers = headers or {}


class NotFound(ProblemError):
    status, slug = 404, "not-found"


class Conflict(ProblemError):
    status, slug = 409, "conflict"


class Unprocessable(ProblemError):
    status, slug = 422, "invalid-request"


class NotReady(ProblemError):
    status, slug = 409, "not-ready"


class Gone(ProblemError):
    status, slug = 410, "gone"


class QueueUnavailable(ProblemError):
    """The job queue refused a new job (audit or encoder): nothing was created, the client may retry."""

    status, slug = 503, "queue-unavailable"


def problem_response(
    status: int,
    detail: str | None,
    *,
    type_: str = "about:blank",
    title: str | None = None,
    instance: str | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(jsonable_encoder(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    response = problem_response(
        exc.status, exc.detail, type_=TYPE_PREFIX + exc.slug, instance=request.url.path, **exc.extra
    )
    for name, value in exc.headers.items():
        response.headers[name] = value
    return response


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    response = problem_response(exc.status_code, detail, instance=request.url.path)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Never echo the submitted values back (they could carry patient data): location, message, type only.
    errors = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
    return problem_response(
        422,
        detail or "the request is invalid",
        type_=TYPE_PREFIX + "validation-error",
        title="Request validation failed",
        instance=request.url.path,
        errors=errors,
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """The database is unreachable (503, retry) or refused a value (422); the SQL is never shown."""
    from sqlalchemy.exc import DataError, DBAPIError

    assert isinstance(exc, DBAPIError)
    if isinstance(exc, DataError):
        return problem_response(
            422,
            "the request holds a value the database cannot store (a NUL character, a number out of range)",
            type_=TYPE_PREFIX + "invalid-request",
            instance=request.url.path,
        )
    if exc.connection_invalidated or isinstance(exc, _UNAVAILABLE):
        response = problem_response(
            503,
            "the database is unavailable; retry the request shortly",
            type_=TYPE_PREFIX + "unavailable",
            instance=request.url.path,
        )
        response.headers["Retry-After"] = "5"
        return response
    return await _unexpected_error(request, exc)


def _unavailable_errors() -> tuple[type[Exception], ...]:
    from sqlalchemy.exc import InterfaceError, OperationalError

    return (OperationalError, InterfaceError)


_UNAVAILABLE = _unavailable_errors()


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # The server logs the traceback itself (Starlette re-raises after this handler answers).
    return problem_response(
        500, "an internal error occurred; the operator's logs have the details", instance=request.url.path
    )


class UnexpectedErrors:
    """Outermost middleware: any exception that escaped the handlers becomes a 500 problem+json, and is
    logged with its type and stack only. Its message is not logged: it may quote data (a file name, a
    value). Nothing is re-raised, so the server does not log it again in full."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001
            log_unexpected(f"{scope.get('method')} {scope.get('path')}", exc)
            if not started:
                detail = "an internal error occurred; the operator's logs have the details"
                response = problem_response(500, detail, instance=scope["path"])
                await response(scope, receive, send)


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error the app can raise through problem+json."""
    app.add_exception_handler(ProblemError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    from sqlalchemy.exc import DBAPIError

    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected_error)

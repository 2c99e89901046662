"""Log lines of every process (API, embedded runner, Celery workers): a request id on each line written
while a request is served, the audit id on lines about an audit, and `LOG_FORMAT=json` for one JSON
object per line (`ts`, `level`, `logger`, `message`, `request_id`, `audit_id`). Messages carry ids and
counts only, never image contents or metadata, and a logged exception shows its frames and type, never
its message. No web framework is imported here.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_request_id: ContextVar[str | None] = ContextVar("synthaudit_request_id", default=None)
_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id() -> str | None:
    """The id of the request being served (None outside requests)."""
    return _request_id.get()


def safe_exc_text(exc_info: tuple[Any, ...]) -> str:
    """A traceback without the exception's message (it may quote a path or a value): frames and type."""
    import traceback

    exc_type, _, tb = exc_info
    frames = "".join(traceback.format_tb(tb))
    name = f"{exc_type.__module__}.{exc_type.__qualname__}"
    return f"Traceback (most recent call last):\n{frames}{name} (message not logged)"


class RequestIdFilter(logging.Filter):
    """Adds `request_id` and, for messages about an audit (`"audit %s: …"`), `audit_id` to records, and
    replaces the text of a logged exception (`log.exception`, `exc_info=True`, anyone's) by its frames
    and type: an exception message may hold storage paths made from file names, or values."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = safe_exc_text(record.exc_info)  # formatters print exc_text when it is set
        record.request_id = _request_id.get()
        audit = getattr(record, "audit_id", None)
        if audit is None and isinstance(record.args, tuple) and record.args:
            first = record.args[0]
            if isinstance(first, uuid.UUID) and str(record.msg).startswith(("audit ", "encoder ")):
                audit = str(first)
        record.audit_id = audit
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "audit_id"):
            value = getattr(record, key, None)
            if value:
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__  # the type only: messages may hold data
        return json.dumps(entry, separators=(",", ":"))


def configure_log_format(fmt: str, logger: logging.Logger | None = None) -> None:
    """Attach the request-id filter to the handlers of `logger` (default: root); switch them to JSON
    when fmt is 'json'."""
    target = logger or logging.getLogger()
    if logger is None and not target.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in target.handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
        if fmt == "json":
            handler.setFormatter(JsonFormatter())


def log_unexpected(where: str, exc: BaseException) -> None:
    """Log an unexpected exception as its type and stack frames, never its message (it may hold data)."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    logging.getLogger("synthaudit").error("%s: unexpected %s\n%s", where, type(exc).__name__, frames)

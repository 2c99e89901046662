"""The exceptions the worker's pieces share: the transient errors worth a retry, and the stop signals."""

from __future__ import annotations

from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from synthaudit.app.core.logs import log_unexpected


def _transient_errors() -> tuple[type[BaseException], ...]:
    """The database's and the broker's connection errors (of the broker clients that are installed)."""
    errors: list[type[BaseException]] = [
        OperationalError,
        InterfaceError,
        DisconnectionError,
        ConnectionError,
    ]
    try:
        import redis.exceptions

        errors += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
    except ImportError:  # pragma: no cover
        pass
    try:
        import kombu.exceptions

        errors.append(kombu.exceptions.OperationalError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


TRANSIENT_ERRORS = _transient_errors()
"""Errors worth a retry with backoff: the database or the broker could not be reached."""


class AuditStopped(Exception):
    """The audit was cancelled or deleted while a stage ran."""


class EncoderStopped(Exception):
    """The encoder was cancelled or deleted while it trained."""


class ComparisonStopped(Exception):
    """The comparison was cancelled or deleted while it ran."""


def unexpected_error(what: str, exc: BaseException, time_limit: str) -> str:
    """The error a job records for an exception nobody expected: `time_limit` for Celery's soft time limit
    (on the prefork pool), else its type; the stack is logged, never the message (it may hold paths)."""
    if type(exc).__name__ == "SoftTimeLimitExceeded":
        return time_limit
    log_unexpected(what, exc)
    return f"internal error ({type(exc).__name__}); the worker logs have the details"

"""The exceptions the worker's pieces share: the transient errors worth a retry, and the stop signals."""

from __future__ import annotations

from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError


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

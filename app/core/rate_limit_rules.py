"""RATE_LIMIT values read into `limits` rules, and where the counts are kept (settings check them at start)."""

from __future__ import annotations

from typing import Any


def parse_rate_limit(value: str) -> list[Any]:
    """The limits of a RATE_LIMIT value (empty: none); ValueError when it cannot be read."""
    from limits import parse_many

    if not value.strip():
        return []
    try:
        return list(parse_many(value))
    except ValueError:
        raise ValueError(
            f"RATE_LIMIT {value!r} is not a rate limit such as '1200/minute' or '1200/minute;20000/hour'"
        ) from None


def storage_url(settings: Any) -> str:
    """Where the counts live: RATE_LIMIT_STORAGE_URL, else the broker when it is Redis, else memory."""
    if settings.rate_limit_storage_url:
        return str(settings.rate_limit_storage_url)
    broker = str(settings.celery_broker_url)
    if broker.startswith(("redis://", "rediss://", "unix://")):
        return broker
    return "memory://"

"""Per-tenant request rate limits: an ASGI middleware answering 429 problem+json with Retry-After.

RATE_LIMIT is in the `limits` package's notation ("1200/minute", or several: "1200/minute;20000/hour"),
counted per tenant over a moving window on every route but the probes and the API documentation; empty
turns it off. The counts live in memory in the embedded mode (one process), and in Redis in the
distributed mode (RATE_LIMIT_STORAGE_URL, default the broker's URL when it is Redis), so that every API
process shares one count per tenant. When that storage cannot be reached the request is let through and
a warning logged: the limit protects the service, it must not take it down with Redis.

The middleware runs after ApiKeyAuth (it needs the tenant) and before any request body is read.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from anyio import to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from synthaudit.app.core.rate_limit_rules import parse_rate_limit, storage_url
from synthaudit.app.problems import TYPE_PREFIX, problem_response

log = logging.getLogger(__name__)
WARN_EVERY_S = 60.0


class TenantRateLimit:
    """Count every request of a tenant against RATE_LIMIT; past it, 429 problem+json with Retry-After."""

    def __init__(
        self, app: ASGIApp, settings: Any, is_public: Callable[[str], bool] = lambda _: False
    ) -> None:
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        self.app, self.is_public = app, is_public
        self.items = sorted(parse_rate_limit(settings.rate_limit), key=lambda item: item.get_expiry())
        url = storage_url(settings)
        self.in_memory = url.startswith("memory://")
        self.limiter = MovingWindowRateLimiter(storage_from_string(url)) if self.items else None
        # One deployment's counts apart from another's on a shared Redis (the queue names the deployment).
        self.namespace = ("synthaudit", str(settings.celery_queue))
        self._last_warning = -math.inf

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tenant = scope.get("state", {}).get("tenant") if scope["type"] == "http" else None
        if self.limiter is None or tenant is None or self.is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.in_memory:
            refused = self._check(str(tenant))
        else:  # a network round trip: off the event loop
            refused = await to_thread.run_sync(self._check, str(tenant))
        if refused is None:
            await self.app(scope, receive, send)
            return
        item, retry_after = refused
        detail = f"too many requests: this tenant's limit is {item} (RATE_LIMIT); retry in {retry_after} s"
        response = problem_response(
            429, detail, type_=TYPE_PREFIX + "rate-limited", instance=scope["path"], retry_after_s=retry_after
        )
        response.headers["Retry-After"] = str(retry_after)
        await response(scope, receive, send)

    def _check(self, tenant: str) -> tuple[Any, int] | None:
        """Count one request; (the limit passed, seconds until a slot frees) when it is refused."""
        assert self.limiter is not None
        try:
            for item in self.items:  # shortest window first: a refusal there costs the others nothing
                if not self.limiter.hit(item, *self.namespace, tenant):
                    reset = self.limiter.get_window_stats(item, *self.namespace, tenant).reset_time
                    return item, max(1, math.ceil(reset - time.time()))
        except Exception as exc:  # noqa: BLE001 - the counts' storage is down: let the request through
            if time.monotonic() - self._last_warning > WARN_EVERY_S:
                self._last_warning = time.monotonic()
                log.warning("rate limits not checked: their storage is unavailable (%s)", type(exc).__name__)
        return None

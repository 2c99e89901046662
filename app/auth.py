"""API-key authentication: an ASGI middleware that resolves `Authorization: Bearer <key>` (or
`X-API-Key`) to a tenant before any request body is read, and the `TenantDep` the routes use.

Every path except the probes and the API documentation needs a valid key, with one exception: the
key-less local mode (Settings.keyless_local: the embedded mode unless AUTH_REQUIRED says otherwise),
which serves requests without a key only when they come over a loopback socket and pass the guards of
app/local_mode.py (Host, Origin, Sec-Fetch-Site, proxy headers); they act as the tenant `default`. A key
that is presented anyway must still be valid. `/metrics` needs an operator key
(`synthaudit keys create --operator`), which reads nothing else.
"""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from synthaudit.app.core.db import session_scope
from synthaudit.app.core.tables import DEFAULT_TENANT
from synthaudit.app.deps import Services
from synthaudit.app.local_mode import refusal, served_over_loopback
from synthaudit.app.problems import problem_response
from synthaudit.app.services.keys import OPERATOR_TENANT, tenant_of

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
DOCS_ASSETS = "/docs/assets"  # Swagger UI and ReDoc scripts and styles (app/main.py), public like the docs
METRICS_PATH = "/metrics"
OPERATOR_KEY_MISUSED = (
    "an operator key reads /metrics only: tenants' data needs a tenant's key "
    "(`synthaudit keys create --tenant NAME`)"
)
UNAUTHORIZED_TYPE = "urn:synthaudit:problem:unauthorized"
FORBIDDEN_TYPE = "urn:synthaudit:problem:forbidden"
OPERATOR_ONLY = (
    "/metrics shows every tenant's job counts: it needs an operator key (`synthaudit keys create --operator`)"
)

bearer_scheme = HTTPBearer(auto_error=False, description="an API key from `synthaudit keys create`")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key, another header")


def is_public(path: str) -> bool:
    """The probes, the OpenAPI document and the documentation pages with their assets."""
    return path in PUBLIC_PATHS or path.startswith(DOCS_ASSETS + "/")


def presented_key(headers: Headers) -> str | None:
    """The key of `Authorization: Bearer <key>`, else of `X-API-Key`; None when neither is sent."""
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    key = headers.get("x-api-key", "").strip()
    return key or None


class ApiKeyAuth:
    """Resolve the caller's tenant into scope["state"]["tenant"], or answer 401 problem+json."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app, self.services = app, services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        token = presented_key(headers)
        path = scope["path"]
        settings = self.services.settings
        if token is None and settings.keyless_local and served_over_loopback(scope):
            refused = refusal(scope, headers)
            if refused is not None:
                status, type_, detail = refused
                await problem_response(status, detail, type_=type_, instance=path)(scope, receive, send)
            elif path == METRICS_PATH:
                await self._refuse(scope, receive, send, OPERATOR_ONLY)
            else:
                await self._call(scope, receive, send, DEFAULT_TENANT)
            return
        if is_public(path):
            await self._call(scope, receive, send, DEFAULT_TENANT)
            return
        if token is None:
            detail = "an API key is required: send `Authorization: Bearer <key>`"
            await self._refuse(scope, receive, send, OPERATOR_ONLY if path == METRICS_PATH else detail)
            return
        try:
            tenant = await to_thread.run_sync(self._tenant_of, token)
        except Exception:  # noqa: BLE001 - the database is down: not the caller's fault
            response = problem_response(
                503, "the service cannot check API keys right now; retry later", instance=path
            )
            response.headers["Retry-After"] = "5"
            await response(scope, receive, send)
            return
        if tenant is None:
            await self._refuse(scope, receive, send, "the API key is not valid (unknown or revoked)")
            return
        if (path == METRICS_PATH) != (tenant == OPERATOR_TENANT):
            detail = OPERATOR_ONLY if path == METRICS_PATH else OPERATOR_KEY_MISUSED
            await problem_response(403, detail, type_=FORBIDDEN_TYPE, instance=path)(scope, receive, send)
            return
        await self._call(scope, receive, send, tenant)

    async def _call(self, scope: Scope, receive: Receive, send: Send, tenant: str) -> None:
        """Serve the request as the tenant (routes read it through TenantDep and pass it on)."""
        scope.setdefault("state", {})["tenant"] = tenant
        await self.app(scope, receive, send)

    def _tenant_of(self, token: str) -> str | None:
        """The key's tenant, in a unit of work of its own (committed: the key's last use)."""
        with session_scope(self.services.sessions) as session:
            return tenant_of(session, token)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, detail: str) -> None:
        response = problem_response(401, detail, type_=UNAUTHORIZED_TYPE, instance=scope["path"])
        response.headers["WWW-Authenticate"] = 'Bearer realm="synthaudit"'
        await response(scope, receive, send)


def current_tenant(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    _key: Annotated[str | None, Depends(api_key_scheme)],
) -> str:
    """The tenant the middleware resolved (the two schemes are declared for the OpenAPI document)."""
    return str(request.state.tenant)


TenantDep = Annotated[str, Depends(current_tenant)]

"""create_app(): settings, database, storage, job dispatcher, routers and problem+json handlers."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from synthaudit import __version__
from synthaudit.app.auth import DOCS_ASSETS, ApiKeyAuth, is_public
from synthaudit.app.composition import make_dispatcher
from synthaudit.app.core.config import Settings, get_settings, is_loopback
from synthaudit.app.core.db import make_engine, make_session_factory
from synthaudit.app.core.home import prepare_home, resolve_group_key_secret
from synthaudit.app.core.migrations import ensure_schema
from synthaudit.app.core.storage import Storage
from synthaudit.app.deps import Services
from synthaudit.app.limits import UploadSizeLimit
from synthaudit.app.observability import install_observability
from synthaudit.app.problems import UnexpectedErrors, install_problem_handlers
from synthaudit.app.rate_limits import TenantRateLimit
from synthaudit.app.routes import audits, comparisons, datasets, encoders, health, reports

log = logging.getLogger("synthaudit")


def configure_logging(level: str) -> None:
    """Log the service's own messages (ids and counts only, never image contents or metadata)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("synthaudit", "app", "worker"):
        logging.getLogger(name).setLevel(level.upper())


def describe_auth(settings: Settings, bound: tuple[str, int] | None = None) -> str:
    """One line saying when API keys are required, and why (bound: the listening socket, when known)."""
    if not settings.keyless_local:
        return "API keys required (create one with `synthaudit keys create --tenant NAME`)"
    if bound is not None and not is_loopback(bound[0]):
        return (
            f"API keys required: bound to {bound[0]}, not a loopback address (create one with "
            "`synthaudit keys create --tenant NAME`)"
        )
    why = "embedded mode" if settings.auth_required is None else "AUTH_REQUIRED=false"
    where = f"bound to {bound[0]}:{bound[1]}" if bound is not None else "over a loopback socket"
    return (
        f"API keys are not required: {why} {where} (localhost only: requests naming another host, "
        "cross-site or proxied requests are refused); set AUTH_REQUIRED=true to require them"
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI app; the schema check, storage set-up and runner start happen in the lifespan."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    prepare_home(settings)  # private folders and SQLite file before anything is created in them
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    storage = Storage(settings.storage)
    services = Services(settings, engine, sessions, storage, make_dispatcher(settings, sessions, storage))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        os.umask(0o077)  # what the server writes later (audit work folders, reports) is private too
        # The embedded SQLite migrates itself; any other database must already be at head.
        ensure_schema(settings.database_url, engine, auto_upgrade=settings.is_sqlite)
        resolve_group_key_secret(settings)  # refuses to start outside the embedded mode without one
        storage.ensure()
        services.dispatcher.start()
        log.info("synthaudit API: %s", settings.describe_mode())
        log.info("synthaudit API: %s", describe_auth(settings))
        try:
            yield
        finally:
            services.dispatcher.stop()
            engine.dispose()

    # The docs pages' scripts and styles come from the fastapi-offline package, not a CDN.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
        title="synthaudit",
        version=__version__,  # the package metadata: the same as `synthaudit --version` and /healthz
        summary="Audit synthetic medical images for training-data leakage.",
        lifespan=lifespan,
        form_limits={"max_files": settings.max_files_per_upload, "max_fields": 20},
    )
    app.state.services = services
    install_problem_handlers(app)
    app.add_middleware(
        UploadSizeLimit,
        max_bytes=settings.max_upload_bytes,
        paths=("/v1/datasets",),
        other_max_bytes=settings.max_json_bytes,
    )
    app.add_middleware(TenantRateLimit, settings=settings, is_public=is_public)  # after the key check
    app.add_middleware(ApiKeyAuth, services=services)  # no body is read before the key check
    install_observability(app, services, settings.log_format)  # request ids, GET /metrics, JSON logs
    app.add_middleware(UnexpectedErrors)  # outermost: errors logged without their messages
    for router in (
        health.router,
        datasets.router,
        audits.router,
        reports.router,
        encoders.router,
        comparisons.router,
    ):
        app.include_router(router)
    return app


def app_factory() -> FastAPI:
    """`uvicorn --factory app.main:app_factory`."""
    return create_app()

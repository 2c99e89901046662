"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from synthaudit.app.deps import ServicesDep
from synthaudit.app.problems import problem_response
from synthaudit.app.routes.common import problems
from synthaudit.app.schemas import Health, Readiness
from synthaudit.app.services.health import readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health()


@router.get("/readyz", response_model=Readiness, responses=problems(503))
def readyz(services: ServicesDep) -> Readiness | JSONResponse:
    """The database, the broker (or embedded runner) and the storage are reachable."""
    checks = readiness(services)
    if all(v == "ok" for v in checks.values()):
        return Readiness(status="ok", checks=checks)
    failing = ", ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")
    return problem_response(
        503,
        f"not ready: {failing}",
        type_="urn:synthaudit:problem:not-ready",
        instance="/readyz",
        checks=checks,
    )

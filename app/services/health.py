"""Readiness: can the service reach its database, its job runner (broker) and its storage?"""

from __future__ import annotations

from synthaudit.app.core import repository as repo
from synthaudit.app.deps import Services


def readiness(services: Services) -> dict[str, str]:
    """'ok' or a short error per dependency (no secrets: exception types only)."""
    checks: dict[str, str] = {}
    try:
        repo.ping(services.engine)
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["database"] = f"unreachable ({type(exc).__name__})"
    runner = "broker" if services.dispatcher.mode == "celery" else "runner"
    try:
        services.dispatcher.check()
        checks[runner] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks[runner] = f"unreachable ({type(exc).__name__})"
    try:
        services.storage.check_writable()
        checks["storage"] = "ok"
    except OSError as exc:
        checks["storage"] = f"not writable ({type(exc).__name__})"
    return checks

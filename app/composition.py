"""The composition root of the API process: which Dispatcher runs its jobs.

With a broker configured the API only sends tasks by name (app/core/jobs.py) and never imports
`worker`; in the embedded mode it runs them itself on the worker/runner.py thread. No other module
of the web tier decides this.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from synthaudit.app.core.config import Settings
from synthaudit.app.core.jobs import CeleryDispatcher, Dispatcher
from synthaudit.app.core.storage import Storage


def make_dispatcher(settings: Settings, sessions: sessionmaker[Session], storage: Storage) -> Dispatcher:
    """Celery when CELERY_BROKER_URL is set, else the embedded runner."""
    if settings.embedded:
        from synthaudit.worker.runner import (
            EmbeddedDispatcher,
        )  # the embedded mode runs the workers' code in-process

        return EmbeddedDispatcher(settings, sessions, storage)
    return CeleryDispatcher(settings)

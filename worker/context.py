"""What every worker piece needs besides a job id: the settings, database sessions and storage."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from synthaudit.app.core.config import Settings
from synthaudit.app.core.db import make_engine, make_session_factory
from synthaudit.app.core.storage import Storage


@dataclass
class WorkerContext:
    """What a stage needs besides the audit id."""

    settings: Settings
    sessions: sessionmaker[Session]
    storage: Storage

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerContext:
        """A context on its own engine (one per process: build it after the worker forked)."""
        return cls(
            settings, make_session_factory(make_engine(settings.database_url)), Storage(settings.storage)
        )

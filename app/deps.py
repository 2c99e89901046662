"""Request dependencies as `Annotated` aliases: settings, database session, storage, dispatcher."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from synthaudit.app.core.config import Settings
from synthaudit.app.core.db import session_scope
from synthaudit.app.core.jobs import Dispatcher
from synthaudit.app.core.storage import Storage


@dataclass
class Services:
    """Process-wide objects, built once by create_app and kept on app.state."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: Storage
    dispatcher: Dispatcher


def get_services(request: Request) -> Services:
    """The process-wide services of the app serving the request."""
    return request.app.state.services


def get_session(request: Request) -> Iterator[Session]:
    """One session per request, one unit of work: committed once the route has returned, rolled back on
    an error. (Services commit earlier only where an ordering needs it, e.g. before a job is queued.)"""
    with session_scope(get_services(request).sessions) as session:
        yield session


ServicesDep = Annotated[Services, Depends(get_services)]
# scope="function": the commit runs before the response is sent, so a failed commit is the response.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_settings_dep(services: ServicesDep) -> Settings:
    return services.settings


def get_storage(services: ServicesDep) -> Storage:
    return services.storage


def get_dispatcher(services: ServicesDep) -> Dispatcher:
    return services.dispatcher


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StorageDep = Annotated[Storage, Depends(get_storage)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]

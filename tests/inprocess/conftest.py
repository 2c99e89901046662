"""The in-process tier: the real app on its embedded default (SQLite, local storage, the runner thread)
driven through Starlette's TestClient, no server process and no network: seconds, not minutes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from inprocess_app import GROUP_KEY_SECRET, InProcess


@pytest.fixture(scope="module")
def inproc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    """create_app() on a fresh SQLite home with keys required, and keys for tenants a and b."""
    from synthaudit.app.core.config import Settings
    from synthaudit.app.core.db import make_engine, make_session_factory, session_scope
    from synthaudit.app.core.migrations import ensure_schema
    from synthaudit.app.main import create_app
    from synthaudit.app.services.keys import create_key

    home: Path = tmp_path_factory.mktemp("inprocess-home")
    settings = Settings(synthaudit_home=home, auth_required=True, group_key_secret=GROUP_KEY_SECRET)
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:  # the lifespan migrates the SQLite file
        engine = make_engine(settings.database_url)
        ensure_schema(settings.database_url, engine, auto_upgrade=True)
        with session_scope(make_session_factory(engine)) as session:
            keys = {tenant: create_key(session, tenant).token for tenant in ("a", "b")}
        engine.dispose()
        yield InProcess(client, keys)

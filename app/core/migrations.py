"""Run and check the Alembic migrations programmatically (no alembic.ini or working directory needed)."""

from __future__ import annotations

import os
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from alembic import command
from synthaudit.app.core.db import make_engine, normalise_url

# synthaudit/alembic: the repository's alembic/ folder (a link in the source tree, a copy once installed)
PACKAGE_ROOT = Path(__file__).parents[2]


class SchemaOutOfDate(RuntimeError):
    """The database is not at the migration head the code expects."""


def script_location() -> Path:
    """The alembic/ folder: $SYNTHAUDIT_ALEMBIC_DIR, else the one the synthaudit package carries."""
    location = Path(os.environ.get("SYNTHAUDIT_ALEMBIC_DIR") or PACKAGE_ROOT / "alembic")
    if not (location / "env.py").exists():
        raise FileNotFoundError(
            f"no Alembic scripts at {location}: "
            "set SYNTHAUDIT_ALEMBIC_DIR to the repository's alembic/ folder"
        )
    return location


def alembic_config(url: str) -> Config:
    """An Alembic Config pointing at our scripts and the given database URL."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = normalise_url(url)
    config.attributes["configure_logger"] = False
    return config


def upgrade_head(url: str) -> tuple[str | None, str | None]:
    """Bring the database to the head revision; return (revision before, revision after)."""
    before = current_revision(url)
    command.upgrade(alembic_config(url), "head")
    return before, current_revision(url)


def downgrade(url: str, revision: str = "base") -> None:
    """Step the database down to a revision (tests and emergencies only)."""
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    """The newest revision in alembic/versions."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str, engine: Engine | None = None) -> str | None:
    """The revision the database is at (None for an empty database)."""
    own = engine is None
    engine = engine or make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        if own:
            engine.dispose()


def ensure_schema(url: str, engine: Engine | None = None, *, auto_upgrade: bool) -> None:
    """Migrate (auto_upgrade, the embedded SQLite) or refuse to run against an out-of-date database."""
    if auto_upgrade:
        upgrade_head(url)
        return
    current, head = current_revision(url, engine), head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"the database is at migration {current or 'none (empty)'} but this version of synthaudit needs "
            f"{head}: run `synthaudit migrate` (or `alembic upgrade head`) with the same DATABASE_URL first"
        )

"""Alembic environment: the URL comes from the caller (app.core.migrations) or from the settings (DATABASE_URL)."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from synthaudit.app.core import tables  # noqa: F401  (registers the tables on Base.metadata)
from synthaudit.app.core.config import get_settings
from synthaudit.app.core.db import Base, make_engine, normalise_url

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url() -> str:
    """The URL handed in by app.core.migrations, else DATABASE_URL from the settings."""
    return normalise_url(config.attributes.get("database_url") or get_settings().database_url)


def run_migrations_offline() -> None:
    """Emit SQL to stdout (alembic upgrade head --sql)."""
    context.configure(
        url=database_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through a live connection (the caller's when it passes one)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(database_url())
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

"""Alembic on a real Postgres: upgrade → downgrade → upgrade, the models match the migrations,
`alembic` and `synthaudit migrate` work from the command line, and the API refuses an out-of-date database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect

from synthaudit.app.core.db import Base, make_engine
from synthaudit.app.core.migrations import (
    SchemaOutOfDate,
    current_revision,
    downgrade,
    ensure_schema,
    head_revision,
    upgrade_head,
)

TABLES = {"datasets", "images", "audits", "audit_results", "audit_metrics"}


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(empty_pg_url: str) -> None:
    assert current_revision(empty_pg_url) is None
    assert upgrade_head(empty_pg_url) == (None, head_revision())
    assert tables(empty_pg_url) >= TABLES
    downgrade(empty_pg_url, "base")
    assert tables(empty_pg_url) == {"alembic_version"}
    assert current_revision(empty_pg_url) is None
    upgrade_head(empty_pg_url)
    assert tables(empty_pg_url) >= TABLES
    assert current_revision(empty_pg_url) == head_revision()


def test_migrations_match_the_orm_tables(pg_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
    finally:
        engine.dispose()
    assert diff == []


def test_sqlite_migrates_itself_and_postgres_must_be_at_head(empty_pg_url: str, tmp_path: Path) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'x.db'}"
    ensure_schema(sqlite_url, auto_upgrade=True)
    assert current_revision(sqlite_url) == head_revision()
    with pytest.raises(SchemaOutOfDate, match="synthaudit migrate"):
        ensure_schema(empty_pg_url, auto_upgrade=False)


def test_alembic_cli_and_synthaudit_migrate(empty_pg_url: str, proc_tools) -> None:
    env, repo = proc_tools.clean_env(DATABASE_URL=empty_pg_url), proc_tools.repo
    alembic = [sys.executable, "-m", "alembic"]
    run = subprocess.run([*alembic, "upgrade", "head"], cwd=repo, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert current_revision(empty_pg_url) == head_revision()
    subprocess.run([*alembic, "downgrade", "base"], cwd=repo, env=env, check=True, capture_output=True)
    run = subprocess.run(
        [sys.executable, "-c", "from synthaudit.app.cli import main; raise SystemExit(main(['migrate']))"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "upgraded from empty to" in run.stdout
    assert current_revision(empty_pg_url) == head_revision()


def test_api_refuses_to_start_on_an_unmigrated_postgres(
    empty_pg_url: str, redis_url: str, proc_tools
) -> None:
    env = proc_tools.clean_env(DATABASE_URL=empty_pg_url, CELERY_BROKER_URL=redis_url)
    port = proc_tools.free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "synthaudit.app.main:app_factory",
        "--port",
        str(port),
    ]
    run = subprocess.run(argv, cwd=proc_tools.repo, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "synthaudit migrate" in run.stderr


def _populate_at_0002(url: str) -> None:
    """One dataset with an image, one audit with two result rows and metrics, written as of revision 0002."""
    import uuid
    from datetime import UTC, datetime

    from sqlalchemy import text

    engine = make_engine(url)
    now = datetime.now(UTC)
    dataset, audit = uuid.uuid4().hex, uuid.uuid4().hex
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO datasets (id, role, name, image_count, total_bytes, rejected, created_at, "
                    "tenant) VALUES (:id, 'real', 'd', 1, 10, '[]', :now, 'default')"
                ),
                {"id": dataset, "now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO images (dataset_id, name, file_name, sha256, size_bytes, role) "
                    "VALUES (:d, 'a', 'a.png', :h, 10, 'real')"
                ),
                {"d": dataset, "h": "0" * 64},
            )
            conn.execute(
                text(
                    "INSERT INTO audits (id, real_dataset_id, generated_dataset_id, config, status, progress, "
                    "stage_timings, created_at, updated_at, tenant) VALUES (:id, :d, :d, '{}', 'succeeded', "
                    "100, '{}', :now, :now, 'default')"
                ),
                {"id": audit, "d": dataset, "now": now},
            )
            for position in (0, 1):
                conn.execute(
                    text(
                        "INSERT INTO audit_results (audit_id, position, image_name, used, score, "
                        "nearest_generated, similarities) VALUES (:a, :p, 'a', 1, 0.5, '[]', '[]')"
                    ),
                    {"a": audit, "p": position},
                )
            conn.execute(
                text(
                    "INSERT INTO audit_metrics (audit_id, threshold, decision_rule, counts, rejected, "
                    "created_at) VALUES (:a, 0.5, 'prior', '{}', '{}', :now)"
                ),
                {"a": audit, "now": now},
            )
    finally:
        engine.dispose()


def _row_counts(url: str) -> dict[str, int]:
    from sqlalchemy import text

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in sorted(TABLES)
            }
    finally:
        engine.dispose()


def test_sqlite_upgrade_keeps_every_stored_row(tmp_path: Path) -> None:
    """SQLite rebuilds tables to alter them; with foreign keys enforced that used to cascade and delete
    results (0003) or images (0005). An embedded database upgraded in place loses nothing."""
    from alembic import command
    from synthaudit.app.core.migrations import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0002")
    _populate_at_0002(url)
    before = _row_counts(url)
    assert before == {"audit_metrics": 1, "audit_results": 2, "audits": 1, "datasets": 1, "images": 1}
    upgrade_head(url)
    assert _row_counts(url) == before
    downgrade(url, "0004")
    upgrade_head(url)
    assert _row_counts(url) == before

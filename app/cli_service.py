"""The service subcommands of `synthaudit`: serve, migrate, worker (registered by app/cli.py)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def add_service_commands(subparsers: Any) -> None:
    """Register `serve`, `migrate` and `worker` on the CLI's subparsers."""
    serve = subparsers.add_parser(
        "serve", help="run the REST API (embedded SQLite + in-process runner by default)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default=None, help="uvicorn log level (default: LOG_LEVEL or info)")
    serve.set_defaults(func=cmd_serve)

    migrate = subparsers.add_parser("migrate", help="bring the database (DATABASE_URL) to the newest schema")
    migrate.set_defaults(func=cmd_migrate)

    worker = subparsers.add_parser("worker", help="run a Celery worker for audits (needs CELERY_BROKER_URL)")
    worker.add_argument("--concurrency", type=int, default=1, help="audits at once (1 per GPU)")
    worker.add_argument(
        "--pool",
        default="prefork",
        choices=["prefork", "solo", "threads"],
        help="prefork enforces the hard time limits; solo for debugging",
    )
    worker.add_argument("--queues", "-Q", default=None, help="queues to consume (default: CELERY_QUEUE)")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(func=cmd_worker)

    keys = subparsers.add_parser("keys", help="manage API keys (each key belongs to one tenant)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key; the secret is printed once")
    owner = create.add_mutually_exclusive_group(required=True)
    owner.add_argument("--tenant", help="the tenant that owns the key's datasets and audits")
    owner.add_argument(
        "--operator", action="store_true", help="an operator key: reads /metrics (every tenant's counts) only"
    )
    create.add_argument("--name", default=None, help="a note to recognise the key by")
    create.set_defaults(func=cmd_keys_create)
    listing = keys_sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--tenant", default=None)
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id (at least 8 characters)")
    revoke.add_argument("id")
    revoke.set_defaults(func=cmd_keys_revoke)


def cmd_serve(args: argparse.Namespace) -> int:
    """uvicorn on the app, on a socket bound here (what it is bound to, not a setting, says whether API
    keys may be skipped); the lifespan migrates (SQLite) or checks (other databases) the schema."""
    import uvicorn

    from synthaudit.app.core.config import get_settings
    from synthaudit.app.core.home import MissingSecret, prepare_home, resolve_group_key_secret
    from synthaudit.app.core.migrations import SchemaOutOfDate, ensure_schema

    get_settings.cache_clear()
    settings = get_settings()
    print(f"synthaudit serve: {settings.describe_mode()}", flush=True)
    try:
        prepare_home(settings)
        ensure_schema(settings.database_url, auto_upgrade=settings.is_sqlite)
        resolve_group_key_secret(settings)
    except (SchemaOutOfDate, MissingSecret) as exc:
        print(f"synthaudit: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        "synthaudit.app.main:app_factory",
        factory=True,
        host=args.host,
        port=args.port,
        log_level=(args.log_level or settings.log_level).lower(),
        workers=1,
    )
    sock = config.bind_socket()
    bound = sock.getsockname()[:2]
    from synthaudit.app.main import describe_auth

    print(f"synthaudit serve: {describe_auth(settings, bound)}", flush=True)
    host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    print(f"synthaudit serve: http://{host}:{bound[1]} (OpenAPI at /docs)", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """alembic upgrade head on DATABASE_URL."""
    from synthaudit.app.core.config import get_settings, redact_url
    from synthaudit.app.core.home import prepare_home
    from synthaudit.app.core.migrations import upgrade_head

    settings = get_settings()
    prepare_home(settings)  # a SQLite file is created private
    before, after = upgrade_head(settings.database_url)
    where = redact_url(settings.database_url)
    if before == after:
        print(f"synthaudit migrate: {where} already at {after}")
    else:
        print(f"synthaudit migrate: {where} upgraded from {before or 'empty'} to {after}")
    return 0


def worker_argv(args: argparse.Namespace, queue: str) -> list[str]:
    """The celery command line `synthaudit worker` runs."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "synthaudit.worker.celery_app",
        "worker",
        "--concurrency",
        str(args.concurrency),
        "--pool",
        args.pool,
        "-Q",
        args.queues or queue,
        "--loglevel",
        args.loglevel,
    ]


def cmd_worker(args: argparse.Namespace) -> int:
    """Replace this process with a Celery worker (so signals reach Celery directly)."""
    from synthaudit.app.core.config import get_settings

    settings = get_settings()
    if settings.embedded:
        print(
            "synthaudit worker: CELERY_BROKER_URL is not set; in embedded mode `synthaudit serve` runs "
            "audits itself",
            file=sys.stderr,
        )
        return 2
    argv = worker_argv(args, settings.celery_queue)
    print(f"synthaudit worker: {settings.describe_mode()}", flush=True)
    sys.stdout.flush()
    os.execv(argv[0], argv)
    return 0  # pragma: no cover


def _key_sessions():
    """A session factory on DATABASE_URL (the embedded SQLite is migrated first, as `serve` does)."""
    from synthaudit.app.core.config import get_settings
    from synthaudit.app.core.db import make_engine, make_session_factory
    from synthaudit.app.core.home import prepare_home
    from synthaudit.app.core.migrations import ensure_schema

    settings = get_settings()
    prepare_home(settings)
    ensure_schema(settings.database_url, auto_upgrade=settings.is_sqlite)
    return make_session_factory(make_engine(settings.database_url))


def cmd_keys_create(args: argparse.Namespace) -> int:
    """Print a new key for the tenant (only its hash is stored: it cannot be shown again)."""
    from synthaudit.app.core.db import session_scope
    from synthaudit.app.services.keys import KeyCommandError, create_key

    try:
        with session_scope(_key_sessions()) as session:
            key = create_key(session, args.tenant, args.name, operator=args.operator)
    except KeyCommandError as exc:
        print(f"synthaudit keys: {exc}", file=sys.stderr)
        return 2
    print(f"id:     {key.id}\ntenant: {key.tenant}\nkey:    {key.token}", file=sys.stderr)
    print("(store the key now: only its hash is kept)", file=sys.stderr)
    print(key.token)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from synthaudit.app.core.db import session_scope
    from synthaudit.app.services.keys import list_keys

    with session_scope(_key_sessions()) as session:
        keys = list_keys(session, args.tenant)
    print(f"{'id':36}  {'tenant':20}  {'prefix':12}  {'created':19}  {'last used':19}  status  name")
    for k in keys:
        status = "revoked" if k.revoked_at else "active"
        used = f"{k.last_used_at:%Y-%m-%d %H:%M:%S}" if k.last_used_at else "-"
        print(
            f"{k.id!s:36}  {k.tenant:20}  {k.prefix:12}  {k.created_at:%Y-%m-%d %H:%M:%S}  {used:19}  "
            f"{status:7} {k.name or ''}"
        )
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from synthaudit.app.core.db import session_scope
    from synthaudit.app.services.keys import KeyCommandError, revoke_key

    try:
        with session_scope(_key_sessions()) as session:
            changed = revoke_key(session, args.id)
    except KeyCommandError as exc:
        print(f"synthaudit keys: {exc}", file=sys.stderr)
        return 2
    print("revoked" if changed else "already revoked")
    return 0

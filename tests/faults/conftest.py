"""Fault-injection fixtures: a private Postgres cluster and a private Redis (real servers, started for this
module so that restarting them disturbs no other test), an API on them, and Celery workers (prefork, the
production pool) that the tests kill with SIGKILL and start again.

Timings are shortened through the settings every deployment has: HEARTBEAT_INTERVAL_S=0.5,
ORPHAN_AFTER_S=3, RECOVERY_INTERVAL_S=1 (production: 10 s, 120 s, 30 s).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAULT_TIMINGS = {
    "HEARTBEAT_INTERVAL_S": "0.5",
    "ORPHAN_AFTER_S": "3",
    "RECOVERY_INTERVAL_S": "1",
    "PROGRESS_INTERVAL_S": "0.2",
    "TASK_MAX_RETRIES": "12",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError(f"no {what} after {timeout} s")


# --- a private Redis --------------------------------------------------------------------------------


@dataclass
class PrivateRedis:
    """redis-server on a free port, without persistence (a restart loses every message, as in CI)."""

    root: Path
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen | None = None  # type: ignore[type-arg]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        argv += ["--dir", str(self.root)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        _wait(lambda: redis.Redis(port=self.port).ping(), 20, "redis answering")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            subprocess.run(
                ["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True, check=False
            )
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


# --- a private Postgres -----------------------------------------------------------------------------


@dataclass
class PrivatePostgres:
    """A throw-away Postgres cluster (initdb) on a free port, run as the `postgres` user when root."""

    root: Path
    port: int = field(default_factory=_free_port)

    def _bin(self, name: str) -> str:
        found = shutil.which(name)
        if found:
            return found
        for version in sorted(Path("/usr/lib/postgresql").glob("*"), reverse=True):
            if (version / "bin" / name).exists():
                return str(version / "bin" / name)
        pytest.fail(f"{name} not found: the fault suite needs the Postgres server binaries")

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(prefix + list(argv), check=True, capture_output=True, timeout=60)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self._run(
            self._bin("initdb"),
            "-D",
            str(self.data),
            "--auth=trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            self._bin("pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run(self._bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def restart(self) -> None:
        self.stop()
        self.start()


# --- processes --------------------------------------------------------------------------------------


class Child:
    """A subprocess in its own process group (so a SIGKILL reaches the Celery pool children too)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self._fh = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv, env=env, cwd=REPO, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill_group(self) -> None:
        """SIGKILL the whole process group, as a machine losing power would."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.kill_group()
        self._fh.close()


@dataclass
class FaultEnv:
    """The private services, the API on them, and a way to start workers."""

    env: dict[str, str]
    redis: PrivateRedis
    postgres: PrivatePostgres
    database_url: str
    storage: Path
    hold_dir: Path
    logs: Path
    api_url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    workers: list[Child] = field(default_factory=list)

    def start_worker(self, *, pool: str = "prefork", extra_env: dict[str, str] | None = None) -> Child:
        argv = [
            sys.executable,
            str(REPO / "tests" / "faults" / "hold_worker.py"),
            "--pool",
            pool,
            "--concurrency",
            "1",
            "-Q",
            self.env["CELERY_QUEUE"],
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"fault-{uuid.uuid4().hex[:6]}@%h",
        ]
        env = {**self.env, **(extra_env or {})}
        worker = Child("celery worker", argv, env, self.logs / f"worker-{len(self.workers)}.log")
        self.workers.append(worker)
        _wait(lambda: " ready." in worker.output() or worker.popen.poll() is not None, 120, "worker ready")
        assert worker.popen.poll() is None, worker.output()[-3000:]
        return worker

    def live_workers(self) -> list[Child]:
        return [w for w in self.workers if w.popen.poll() is None]

    def hold(self, *stages: str) -> None:
        for path in self.hold_dir.iterdir():
            path.unlink()
        for stage in stages:
            (self.hold_dir / stage).touch()

    def workdir(self, audit_id: str) -> Path:
        return self.storage / "audits" / audit_id


def _create_database(admin_url: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text('CREATE DATABASE "synthaudit_faults"'))
    finally:
        engine.dispose()
    return make_url(admin_url).set(database="synthaudit_faults").render_as_string(hide_password=False)


def _api_key(database_url: str, tenant: str) -> str:
    from synthaudit.app.core.db import make_engine, make_session_factory, session_scope
    from synthaudit.app.services.keys import create_key

    engine = make_engine(database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return create_key(session, tenant).token
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultEnv]:
    """Private Postgres + Redis + the API (uvicorn) on them; workers are started by the tests."""
    import httpx

    from synthaudit.app.core.migrations import upgrade_head

    root = tmp_path_factory.mktemp("faults")
    logs = root / "logs"
    logs.mkdir()
    redis_server = PrivateRedis(root / "redis")
    redis_server.root.mkdir()
    # Outside pytest's private temp folder: the `postgres` user must be able to reach the cluster.
    pg_root = Path(tempfile.mkdtemp(prefix="synthaudit-faults-pg-"))
    postgres = PrivatePostgres(pg_root)
    postgres.init()
    postgres.start()
    redis_server.start()
    api: Child | None = None
    fault_env: FaultEnv | None = None
    try:
        database_url = _create_database(postgres.admin_url)
        upgrade_head(database_url)
        storage = root / "storage"
        hold_dir = root / "hold"
        hold_dir.mkdir()
        settings_env = ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_QUEUE", "STORAGE_DIR", "SYNTHAUDIT_HOME")
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in settings_env and not k.startswith(("MAX_", "STAGE_"))
        }
        env.update(
            DATABASE_URL=database_url,
            CELERY_BROKER_URL=redis_server.url,
            CELERY_QUEUE="faults",
            STORAGE_DIR=str(storage),
            SYNTHAUDIT_HOME=str(root / "home"),
            SYNTHAUDIT_TEST_HOLD_DIR=str(hold_dir),
            PYTHONUNBUFFERED="1",
            LOG_LEVEL="INFO",
            AUTH_REQUIRED="true",
            GROUP_KEY_SECRET="synthaudit-faults-group-key-secret",
            **FAULT_TIMINGS,
        )
        fault_env = FaultEnv(env, redis_server, postgres, database_url, storage, hold_dir, logs)
        port = _free_port()
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "synthaudit.app.main:app_factory",
            "--host",
            "127.0.0.1",
        ]
        api = Child("uvicorn", [*argv, "--port", str(port), "--log-level", "warning"], env, logs / "api.log")
        fault_env.api_url = f"http://127.0.0.1:{port}"
        _wait(lambda: httpx.get(f"{fault_env.api_url}/readyz", timeout=2).status_code == 200, 60, "API ready")
        fault_env.headers = {"Authorization": f"Bearer {_api_key(database_url, 'faults')}"}
        yield fault_env
    finally:
        for child in [*(fault_env.workers if fault_env else []), *([api] if api else [])]:
            child.stop()
        redis_server.stop()
        try:
            postgres.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(pg_root, ignore_errors=True)


@pytest.fixture()
def fault_client(faults: FaultEnv) -> Iterator[object]:
    import httpx

    with httpx.Client(base_url=faults.api_url, timeout=60.0, headers=faults.headers) as client:
        yield client

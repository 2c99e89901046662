"""Service test fixtures: a fresh Postgres database per run (migrated with Alembic), a Redis db, a real
Celery worker subprocess and uvicorn servers in subprocesses (distributed and embedded), reached over HTTP.

Nothing is mocked. Postgres (127.0.0.1:5432) and Redis (127.0.0.1:6379) must be up:
`bash scripts/ensure_services.sh` (the Makefile's `services` target) starts them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get(
    "SYNTHAUDIT_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_BASE = os.environ.get("SYNTHAUDIT_TEST_REDIS", "redis://127.0.0.1:6379")
REDIS_DB = int(os.environ.get("SYNTHAUDIT_TEST_REDIS_DB", "13"))
SETTINGS_ENV = (
    "AUTH_REQUIRED",
    "BIND_HOST",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_QUEUE",
    "STORAGE_DIR",
    "SYNTHAUDIT_HOME",
    "MAX_UPLOAD_BYTES",
    "RETENTION_DAYS",
    "PROGRESS_INTERVAL_S",
    "GROUP_KEY_SECRET",
)
# The patient-pseudonym secret of every server the tests start (required outside the embedded mode);
# a test pops it to see the embedded mode make its own.
TEST_GROUP_KEY_SECRET = "synthaudit-tests-group-key-secret-0123456789"


# --- Postgres and Redis -----------------------------------------------------------------------------


def _admin_engine():  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def create_database(prefix: str = "synthaudit_test") -> str:
    """CREATE DATABASE <prefix>_<random>; return its URL."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(
            f"Postgres at {PG_ADMIN_URL} is not usable ({exc}); run `bash scripts/ensure_services.sh`"
        )
    finally:
        engine.dispose()
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh Postgres database for this test run, migrated to head with Alembic; dropped at the end."""
    from synthaudit.app.core.migrations import upgrade_head

    url = create_database()
    try:
        upgrade_head(url)
        yield url
    finally:
        drop_database(url)


@pytest.fixture()
def empty_pg_url() -> Iterator[str]:
    """A fresh, empty (unmigrated) Postgres database; dropped after the test."""
    url = create_database("synthaudit_empty")
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A dedicated Redis db number, flushed at the start of the run."""
    import redis

    url = f"{REDIS_BASE}/{REDIS_DB}"
    try:
        redis.Redis.from_url(url).flushdb()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis at {REDIS_BASE} is not reachable ({exc}); run `bash scripts/ensure_services.sh`")
    return url


# --- subprocesses -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any synthaudit setting, plus the overrides."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    env["GROUP_KEY_SECRET"] = TEST_GROUP_KEY_SECRET
    env.update(overrides)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Proc:
    """A child process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self._fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(argv, env=env, cwd=REPO, stdout=self._fh, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.popen.returncode}) before {what}:\n{self.tail()}"
                )
            if check():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: no {what} after {timeout} s:\n{self.tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._fh.close()


@dataclass
class Server:
    """A uvicorn server in a subprocess; `headers` carry the API key its clients send (if any)."""

    url: str
    proc: Proc
    storage: Path
    env: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class MemoryRise:
    """How far a process's peak resident memory rose during a `memory_rise` block, in MiB."""

    pid: int
    start_kib: int = 0
    peak_kib: int = 0

    @property
    def mib(self) -> float:
        return (self.peak_kib - self.start_kib) / 1024


def vm_kib(pid: int, field: str) -> int:
    """A memory figure of /proc/<pid>/status in KiB (VmRSS: now, VmHWM: the peak)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field + ":")))


@contextmanager
def memory_rise(pid: int) -> Iterator[MemoryRise]:
    """Measure the rise of a process's (e.g. a server's: `server.proc.popen.pid`) peak memory over the
    block: its peak is reset to its current RSS first (Linux: `5` to /proc/<pid>/clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    rise = MemoryRise(pid, start_kib=vm_kib(pid, "VmRSS"))
    yield rise
    rise.peak_kib = vm_kib(pid, "VmHWM")


def create_api_key(database_url: str, tenant: str) -> str:
    """A new API key for the tenant, written straight into the database (as `synthaudit keys create`)."""
    from synthaudit.app.core.db import make_engine, make_session_factory, session_scope
    from synthaudit.app.services.keys import create_key

    engine = make_engine(database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return create_key(session, tenant, "tests").token
    finally:
        engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def start_server(env: dict[str, str], log: Path, storage: Path) -> Server:
    import httpx

    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "synthaudit.app.main:app_factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    proc = Proc("uvicorn", argv, env, log)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        proc.wait_for(up, 60, "an answer on /healthz")
    except BaseException:
        proc.stop()
        raise
    return Server(url, proc, storage, env)


@pytest.fixture(scope="session")
def distributed_env(pg_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Settings of the Postgres + Redis + Celery deployment under test."""
    home = tmp_path_factory.mktemp("distributed")
    return clean_env(
        DATABASE_URL=pg_url,
        CELERY_BROKER_URL=redis_url,
        CELERY_QUEUE=f"synthaudit-test-{uuid.uuid4().hex[:8]}",
        SYNTHAUDIT_HOME=str(home),
        STORAGE_DIR=str(home / "storage"),
        PROGRESS_INTERVAL_S="0.2",
        LOG_LEVEL="INFO",
    )


@pytest.fixture(scope="session")
def celery_worker(
    distributed_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proc]:
    """A real Celery worker (solo pool, one task at a time) on the test database, broker and storage."""
    log = tmp_path_factory.mktemp("logs") / "celery.log"
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "synthaudit.worker.celery_app",
        "worker",
        "--pool",
        "solo",
        "--concurrency",
        "1",
        "-Q",
        distributed_env["CELERY_QUEUE"],
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "-n",
        f"test-{uuid.uuid4().hex[:6]}@%h",
    ]
    proc = Proc("celery worker", argv, distributed_env, log)
    try:
        proc.wait_for(lambda: " ready." in proc.output(), 90, "'ready' in its log")
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def tenant_keys(pg_url: str) -> dict[str, str]:
    """API keys of two tenants on the test database: `a` (what `client` sends) and `b` (another tenant)."""
    return {"a": create_api_key(pg_url, "tenant-a"), "b": create_api_key(pg_url, "tenant-b")}


@pytest.fixture(scope="session")
def api(
    distributed_env: dict[str, str], tenant_keys: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """uvicorn on the distributed settings (Postgres, Redis broker); API keys required."""
    log = tmp_path_factory.mktemp("logs") / "api.log"
    server = start_server(distributed_env, log, Path(distributed_env["STORAGE_DIR"]))
    server.headers = bearer(tenant_keys["a"])
    yield server
    server.proc.stop()


@pytest.fixture(scope="session")
def embedded_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """uvicorn with no DATABASE_URL or broker: SQLite, local storage, in-process runner."""
    home = tmp_path_factory.mktemp("embedded")
    env = clean_env(
        SYNTHAUDIT_HOME=str(home),
        MAX_UPLOAD_BYTES="3000000",
        PROGRESS_INTERVAL_S="0.2",
        BIND_HOST="127.0.0.1",  # as `synthaudit serve` on localhost: no API keys needed
    )
    server = start_server(env, home / "api.log", home / "storage")
    yield server
    server.proc.stop()


@pytest.fixture()
def client(api: Server) -> Iterator[object]:
    """An HTTP client of tenant `a` on the distributed API."""
    import httpx

    with httpx.Client(base_url=api.url, timeout=60.0, headers=api.headers) as c:
        yield c


@pytest.fixture()
def other_client(api: Server, tenant_keys: dict[str, str]) -> Iterator[object]:
    """An HTTP client of tenant `b` on the same API."""
    import httpx

    with httpx.Client(base_url=api.url, timeout=60.0, headers=bearer(tenant_keys["b"])) as c:
        yield c


@pytest.fixture()
def embedded_client(embedded_api: Server) -> Iterator[object]:
    import httpx

    with httpx.Client(base_url=embedded_api.url, timeout=60.0) as c:
        yield c


# --- data -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def membership_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """20 real / 40 generated 32x32 PNGs; 8 generated images are exact copies of real ones (label 1)."""
    from synthetic_sets import make_membership_set

    root = tmp_path_factory.mktemp("membership")
    labels = make_membership_set(
        root, n_used=8, n_unused=12, n_fresh_generated=32, size=32, exact_copies=True
    )
    return root, labels


@pytest.fixture(scope="session")
def reference_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 fresh 32x32 PNGs (ref0001…) drawn like the membership set's unused real images: a reference set
    of known-not-used images (40 of them, so that conformal p-values can reach 1/41)."""
    import numpy as np
    from PIL import Image
    from synthetic_sets import random_image

    root = tmp_path_factory.mktemp("reference")
    rng = np.random.default_rng(2026)
    for i in range(40):
        Image.fromarray(random_image(rng, 32)).save(root / f"ref{i + 1:04d}.png")
    return root


# --- HTTP helpers -----------------------------------------------------------------------------------


class ApiHelpers:
    """Small client-side helpers shared by the service tests."""

    FINAL = ("succeeded", "failed", "cancelled")

    @staticmethod
    def pseudonym(raw: str, tenant: str = "default", kind: str = "patient") -> str:
        """The pseudonym a test server gives a raw DICOM identifier of this tenant (app.services.pseudonyms)."""
        from synthaudit.models.groups import pseudonym, tenant_key

        return pseudonym(kind, raw, tenant_key(TEST_GROUP_KEY_SECRET, tenant))

    @staticmethod
    def upload(client, role: str, paths: list[Path], **fields: str):  # type: ignore[no-untyped-def]
        """POST /v1/datasets with the files (multipart, one `files` part per path)."""
        handles = [open(p, "rb") for p in paths]  # noqa: SIM115
        try:
            files = [("files", (p.name, h, "application/octet-stream")) for p, h in zip(paths, handles)]
            return client.post("/v1/datasets", data={"role": role, **fields}, files=files)
        finally:
            for h in handles:
                h.close()

    @staticmethod
    def upload_set(client, root: Path) -> tuple[str, str]:  # type: ignore[no-untyped-def]
        """Upload root/real and root/generated; return (real id, generated id)."""
        ids = []
        for role, sub in (("real", "real"), ("generated", "generated")):
            response = ApiHelpers.upload(client, role, sorted((root / sub).glob("*.png")))
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        return ids[0], ids[1]

    @staticmethod
    def wait(
        client,
        audit_id: str,
        until: tuple[str, ...] = FINAL,
        timeout: float = 180.0,  # type: ignore[no-untyped-def]
        check: Callable[[dict], bool] | None = None,
    ) -> dict:
        """Poll GET /v1/audits/{id} until its status is in `until` (or `check` holds)."""
        deadline = time.monotonic() + timeout
        while True:
            body = client.get(f"/v1/audits/{audit_id}").json()
            if body.get("status") in until or (check is not None and check(body)):
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"audit {audit_id} still {body.get('status')} after {timeout} s: {body}")
            time.sleep(0.25)

    @staticmethod
    def outputs(client, audit_id: str) -> tuple[bytes, dict]:  # type: ignore[no-untyped-def]
        """results.csv (bytes) and the metrics JSON without its audit_id, of a succeeded audit."""
        results = client.get(f"/v1/audits/{audit_id}/results.csv")
        assert results.status_code == 200, results.text
        metrics = client.get(f"/v1/audits/{audit_id}/metrics")
        assert metrics.status_code == 200, metrics.text
        body = metrics.json()
        assert body.pop("audit_id") == audit_id
        return results.content, body

    @staticmethod
    def cli_outputs(arguments: list[str], folder: Path) -> tuple[bytes, dict]:
        """`synthaudit audit ARGUMENTS --out … --metrics …` run in-process: its results.csv (bytes) and its
        metrics file without audit_id (null there)."""
        import contextlib
        import io
        import json

        from synthaudit.app.cli import main

        folder.mkdir(parents=True, exist_ok=True)
        out, metrics = folder / "cli.csv", folder / "cli-metrics.json"
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["audit", *arguments, "--out", str(out), "--metrics", str(metrics)]) == 0
        document = json.loads(metrics.read_text())
        assert document.pop("audit_id") is None
        return out.read_bytes(), document


@pytest.fixture(scope="session")
def helpers() -> type[ApiHelpers]:
    return ApiHelpers


@pytest.fixture(scope="session")
def proc_tools() -> object:
    """Subprocess helpers for tests: repo root, a clean environment, a free port."""
    from types import SimpleNamespace

    return SimpleNamespace(
        repo=REPO,
        clean_env=clean_env,
        free_port=free_port,
        Proc=Proc,
        start_server=start_server,
        create_api_key=create_api_key,
        bearer=bearer,
        memory_rise=memory_rise,
    )


# --- test tiers ------------------------------------------------------------------------------------
# `pytest -m "not slow"` is the fast tier (about a minute): the models' unit tests, the CLI on small
# folders and the in-process app (tests/inprocess). Everything that starts real server, Celery worker or
# browser processes on Postgres and Redis is slow, by folder; a slow test elsewhere says so itself.
SLOW_FOLDERS = ("api", "worker", "faults")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_root = Path(__file__).resolve().parent
    for item in items:
        parts = Path(str(item.fspath)).resolve().relative_to(tests_root).parts
        if parts and parts[0] in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)

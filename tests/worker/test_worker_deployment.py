"""Deployment files without a Docker engine: docker-compose.yml and the Dockerfiles agree with the code,
and the Celery configuration has the settings long GPU tasks need."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from synthaudit.app.core.config import Settings

REPO = Path(__file__).resolve().parents[2]
APP_SERVICES = ("migrate", "api", "worker", "beat")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_services_and_their_order(compose: dict) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "api", "worker"} <= set(services)
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "ping" in services["redis"]["healthcheck"]["test"]
    assert services["migrate"]["command"][-1] == "migrate"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["redis"]["condition"] == "service_healthy"


def test_commands_match_the_cli(compose: dict) -> None:
    from synthaudit.app.cli import build_parser

    parser = build_parser()
    services = compose["services"]
    for name in ("migrate", "api", "worker"):
        command = services[name]["command"]
        assert command[0] == "synthaudit"
        args = parser.parse_args(command[1:])  # the CLI accepts exactly these arguments
        assert callable(args.func)
    serve = parser.parse_args(services["api"]["command"][1:])
    assert serve.host == "0.0.0.0" and f"{serve.port}:{serve.port}" in services["api"]["ports"]
    worker = parser.parse_args(services["worker"]["command"][1:])
    assert worker.concurrency == 1  # one audit at a time per GPU
    assert worker.queues == env_of(services["worker"])["CELERY_QUEUE"]


def test_environment_matches_the_settings(compose: dict) -> None:
    fields = {name.upper() for name in Settings.model_fields}
    postgres = env_of(compose["services"]["postgres"])
    for name in APP_SERVICES:
        env = env_of(compose["services"][name])
        assert set(env) <= fields, f"{name}: unknown settings {set(env) - fields}"
        settings = Settings(**{k.lower(): v for k, v in env.items()})  # the values parse and validate
        assert not settings.embedded
        db = urlsplit(settings.database_url)
        assert db.hostname == "postgres" and db.port == 5432
        assert (db.username, db.password, db.path.lstrip("/")) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            postgres["POSTGRES_DB"],
        )
        assert urlsplit(settings.celery_broker_url).hostname == "redis"
        assert (
            settings.broker_visibility_timeout_s
            > settings.stage_time_limit_s
            > settings.stage_soft_time_limit_s
        )


def test_api_and_worker_share_the_storage_volume(compose: dict) -> None:
    services = compose["services"]
    mounts = {}
    for name in ("api", "worker"):
        storage = env_of(services[name])["STORAGE_DIR"]
        mounts[name] = {v.split(":")[0] for v in services[name]["volumes"] if v.split(":")[1] == storage}
    assert mounts["api"] and mounts["api"] == mounts["worker"]
    assert mounts["api"] <= set(compose["volumes"])


def test_worker_reserves_a_gpu(compose: dict) -> None:
    devices = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert (
        devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"] and devices[0]["count"] == 1
    )


def test_dockerfiles_exist_and_copy_what_the_app_needs(compose: dict) -> None:
    for name in ("migrate", "worker"):
        dockerfile = REPO / compose["services"][name]["build"]["dockerfile"]
        text = dockerfile.read_text()
        for folder in ("app", "worker", "models", "alembic"):
            assert f"COPY {folder} ./{folder}" in text
        assert "SYNTHAUDIT_ALEMBIC_DIR=/app/alembic" in text and "TMPDIR=/data/storage/tmp" in text
        assert "docker/entrypoint.sh" in text and (REPO / "docker/entrypoint.sh").exists()
    worker = (REPO / "docker/worker.Dockerfile").read_text()
    assert worker.startswith("#") and "FROM nvidia/cuda" in worker and "faiss-gpu" in worker


def test_celery_configuration() -> None:
    from synthaudit.models.stages import STAGES
    from synthaudit.worker.celery_app import create_celery

    settings = Settings(celery_broker_url="redis://127.0.0.1:6379/13")
    app = create_celery(settings)
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert (
        conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit > conf.task_soft_time_limit
    )
    assert conf.task_ignore_result
    import synthaudit.worker.tasks  # noqa: F401  (registers the tasks on the module-level app)
    from synthaudit.worker.celery_app import celery_app

    for stage in STAGES:
        task = celery_app.tasks[f"synthaudit.{stage}"]
        assert task.acks_late and task.max_retries is not None and task.retry_backoff
    assert "synthaudit.purge" in celery_app.tasks


def test_service_commands_are_registered() -> None:
    from synthaudit.app.cli import build_parser
    from synthaudit.app.cli_service import worker_argv

    parser = build_parser()
    serve = parser.parse_args(["serve"])
    assert (serve.host, serve.port) == ("127.0.0.1", 8000)
    worker = parser.parse_args(["worker"])
    argv = worker_argv(worker, "audits")
    assert argv[1:6] == ["-m", "celery", "-A", "synthaudit.worker.celery_app", "worker"]
    assert argv[argv.index("--concurrency") + 1] == "1" and argv[argv.index("-Q") + 1] == "audits"

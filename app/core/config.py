"""Service settings, read from the environment (and an optional .env file) by pydantic-settings."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from synthaudit.models.archives import DEFAULT_LIMITS

GIB = 1024**3
MIB = 1024**2


class Settings(BaseSettings):
    """Every knob the API, the worker and the embedded runner read; env var = field name in capitals."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    synthaudit_home: Path = Path(".synthaudit")
    # Empty → SQLite file under SYNTHAUDIT_HOME (the embedded default).
    database_url: str = ""
    # Empty → no broker: audits run in the API process (worker/runner.py).
    celery_broker_url: str = ""
    celery_queue: str = "audits"
    storage_dir: Path | None = None

    # Upload limits (per POST /v1/datasets request: its archives share one budget of members and bytes;
    # the archive limits' defaults are the CLI's, models.archives.DEFAULT_LIMITS).
    max_upload_bytes: int = Field(default=20 * GIB, ge=1)
    max_files_per_upload: int = Field(default=10_000, ge=1)
    max_archive_members: int = Field(default=DEFAULT_LIMITS.max_members, ge=1)
    max_image_bytes: int = Field(default=DEFAULT_LIMITS.max_member_bytes, ge=1)
    max_extracted_bytes: int = Field(default=DEFAULT_LIMITS.max_extracted_bytes, ge=1)
    # Bytes of uploaded images one tenant may hold (datasets not purged); 0 = no quota.
    tenant_storage_quota_bytes: int = Field(default=0, ge=0)

    # Worker limits: the broker's visibility timeout must exceed the longest stage.
    stage_soft_time_limit_s: int = Field(default=3 * 3600, ge=1)
    stage_time_limit_s: int = Field(default=3 * 3600 + 600, ge=1)
    broker_visibility_timeout_s: int = Field(default=4 * 3600, ge=1)
    task_max_retries: int = Field(default=5, ge=0)
    progress_interval_s: float = Field(default=0.5, ge=0.0)

    retention_days: int = Field(default=30, ge=0)  # 0 keeps everything forever

    # Scale-out (worker/sharding.py): a generated set of more than SHARD_SIZE images is embedded and
    # searched as shards of about SHARD_SIZE images on all workers (a Celery chord), merged exactly;
    # EMBED_SHARDS > 0 always splits into that many. Needs a result backend (Redis): default the broker.
    shard_size: int = Field(default=50_000, ge=1)
    embed_shards: int = Field(default=0, ge=0)
    celery_result_backend: str = ""
    log_level: str = "INFO"

    # Workflow (docs/workflow.md). Webhooks: each signed with its own secret (Standard Webhooks), bounded
    # retries with backoff, public destinations on ports 80/443 only unless WEBHOOK_ALLOWED_HOSTS lists
    # them ("127.0.0.1:9000,hooks.internal"), at most WEBHOOK_MAX_CONCURRENCY sender threads per process.
    webhook_max_attempts: int = Field(default=5, ge=1, le=20)
    webhook_backoff_s: float = Field(default=2.0, ge=0.0)
    webhook_timeout_s: float = Field(default=10.0, gt=0.0)
    webhook_allowed_hosts: str = ""
    webhook_max_concurrency: int = Field(default=4, ge=1, le=256)
    webhook_max_queued: int = Field(default=1000, ge=0)

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _check_allowed_hosts(cls, value: str) -> str:
        from synthaudit.app.core.net_guard import parse_allowlist

        parse_allowlist(value)  # a bad entry stops the process at start, not at the first delivery
        return value

    # Key of the pseudonymous DICOM group keys (PatientID etc. are hashed with it, never stored raw; each
    # tenant's key is HMAC(secret, tenant)). Required outside the embedded mode, which generates one in
    # SYNTHAUDIT_HOME/group_key_secret when unset (app/core/home.py).
    group_key_secret: str = ""
    # Logs: "text" (default) or "json" (one object per line, with request and audit ids).
    log_format: str = Field(default="text", pattern="^(text|json)$")

    # Authentication (app/auth.py): None = required, except the embedded mode over a loopback socket
    # (app/local_mode.py decides that from the sockets, never from a setting); true = always required;
    # false = also key-less in the distributed mode, still over a loopback socket only.
    auth_required: bool | None = None
    # Request limits besides uploads, and per-image pixels (decompression bombs).
    max_json_bytes: int = Field(default=1 * MIB, ge=1)
    max_image_pixels: int = Field(default=64_000_000, ge=1)

    # Per-tenant limits (app/rate_limits.py, app/services/audits.py): requests per moving window in the
    # `limits` notation ("1200/minute;20000/hour"; empty: off), counted in memory (embedded) or in Redis
    # (RATE_LIMIT_STORAGE_URL, default the broker when it is Redis); queued + running audits at once
    # (0: no limit). Both answer 429 problem+json with Retry-After.
    rate_limit: str = "1200/minute"
    rate_limit_storage_url: str = ""
    max_active_audits_per_tenant: int = Field(default=20, ge=0)
    # Generated sets (checkpoints) one POST /v1/comparisons may name.
    max_comparison_checkpoints: int = Field(default=32, ge=2)

    @field_validator("rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        from synthaudit.app.core.rate_limit_rules import parse_rate_limit

        parse_rate_limit(value)  # a bad value stops the process at start
        return value

    # Job durability (worker/recovery.py): a running stage refreshes its audit's heartbeat; a sweep
    # re-dispatches audits whose heartbeat went stale (their worker died) or whose broker lost them.
    heartbeat_interval_s: float = Field(default=10.0, gt=0.0)
    orphan_after_s: float = Field(default=120.0, gt=0.0)
    recovery_interval_s: float = Field(default=30.0, gt=0.0)

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.synthaudit_home / 'synthaudit.db').resolve()}"
        if self.storage_dir is None:
            self.storage_dir = self.synthaudit_home / "storage"
        self.storage_dir = self.storage_dir.resolve()
        if self.stage_time_limit_s <= self.stage_soft_time_limit_s:
            raise ValueError("STAGE_TIME_LIMIT_S must exceed STAGE_SOFT_TIME_LIMIT_S")
        if self.orphan_after_s <= 2 * self.heartbeat_interval_s:
            raise ValueError("ORPHAN_AFTER_S must exceed twice HEARTBEAT_INTERVAL_S")
        if self.celery_broker_url and self.broker_visibility_timeout_s <= self.stage_time_limit_s:
            raise ValueError(
                "BROKER_VISIBILITY_TIMEOUT_S must exceed STAGE_TIME_LIMIT_S (else Redis redelivers)"
            )
        return self

    @property
    def storage(self) -> Path:
        """STORAGE_DIR, resolved (never None after validation)."""
        assert self.storage_dir is not None
        return self.storage_dir

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: the API runs audits itself."""
        return not self.celery_broker_url

    @property
    def keyless_local(self) -> bool:
        """Whether a request over a loopback socket may go without an API key (AUTH_REQUIRED when set,
        else the embedded mode); app/local_mode.py decides which requests those are."""
        if self.auth_required is not None:
            return not self.auth_required
        return self.embedded

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def describe_mode(self) -> str:
        """One line naming the deployment mode, with passwords masked."""
        if self.embedded:
            database = redact_url(self.database_url)
            return f"embedded mode: database {database}, in-process runner, storage {self.storage}"
        return (
            f"distributed mode: database {redact_url(self.database_url)}, "
            f"broker {redact_url(self.celery_broker_url)} (queue {self.celery_queue}), storage {self.storage}"
        )


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; False for anything else, or an unknown bind address."""
    if not host:
        return False
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()

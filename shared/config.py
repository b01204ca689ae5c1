"""Settings, read from the environment only.

Every setting has a default that needs no server: a SQLite file under the data directory and an
embedded Valkey (Redis-compatible) server started by the CLI when ``REDIS_URL`` is unset.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All knobs of audiencesync. Names map to ``AUDIENCESYNC_*`` variables unless aliased."""

    model_config = SettingsConfigDict(env_prefix="AUDIENCESYNC_", extra="ignore")

    data_dir: Path = Field(default=Path(".audiencesync"))
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    secret_key: str | None = Field(
        default=None,
        description="Fernet key that encrypts destination credentials at rest. When unset, one is "
        "generated once and kept in the data directory (file mode 0600).",
    )

    db_pool_size: int = Field(
        default=20,
        description="PostgreSQL connections each process keeps open. The API serves up to 40 "
        "requests at once per process; connections beyond the pool are opened and closed per "
        "request, which costs PostgreSQL a process start each time.",
    )

    # Run execution
    batch_size: int | None = Field(
        default=None, description="cap on records per destination call (default: the connector's)"
    )
    run_lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    republish_after_seconds: float = 30.0
    max_deliveries: int = 5
    sweep_interval_seconds: float = 15.0

    # Scheduling (beat)
    cron_seconds: bool = Field(
        default=False, description="accept 6-field cron expressions (seconds last); for tests"
    )
    scheduler_poll_seconds: float = 1.0
    scheduler_grace_seconds: float = 60.0
    scheduler_lock_seconds: float = 10.0
    run_retention_days: float = 90.0
    audit_retention_days: float = Field(
        default=365.0, description="contact audit rows are kept this long (erasures forever)"
    )
    stuck_run_seconds: float = 900.0

    # Deletion guard (per-sync overrides in the sync's config: max_removal_share, removal_guard_min)
    max_removal_share: float = 0.5
    removal_guard_min: int = 10

    # Delivery to destinations
    http_timeout_seconds: float = 30.0
    delivery_max_attempts: int = 6
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 20.0
    max_rate_limit_wait_seconds: float = 300.0

    # Celery
    queue: str = "audiencesync"
    visibility_timeout_seconds: int = 3600
    log_level: str = "INFO"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite:///{(self.data_dir / 'audiencesync.db').resolve()}"


def normalise_database_url(url: str) -> str:
    """Accept the ``postgresql://`` URLs people paste and use psycopg 3 for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@lru_cache
def get_settings() -> Settings:
    return Settings()

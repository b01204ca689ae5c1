"""``DatabaseScheduler``: Celery beat reading cron schedules from the database.

Every ``scheduler_poll_seconds`` it asks the database which syncs have a due tick and fires
them (``shared.schedules.fire_due``), so schedules created, changed, paused or deleted through
the API take effect within seconds, with no restart. The static entries (housekeeping) run as
in any beat.

Only one beat works at a time: the holder of a Redis lock that expires unless renewed, so when
its holder dies another beat takes over within ``scheduler_lock_seconds``. The lock only keeps a
second beat idle; the guard that cannot slip is the unique ``(sync_id, scheduled_for)`` row.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import Any

import redis
from celery.beat import Scheduler

from shared.config import get_settings
from shared.db.session import get_sessionmaker
from shared.db.types import utcnow
from shared.logs import log_event
from shared.runs import mark_published
from shared.schedules import fire_due
from worker.publish import publish_run

logger = logging.getLogger(__name__)
LOCK_NAME = "audiencesync:beat-lock"


class BeatLock:
    """A Redis lock that must be renewed; whoever holds it is the working beat."""

    def __init__(self, url: str, ttl: float) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5)
        self.lock = self.client.lock(LOCK_NAME, timeout=ttl, thread_local=False)
        self.held = False

    def hold(self) -> bool:
        try:
            if self.held and self.lock.owned():
                self.lock.reacquire()
            else:
                self.held = bool(self.lock.acquire(blocking=False))
                if self.held:
                    log_event(logger, "beat.lock_acquired")
        except redis.RedisError as exc:
            log_event(logger, "beat.lock_error", level=logging.WARNING, error=type(exc).__name__)
            self.held = False
        return self.held

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(redis.RedisError):
                self.lock.release()
            self.held = False


class DatabaseScheduler(Scheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.settings = get_settings()
        self.beat_lock: BeatLock | None = None  # made in setup_schedule, once the app is known
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        super().setup_schedule()
        self.beat_lock = BeatLock(
            self.settings.redis_url or str(self.app.conf.broker_url),
            self.settings.scheduler_lock_seconds,
        )

    def tick(self, *args: Any, **kwargs: Any) -> float:
        poll = self.settings.scheduler_poll_seconds
        assert self.beat_lock is not None
        if not self.beat_lock.hold():
            return min(poll, self.settings.scheduler_lock_seconds / 3)
        try:
            self.fire_syncs()
        except Exception:  # a database hiccup must not stop beat; the next poll retries
            logger.exception("beat.fire_failed")
        return min(float(super().tick(*args, **kwargs)), poll)

    def fire_syncs(self) -> None:
        sessions = get_sessionmaker()
        grace = timedelta(seconds=self.settings.scheduler_grace_seconds)
        with sessions.begin() as session:
            fired = fire_due(session, utcnow(), grace)
        for item in fired:
            if item.status == "pending" and publish_run(item.run_id):
                with sessions.begin() as session:
                    mark_published(session, item.run_id)

    def close(self) -> None:
        if self.beat_lock is not None:
            self.beat_lock.release()
        super().close()

"""Periodic tasks that Celery beat fires besides the cron-scheduled syncs (``scheduler.beat``)."""

from __future__ import annotations

from typing import Any

from shared.config import Settings
from shared.events import EventSettings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The sweeper republishes runs that were committed but never published (a crash between
    commit and publish) and runs whose worker stopped beating; it is what turns a killed
    worker into a resumed run within seconds instead of the broker's visibility timeout."""
    return {
        "sweep-runs": {
            "task": "audiencesync.sweep_runs",
            "schedule": settings.sweep_interval_seconds,
        },
        "housekeeping": {
            "task": "audiencesync.housekeeping",
            "schedule": 3600.0,
        },
        # Contact events whose doorbell was lost (Redis restarted after the API's 202).
        "sweep-contact-events": {
            "task": "audiencesync.sweep_contact_events",
            "schedule": EventSettings().sweep_interval_seconds,
        },
    }

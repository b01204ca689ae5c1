"""Celery tasks for contact events: push a workspace's pending events, sweep the outbox.

The API publishes ``process_contact_events`` after it committed an event, unless enough tasks
for the workspace are already queued and not started (``shared.doorbell``: they will see it).
If that message is lost (a Redis restart, a crash between commit and publish),
``sweep_contact_events``, fired by beat every ``AUDIENCESYNC_EVENT_SWEEP_INTERVAL_SECONDS``,
publishes again for every workspace with pending events nobody was told about recently. The
event rows are the promise.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.config import Settings, get_settings
from shared.db.models import Destination
from shared.db.session import get_sessionmaker
from shared.db.types import utcnow
from shared.delivery.connector import Connector
from shared.delivery.registry import build_connector
from shared.doorbell import Doorbell, doorbell_for
from shared.events import EventSettings, process_events, workspaces_with_work
from shared.logs import log_event
from worker.app import celery_app

logger = logging.getLogger(__name__)
PROCESS_TASK = "audiencesync.process_contact_events"
SWEEP_TASK = "audiencesync.sweep_contact_events"

# Connectors are kept per worker process between tasks (an event pushes one contact; building a
# connector costs a decryption and, for Resend, a listing of the account's properties). A changed
# destination (``updated_at``) gets a new one.
_connectors: dict[tuple[str, Any], Connector] = {}


def cached_connector(destination: Destination, settings: Settings) -> Connector:
    key = (destination.id, destination.updated_at)
    connector = _connectors.get(key)
    if connector is None:
        for old in [k for k in _connectors if k[0] == destination.id]:
            _connectors.pop(old).close()
        connector = _connectors[key] = build_connector(destination, settings)
    return connector


def doorbell() -> Doorbell | None:
    settings = get_settings()
    if not settings.redis_url:
        return None
    return doorbell_for(settings.redis_url, EventSettings().queued_tasks)


@celery_app.task(name=PROCESS_TASK)
def process_contact_events(workspace_id: str) -> dict[str, Any]:
    """Push the workspace's pending contact events; a duplicate finds nothing left to take."""
    if (bell := doorbell()) is not None:
        bell.answer(workspace_id)  # before claiming: events committed from now ring again
    result = process_events(get_sessionmaker(), get_settings(), workspace_id, cached_connector)
    return {
        "contacts": result.contacts,
        "events": result.events,
        "deferred": result.deferred,
        "failed": result.failed,
        "pushed": dict(result.pushed),
    }


@celery_app.task(name=SWEEP_TASK)
def sweep_contact_events() -> list[str]:
    """Publish again for workspaces whose pending events nobody picked up (the outbox)."""
    with get_sessionmaker().begin() as session:
        workspace_ids = workspaces_with_work(
            session, utcnow(), EventSettings().republish_after_seconds
        )
    for workspace_id in workspace_ids:
        publish_contact_events(workspace_id, ring=False)
    return workspace_ids


def publish_contact_events(workspace_id: str, ring: bool = True) -> bool:
    """Tell a worker about a workspace's events, after the transaction committed, unless
    enough tasks are already queued for it. A broker outage is not fatal: the events stay
    pending and the sweeper publishes again."""
    bell = doorbell() if ring else None
    if bell is not None and not bell.ring(workspace_id):
        return True
    try:
        celery_app.send_task(
            PROCESS_TASK,
            kwargs={"workspace_id": workspace_id},
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
        )
    except Exception as exc:  # kombu raises several types for an unreachable broker
        if bell is not None:
            bell.answer(workspace_id)
        log_event(
            logger,
            "events.publish_failed",
            level=logging.WARNING,
            workspace_id=workspace_id,
            error=str(exc),
        )
        return False
    return True

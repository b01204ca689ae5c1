"""Publishing run tasks. Called only after the transaction that created the run committed."""

from __future__ import annotations

import logging

from shared.logs import log_event
from worker.app import celery_app

logger = logging.getLogger(__name__)


def publish_run(run_id: str) -> bool:
    """Ring the doorbell for ``run_id``. A broker outage is not fatal: the run stays pending
    in the database and the sweeper publishes it again."""
    try:
        celery_app.send_task("audiencesync.run_sync", kwargs={"run_id": run_id})
    except Exception as exc:  # kombu raises several types for an unreachable broker
        log_event(
            logger, "run.publish_failed", level=logging.WARNING, run_id=run_id, error=str(exc)
        )
        return False
    return True

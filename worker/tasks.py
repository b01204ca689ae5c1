"""Celery tasks. Each one carries ids only and hands over to a domain function."""

from __future__ import annotations

from shared.config import get_settings
from shared.db.session import get_sessionmaker
from shared.execution import execute_run
from shared.runs import runs_to_publish
from worker.app import celery_app
from worker.publish import publish_run


@celery_app.task(name="audiencesync.run_sync")
def run_sync(run_id: str) -> str:
    """Execute one sync run; a duplicate delivery finds the run claimed and returns at once."""
    return execute_run(run_id, get_settings(), get_sessionmaker())


@celery_app.task(name="audiencesync.sweep_runs")
def sweep_runs() -> list[str]:
    """Publish runs that were committed but never published, or whose worker died."""
    settings = get_settings()
    with get_sessionmaker().begin() as session:
        run_ids = runs_to_publish(
            session, settings.republish_after_seconds, settings.run_lease_seconds
        )
    for run_id in run_ids:
        publish_run(run_id)
    return run_ids

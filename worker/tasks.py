"""Celery tasks. Each one carries ids only and hands over to a domain function."""

from __future__ import annotations

from datetime import timedelta

from shared.config import get_settings
from shared.db.session import get_sessionmaker
from shared.events import prune_audit, prune_events
from shared.execution import execute_run
from shared.runs import fail_stuck_runs, prune_runs, runs_to_publish
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


@celery_app.task(name="audiencesync.housekeeping")
def housekeeping() -> dict[str, int]:
    """Prune runs, processed events and audit rows past their retention; fail runs whose
    worker is gone."""
    settings = get_settings()
    with get_sessionmaker().begin() as session:
        pruned = prune_runs(session, timedelta(days=settings.run_retention_days))
        stuck = fail_stuck_runs(session, timedelta(seconds=settings.stuck_run_seconds))
        events = prune_events(session, timedelta(days=settings.run_retention_days))
        audit = prune_audit(session, timedelta(days=settings.audit_retention_days))
    return {
        "pruned": pruned,
        "failed_stuck": len(stuck),
        "pruned_events": events,
        "pruned_audit": audit,
    }

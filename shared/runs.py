"""The life of a sync run: created by a trigger, claimed by one worker, swept when stranded.

The database is the guard everywhere: a partial unique index allows one active run per sync,
a compare-and-set claim lets exactly one worker own a run (the number of deliveries is the
fencing token), and a heartbeat tells a live owner from a dead one. The broker is only a
doorbell: a run that was committed but not published, or whose worker died, is published
again by the sweeper (the outbox pattern).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.db.models import ACTIVE_RUN_STATUSES, AudienceSync, SyncRun
from shared.db.types import UTCDateTime, utcnow

TRIGGERS = ("manual", "api", "schedule", "event")


class SyncAlreadyRunning(Exception):
    """A run of this sync is pending or running; a second one would race the first."""


class SyncPaused(Exception):
    """Paused syncs do not run until they are resumed."""


def create_run(
    session: Session, sync: AudienceSync, trigger: str, scheduled_for: datetime | None = None
) -> SyncRun:
    """Insert a pending run. The caller commits, then publishes (never the other way round)."""
    if sync.status == "paused":
        raise SyncPaused(f"sync {sync.id} is paused")
    run = SyncRun(
        sync_id=sync.id,
        workspace_id=sync.workspace_id,
        trigger=trigger,
        sync_mode=sync.sync_mode,
        scheduled_for=scheduled_for,
    )
    try:
        with session.begin_nested():
            session.add(run)
            session.flush()
    except IntegrityError:
        raise SyncAlreadyRunning(f"sync {sync.id} already has a run in progress") from None
    sync.last_run_id = run.id
    return run


def mark_published(session: Session, run_id: str, now: datetime | None = None) -> None:
    session.execute(
        update(SyncRun).where(SyncRun.id == run_id).values(published_at=now or utcnow())
    )


@dataclass(frozen=True)
class Claim:
    run_id: str
    token: int


def claim_run(session: Session, run_id: str, lease_seconds: float) -> Claim | None:
    """Take ownership of a pending run, or of a running one whose owner stopped beating.

    Returns ``None`` when another live worker owns it or it is finished: a duplicate delivery.
    """
    now = utcnow()
    stale = now - timedelta(seconds=lease_seconds)
    result = session.execute(
        update(SyncRun)
        .where(
            SyncRun.id == run_id,
            or_(
                SyncRun.status == "pending",
                (SyncRun.status == "running")
                & or_(SyncRun.heartbeat_at.is_(None), SyncRun.heartbeat_at < stale),
            ),
        )
        .values(
            status="running",
            attempts=SyncRun.attempts + 1,
            heartbeat_at=now,
            started_at=func.coalesce(SyncRun.started_at, literal(now, UTCDateTime())),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    attempts = session.execute(select(SyncRun.attempts).where(SyncRun.id == run_id)).scalar_one()
    return Claim(run_id, attempts)


def beat(session: Session, claim: Claim) -> bool:
    """Refresh the heartbeat; ``False`` when this worker no longer owns the run."""
    result = session.execute(
        update(SyncRun)
        .where(
            SyncRun.id == claim.run_id,
            SyncRun.attempts == claim.token,
            SyncRun.status == "running",
        )
        .values(heartbeat_at=utcnow())
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def runs_to_publish(
    session: Session, republish_after_seconds: float, lease_seconds: float
) -> list[str]:
    """Runs that need a (new) delivery: pending and never or long ago published, or running
    with a dead owner. Marks them published so that the next sweep leaves them alone."""
    now = utcnow()
    quiet = now - timedelta(seconds=republish_after_seconds)
    stale = now - timedelta(seconds=lease_seconds)
    pending = (SyncRun.status == "pending") & or_(
        SyncRun.published_at.is_(None), SyncRun.published_at < quiet
    )
    orphaned = (
        (SyncRun.status == "running")
        & or_(SyncRun.heartbeat_at.is_(None), SyncRun.heartbeat_at < stale)
        & or_(SyncRun.published_at.is_(None), SyncRun.published_at < stale)
    )
    ids = list(
        session.execute(
            select(SyncRun.id).where(or_(pending, orphaned)).order_by(SyncRun.created_at)
        ).scalars()
    )
    if ids:
        session.execute(
            update(SyncRun)
            .where(SyncRun.id.in_(ids))
            .values(published_at=now)
            .execution_options(synchronize_session=False)
        )
    return ids


def prune_runs(session: Session, older_than: timedelta) -> int:
    """Delete finished runs older than the retention, their errors with them (cascade)."""
    cutoff = utcnow() - older_than
    result = session.execute(
        delete(SyncRun)
        .where(SyncRun.status.not_in(ACTIVE_RUN_STATUSES), SyncRun.created_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def fail_stuck_runs(session: Session, stuck_after: timedelta) -> list[str]:
    """Runs still ``running`` whose heartbeat stopped long ago have lost their worker for good
    (the sweeper's republish found no taker): fail them so the sync can run again."""
    cutoff = utcnow() - stuck_after
    reason = f"worker lost: no heartbeat for more than {int(stuck_after.total_seconds())}s"
    ids = list(
        session.execute(
            select(SyncRun.id).where(
                SyncRun.status == "running",
                or_(SyncRun.heartbeat_at.is_(None), SyncRun.heartbeat_at < cutoff),
            )
        ).scalars()
    )
    if ids:
        session.execute(
            update(SyncRun)
            .where(SyncRun.id.in_(ids), SyncRun.status == "running")
            .values(
                status="failed",
                finished_at=utcnow(),
                error=reason,
            )
            .execution_options(synchronize_session=False)
        )
    return ids

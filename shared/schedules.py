"""Cron schedules: when a sync's ticks fall, and firing each tick exactly once.

Ticks are computed in the sync's local wall-clock time with naive datetimes, then localised
(croniter has a history of DST bugs with aware datetimes). On the spring-forward day a wall time
that does not exist (02:30) is taken at the same offset as before the change, i.e. an hour
later on the new clock, so it still fires once; on the fall-back day a repeated wall time
fires at its first occurrence only. Two wall times that land on the same instant collapse.

Firing is guarded by the database: a run row with ``(sync_id, scheduled_for)`` is unique, so
two beats (a rolling deploy, a mistake) can both try and only one wins. After downtime a sync
fires once, for the latest tick it missed (unless its ``catch_up`` is off); a tick that comes
while the previous run still runs is recorded as ``skipped`` with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.db.models import AudienceSync, SyncRun
from shared.db.types import utcnow
from shared.logs import log_event
from shared.runs import SyncAlreadyRunning, create_run

logger = logging.getLogger(__name__)
UTC_ZONE = ZoneInfo("UTC")


class ScheduleError(ValueError):
    """A cron expression or a time zone that cannot be used."""


def parse_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"unknown time zone {name!r}; use an IANA name like 'Europe/Paris'"
        ) from None


def validate_cron(expression: str, allow_seconds: bool) -> str:
    """Normalise and check a cron expression: 5 fields, or 6 with seconds last if allowed."""
    expression = " ".join(expression.split())
    fields = len(expression.split())
    allowed = (5, 6) if allow_seconds else (5,)
    if fields not in allowed:
        wanted = "5 fields (minute hour day month weekday)"
        if allow_seconds:
            wanted += ", or 6 with seconds last"
        raise ScheduleError(f"invalid cron expression {expression!r}: expected {wanted}")
    if not croniter.is_valid(expression):
        raise ScheduleError(f"invalid cron expression {expression!r}")
    return expression


def ticks_after(expression: str, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Tick instants (aware, UTC) strictly after ``after``, in order."""
    local = after.astimezone(zone).replace(tzinfo=None)
    wall = croniter(expression, local)
    previous = after
    while True:
        candidate = wall.get_next(datetime).replace(tzinfo=zone).astimezone(UTC_ZONE)
        if candidate > previous:
            previous = candidate
            yield candidate


def next_ticks(expression: str, zone: ZoneInfo, after: datetime, count: int) -> list[datetime]:
    ticks = ticks_after(expression, zone, after)
    return [next(ticks) for _ in range(count)]


def latest_tick_at_or_before(
    expression: str, zone: ZoneInfo, since: datetime, now: datetime
) -> datetime | None:
    """The last tick in ``(since, now]``, or ``None`` if there is none.

    Walks back from ``now`` in local wall time (so DST is handled as in ``ticks_after``), then
    confirms forward so that a collapsed or shifted tick is reported as ``ticks_after`` would.
    """
    local_now = now.astimezone(zone).replace(tzinfo=None)
    wall = croniter(expression, local_now + timedelta(microseconds=1))
    for _ in range(3):
        candidate = wall.get_prev(datetime).replace(tzinfo=zone).astimezone(UTC_ZONE)
        if candidate <= since:
            return None
        if candidate <= now:
            return candidate
    return None


@dataclass(frozen=True)
class Fired:
    run_id: str
    status: str  # "pending" (publish it) or "skipped"


def schedule_anchor(sync: AudienceSync) -> datetime:
    """The instant after which ticks count: the last tick recorded, or when the schedule (or the
    sync's activation) last changed, whichever is later. Kept on the sync itself so that pruning
    old runs can never make an old tick look unfired."""
    anchor = sync.schedule_changed_at or sync.created_at
    return max(anchor, sync.last_tick_at) if sync.last_tick_at else anchor


def next_run_at(sync: AudienceSync, now: datetime) -> datetime | None:
    if sync.status != "active" or not sync.schedule:
        return None
    after = max(now, schedule_anchor(sync))
    return next(ticks_after(sync.schedule, parse_zone(sync.timezone), after))


def fire_due(session: Session, now: datetime, grace: timedelta) -> list[Fired]:
    """Fire every active scheduled sync whose latest tick is due and not yet recorded.

    Each sync is handled in a savepoint: a tick another beat already recorded (unique
    violation) is simply passed over.
    """
    fired: list[Fired] = []
    syncs = session.execute(
        select(AudienceSync).where(
            AudienceSync.status == "active", AudienceSync.schedule.is_not(None)
        )
    ).scalars()
    for sync in list(syncs):
        assert sync.schedule is not None
        zone = parse_zone(sync.timezone)
        tick = latest_tick_at_or_before(sync.schedule, zone, schedule_anchor(sync), now)
        if tick is None:
            continue
        if not sync.catch_up and now - tick > grace:
            continue  # missed while beat was down, and this sync does not catch up
        result = _fire_tick(session, sync, tick)
        if result is not None:
            fired.append(result)
    return fired


def _fire_tick(session: Session, sync: AudienceSync, tick: datetime) -> Fired | None:
    sync.last_tick_at = tick
    try:
        run = create_run(session, sync, "schedule", scheduled_for=tick)
    except SyncAlreadyRunning:
        if _tick_recorded(session, sync.id, tick):
            return None
        return _record_skip(session, sync, tick)
    log_event(logger, "schedule.fired", sync_id=sync.id, run_id=run.id, tick=tick.isoformat())
    return Fired(run.id, "pending")


def _record_skip(session: Session, sync: AudienceSync, tick: datetime) -> Fired | None:
    reason = "skipped: the previous run of this sync was still in progress at this tick"
    skipped = SyncRun(
        sync_id=sync.id,
        workspace_id=sync.workspace_id,
        trigger="schedule",
        sync_mode=sync.sync_mode,
        status="skipped",
        error=reason,
        scheduled_for=tick,
        finished_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(skipped)
            session.flush()
    except IntegrityError:
        return None  # another beat recorded this tick first
    log_event(logger, "schedule.skipped", sync_id=sync.id, tick=tick.isoformat())
    return Fired(skipped.id, "skipped")


def _tick_recorded(session: Session, sync_id: str, tick: datetime) -> bool:
    return (
        session.execute(
            select(SyncRun.id).where(SyncRun.sync_id == sync_id, SyncRun.scheduled_for == tick)
        ).first()
        is not None
    )

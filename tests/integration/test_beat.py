"""Real beat processes: exactly one run per tick with two beats, takeover after SIGKILL,
schedule changes followed without a restart."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from shared.db.models import SyncRun
from shared.db.session import session_scope
from shared.db.types import utcnow
from tests.conftest import Processes, WorkspaceClient, make_sync, wait_until
from tests.integration.test_runs import load, people


def ticks(sync_id: str) -> list[datetime]:
    with session_scope() as session:
        return list(
            session.execute(
                select(SyncRun.scheduled_for)
                .where(SyncRun.sync_id == sync_id, SyncRun.scheduled_for.is_not(None))
                .order_by(SyncRun.scheduled_for)
            ).scalars()
        )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_beats_fire_each_tick_exactly_once_even_when_the_lock_holder_dies(
    ws: WorkspaceClient, resend: object, processes: Processes
) -> None:
    load(ws.id, people(2))
    sync = make_sync(ws, resend.url, "mirror", schedule="* * * * * */2")  # type: ignore[attr-defined]
    processes.worker()
    first = processes.start("beat")
    wait_until(lambda: ticks(sync["id"]), timeout=30)
    second = processes.start("beat")  # started later: the first holds the lock
    wait_until(lambda: len(ticks(sync["id"])) >= 6, timeout=60)
    processes.kill(first)  # SIGKILL the lock holder
    killed_at = utcnow()
    wait_until(lambda: len(ticks(sync["id"])) >= 21, timeout=90)
    assert second.poll() is None, "the second beat kept running"

    fired = ticks(sync["id"])
    assert len(fired) == len(set(fired)), "no tick recorded twice"
    gaps = {b - a for a, b in itertools.pairwise(fired)}
    assert gaps == {timedelta(seconds=2)}, f"a tick was lost: {sorted(gaps)}"
    assert any(tick > killed_at for tick in fired), "the second beat took over"
    with session_scope() as session:
        statuses = set(
            session.execute(select(SyncRun.status).where(SyncRun.sync_id == sync["id"])).scalars()
        )
    assert statuses <= {"pending", "running", "succeeded", "skipped"}
    assert "succeeded" in statuses


def test_a_schedule_changed_through_the_api_is_followed_without_a_restart(
    ws: WorkspaceClient, resend: object, processes: Processes
) -> None:
    load(ws.id, people(1))
    sync = make_sync(ws, resend.url, "mirror", schedule="0 0 1 1 *")  # type: ignore[attr-defined]
    processes.worker()
    processes.beat()
    changed_at = utcnow()
    response = ws.put(f"/audience-syncs/{sync['id']}", json={"schedule": "* * * * * */3"})
    assert response.status_code == 200
    fired = wait_until(lambda: ticks(sync["id"]), timeout=30)
    assert fired[0] > changed_at and fired[0].second % 3 == 0
    ws.put(f"/audience-syncs/{sync['id']}", json={"status": "paused"})
    paused_at = utcnow()
    wait_until(lambda: utcnow() > paused_at + timedelta(seconds=4), timeout=10, interval=0.5)
    assert all(tick <= paused_at + timedelta(seconds=1) for tick in ticks(sync["id"]))

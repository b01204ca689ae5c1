"""Firing scheduled ticks against the database: catch-up, skips, exactly-once, housekeeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from shared.db.event_models import ContactAudit
from shared.db.models import AudienceSync, RunError, SyncRun
from shared.db.session import session_scope
from shared.db.types import utcnow
from shared.events import prune_audit
from shared.runs import create_run, fail_stuck_runs, prune_runs
from shared.schedules import fire_due
from tests.conftest import WorkspaceClient, make_sync

GRACE = timedelta(seconds=60)
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def scheduled(ws: WorkspaceClient, schedule: str = "*/5 * * * *", **fields: object) -> str:
    sync_id = make_sync(ws, "http://127.0.0.1:9", schedule=schedule)["id"]
    with session_scope() as session:
        sync = session.get_one(AudienceSync, sync_id)
        sync.schedule_changed_at = T0
        for name, value in fields.items():
            setattr(sync, name, value)
    return sync_id


def fire(now: datetime) -> list[tuple[str, str]]:
    with session_scope() as session:
        fired = fire_due(session, now, GRACE)
        return [(session.get_one(SyncRun, f.run_id).status, f.run_id) for f in fired]


def runs(sync_id: str) -> list[SyncRun]:
    with session_scope() as session:
        return list(
            session.execute(
                select(SyncRun).where(SyncRun.sync_id == sync_id).order_by(SyncRun.scheduled_for)
            ).scalars()
        )


def test_after_downtime_one_run_fires_for_the_latest_missed_tick(ws: WorkspaceClient) -> None:
    sync_id = scheduled(ws)
    assert fire(T0 + timedelta(minutes=4)) == []
    fired = fire(T0 + timedelta(minutes=27))  # ticks at :05 :10 :15 :20 :25 were missed
    assert [status for status, _ in fired] == ["pending"]
    [run] = runs(sync_id)
    assert run.scheduled_for == T0 + timedelta(minutes=25)
    assert run.trigger == "schedule"
    assert fire(T0 + timedelta(minutes=28)) == [], "a tick fires once"


def test_catch_up_off_drops_missed_ticks_but_fires_on_time(ws: WorkspaceClient) -> None:
    sync_id = scheduled(ws, catch_up=False)
    assert fire(T0 + timedelta(minutes=27)) == []
    assert runs(sync_id) == []
    assert len(fire(T0 + timedelta(minutes=30, seconds=10))) == 1
    assert runs(sync_id)[0].scheduled_for == T0 + timedelta(minutes=30)


def test_a_tick_during_a_run_is_recorded_as_skipped_not_queued(ws: WorkspaceClient) -> None:
    sync_id = scheduled(ws)
    with session_scope() as session:
        create_run(session, session.get_one(AudienceSync, sync_id), "manual")
    fired = fire(T0 + timedelta(minutes=5, seconds=1))
    assert [status for status, _ in fired] == ["skipped"]
    skipped = [run for run in runs(sync_id) if run.status == "skipped"]
    assert len(skipped) == 1
    assert skipped[0].scheduled_for == T0 + timedelta(minutes=5)
    assert "still in progress" in skipped[0].error
    assert fire(T0 + timedelta(minutes=6)) == []
    history = ws.get(f"/audience-syncs/{sync_id}/runs").json()
    assert {run["status"] for run in history} == {"pending", "skipped"}


def test_paused_and_unscheduled_syncs_do_not_fire(ws: WorkspaceClient) -> None:
    scheduled(ws, status="paused")
    scheduled(ws, schedule=None)
    assert fire(T0 + timedelta(hours=3)) == []


def test_the_database_records_each_tick_once_whoever_fires_it(ws: WorkspaceClient) -> None:
    sync_id = scheduled(ws)
    now = T0 + timedelta(minutes=5, seconds=1)
    assert len(fire(now)) == 1
    with session_scope() as session:  # a second beat that did not see the first one's work
        sync = session.get_one(AudienceSync, sync_id)
        sync.last_tick_at = None
    assert fire(now) == []
    assert len(runs(sync_id)) == 1


def test_next_run_at_and_schedule_preview(ws: WorkspaceClient) -> None:
    sync = make_sync(ws, "http://127.0.0.1:9", schedule="0 9 * * *", timezone="Europe/Paris")
    preview = ws.get(f"/audience-syncs/{sync['id']}/schedule/preview", params={"count": 3})
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["timezone"] == "Europe/Paris" and len(body["next_runs"]) == 3
    first = datetime.fromisoformat(body["next_runs"][0].replace("Z", "+00:00"))
    assert first.astimezone(ZoneInfo("Europe/Paris")).hour == 9
    assert datetime.fromisoformat(sync["next_run_at"].replace("Z", "+00:00")) == first
    paused = ws.put(f"/audience-syncs/{sync['id']}", json={"status": "paused"}).json()
    assert paused["next_run_at"] is None
    plain = make_sync(ws, "http://127.0.0.1:9")
    assert ws.get(f"/audience-syncs/{plain['id']}/schedule/preview").status_code == 400


def test_invalid_cron_or_time_zone_is_a_422_and_saves_nothing(ws: WorkspaceClient) -> None:
    sync = make_sync(ws, "http://127.0.0.1:9", schedule="0 * * * *")
    for change in ({"schedule": "99 * * * *"}, {"timezone": "Mars/Base"}, {"timezone": None}):
        response = ws.put(f"/audience-syncs/{sync['id']}", json=change)
        assert response.status_code == 422, response.text
    after = ws.get(f"/audience-syncs/{sync['id']}").json()
    assert (after["schedule"], after["timezone"]) == ("0 * * * *", "UTC")
    response = ws.post(
        "/audience-syncs",
        json={**{k: sync[k] for k in ("name", "audience_id", "destination_id", "field_mapping")},
              "sync_mode": "mirror", "timezone": "Nowhere/City"},
    )  # fmt: skip
    assert response.status_code == 422 and "unknown time zone" in response.text
    assert len(ws.get("/audience-syncs").json()) == 1


def test_housekeeping_prunes_old_runs_and_fails_stuck_ones(ws: WorkspaceClient) -> None:
    sync_id = scheduled(ws)
    with session_scope() as session:
        sync = session.get_one(AudienceSync, sync_id)
        old = create_run(session, sync, "manual")
        old.status, old.created_at = "succeeded", utcnow() - timedelta(days=100)
        session.flush()
        session.add(RunError(run_id=old.id, member_key="a@x.com", operation="add", message="x"))
        recent = create_run(session, sync, "manual")
        recent.status, recent.heartbeat_at = "running", utcnow() - timedelta(hours=2)
        old_id, recent_id = old.id, recent.id
    with session_scope() as session:
        assert prune_runs(session, timedelta(days=90)) == 1
        assert fail_stuck_runs(session, timedelta(minutes=15)) == [recent_id]
    with session_scope() as session:
        assert session.get(SyncRun, old_id) is None
        assert session.execute(select(RunError)).first() is None
        stuck = session.get_one(SyncRun, recent_id)
        assert stuck.status == "failed" and "worker lost" in stuck.error
    assert ws.post(f"/audience-syncs/{sync_id}/trigger").status_code == 201


def test_housekeeping_prunes_old_audit_rows_but_keeps_erasures(ws: WorkspaceClient) -> None:
    long_ago = utcnow() - timedelta(days=400)
    with session_scope() as session:
        for operation, created_at in (("add", long_ago), ("erase", long_ago), ("add", utcnow())):
            session.add(
                ContactAudit(
                    workspace_id=ws.id,
                    email="ada@example.com",
                    operation=operation,
                    target="resend",
                    result="ok",
                    created_at=created_at,
                )
            )
    with session_scope() as session:
        assert prune_audit(session, timedelta(days=365)) == 1
    items = ws.get("/contacts/ada@example.com/audit").json()["items"]
    assert sorted(item["operation"] for item in items) == ["add", "erase"]

"""A contact whose events cannot be processed holds back only itself: it is tried again with
backoff, then its events fail with the error, readable through the API. Driven through
``process_events`` (the worker task's body) on the real database and the Resend emulator; the
connector is the real one, made to raise for one contact as a connector bug would."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from shared.config import Settings, get_settings
from shared.db.event_models import ContactEvent
from shared.db.models import Destination
from shared.db.session import get_sessionmaker, session_scope
from shared.db.types import utcnow
from shared.delivery.base import HttpConnector
from shared.delivery.connector import Outcome, Record
from shared.delivery.registry import build_connector
from shared.events import EventSettings, process_events
from tests.conftest import WorkspaceClient
from tests.events.conftest import APP, event_sync
from tests.integration.test_runs import destination_contacts

POISON = "poison@example.com"
RETRY_LATER = EventSettings(max_attempts=2, retry_initial_seconds=60)


def raising_for(email: str) -> Any:
    """The real connector, raising for one contact as a bug on its payload would."""

    def factory(destination: Destination, settings: Settings) -> HttpConnector:
        connector = build_connector(destination, settings)
        upsert = connector.upsert

        def upsert_or_raise(records: Sequence[Record]) -> Any:
            if any(record.key == email for record in records):
                raise RuntimeError(f"cannot encode {email}")
            result: list[Outcome] = list(upsert(records))
            return result

        connector.upsert = upsert_or_raise  # type: ignore[method-assign]
        return connector

    return factory


def test_a_failing_contact_is_retried_then_failed_and_holds_back_no_one(
    ws: WorkspaceClient, resend: Any
) -> None:
    event_sync(ws, resend.url)
    emails = [f"fine{i}@example.com" for i in range(4)] + [POISON]
    ids = {}
    for email in emails:
        response = ws.post("/events/signup", json={"email": email, "app": APP})
        assert response.status_code == 202, response.text
        ids[email] = response.json()["event_id"]
    sessions, settings = get_sessionmaker(), get_settings()

    process_events(sessions, settings, ws.id, raising_for(POISON), RETRY_LATER)

    assert set(destination_contacts(resend.url)) == set(emails) - {POISON}
    for email in emails[:4]:
        assert ws.get(f"/events/{ids[email]}").json()["status"] == "done"
    waiting = ws.get(f"/events/{ids[POISON]}").json()
    assert (waiting["status"], waiting["attempts"]) == ("pending", 1)
    assert waiting["error"] == f"RuntimeError: cannot encode {POISON}"

    # Not due yet: a second pass leaves it alone.
    process_events(sessions, settings, ws.id, raising_for(POISON), RETRY_LATER)
    assert ws.get(f"/events/{ids[POISON]}").json()["attempts"] == 1

    with session_scope() as session:  # its backoff is over
        session.execute(
            update(ContactEvent)
            .where(ContactEvent.id == ids[POISON])
            .values(not_before=utcnow() - timedelta(seconds=1))
        )
    process_events(sessions, settings, ws.id, raising_for(POISON), RETRY_LATER)
    failed = ws.get(f"/events/{ids[POISON]}").json()
    assert (failed["status"], failed["attempts"]) == ("failed", 2)
    assert failed["processed_at"] is not None

    # A failed event is not taken again; a retry on demand is a new event.
    result = process_events(sessions, settings, ws.id, build_connector, RETRY_LATER)
    assert result.events == 0
    assert POISON not in destination_contacts(resend.url)

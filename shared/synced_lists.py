"""Synced lists (seed 003): audiences whose members are read from a list in another tool.

A synced list is a static list (``kind="static"``, so it is read like one everywhere) with a
``sync_source``: ``{"type": "klaviyo", "destination_id", "list_id", "list_name",
"last_synced_at", "members", "skipped"}``. The destination lends its credentials; any connector
that can read a list's members can be a source (Klaviyo is the one there is).

A sync mirrors the list: in one transaction it replaces the audience's membership with the
list's members as read now, and creates or updates them in the workspace's contact store (the
contact store keeps a contact that leaves the list; properties are merged, a value Klaviyo does
not have never clears one the store has). Profiles without an email are skipped and counted:
members are keyed by email. If reading fails half-way nothing of that sync is written.

One sync at a time per audience: the audience's ``status`` goes to ``syncing`` with a
compare-and-set committed before the read; a second sync finds it taken (``SyncBusy``). A
``syncing`` status older than ``STALE_AFTER`` (a process that died mid-sync) may be taken over.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from shared.audiences import set_status
from shared.csv_import import EMAIL, LIMITS
from shared.db.audience_models import StaticMember
from shared.db.models import Audience, Contact, Destination
from shared.db.types import new_id, utcnow
from shared.delivery.klaviyo_lists import KlaviyoList, ListMember

STALE_AFTER = timedelta(minutes=15)
CHUNK = 1000
SPOOL_IN_MEMORY = 4 * 1024 * 1024  # bytes of members held in memory before going to disk
SOURCE_TYPES = ("klaviyo",)


class NotSyncable(ValueError):
    """The audience cannot be re-synced: not a synced list, or its source is gone."""


class SyncBusy(Exception):
    """A sync of this audience is already in progress."""


@dataclass(frozen=True, slots=True)
class SyncResult:
    audience_id: str
    members: int
    skipped: int


def klaviyo_source(destination_id: str, klist: KlaviyoList) -> dict[str, Any]:
    return {
        "type": "klaviyo",
        "destination_id": destination_id,
        "list_id": klist.id,
        "list_name": klist.name,
        "last_synced_at": None,
    }


def find_synced(
    session: Session, workspace_id: str, source_type: str, destination_id: str, list_id: str
) -> Audience | None:
    """The live audience already synced from this list through this destination."""
    rows = session.execute(
        select(Audience).where(
            Audience.workspace_id == workspace_id,
            Audience.archived_at.is_(None),
            Audience.sync_source.is_not(None),
        )
    ).scalars()
    for audience in rows:
        source = audience.sync_source or {}
        if (source.get("type"), source.get("destination_id"), source.get("list_id")) == (
            source_type,
            destination_id,
            list_id,
        ):
            return audience
    return None


def sync_destination(session: Session, audience: Audience) -> Destination:
    """The destination whose credentials read the audience's list; ``NotSyncable`` says why
    there is none."""
    source = audience.sync_source
    if not source:
        raise NotSyncable("audience is not a synced list")
    destination_id = source.get("destination_id")
    destination = session.get(Destination, destination_id) if destination_id else None
    if (
        source.get("type") not in SOURCE_TYPES
        or not source.get("list_id")
        or destination is None
        or destination.workspace_id != audience.workspace_id
        or destination.type != source.get("type")
    ):
        raise NotSyncable("audience has no sync source (its destination or list is gone)")
    return destination


def claim_sync(session: Session, audience_id: str) -> None:
    """Mark the audience ``syncing`` unless a sync holds it (``SyncBusy``); commit after."""
    now = utcnow()
    result: Any = session.execute(
        update(Audience)
        .where(
            Audience.id == audience_id,
            or_(Audience.status != "syncing", Audience.status_changed_at < now - STALE_AFTER),
        )
        .values(status="syncing", status_error="", status_changed_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise SyncBusy("a sync of this audience is already in progress")


def run_sync(
    sessions: sessionmaker[Session], audience_id: str, members: Iterable[ListMember]
) -> SyncResult:
    """Replace a claimed audience's membership with ``members`` in one transaction, then mark
    it ready; if anything fails, nothing is written and the audience shows the error."""
    try:
        with spooled(members) as staged, sessions.begin() as session:
            audience = session.get_one(Audience, audience_id)
            result = write_members(session, audience, staged)
            source = dict(audience.sync_source or {})
            source.update(
                last_synced_at=utcnow().isoformat(),
                members=result.members,
                skipped=result.skipped,
            )
            audience.sync_source = source
            set_status(audience, "ready")
        return result
    except Exception as exc:
        with sessions.begin() as session:
            audience = session.get_one(Audience, audience_id)
            set_status(audience, "error", f"sync failed: {exc}"[:2000])
        raise


@contextmanager
def spooled(members: Iterable[ListMember]) -> Iterator[Iterator[ListMember]]:
    """The members read whole before any is written, kept on disk past a few MB: the write
    transaction then lasts as long as the writing, not as long as the service takes to answer
    (on SQLite an open write transaction blocks every other writer)."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, mode="w+") as spool:
        for member in members:
            spool.write(json.dumps(asdict(member), default=str) + "\n")
        spool.seek(0)
        yield (ListMember(**json.loads(line)) for line in spool)


def write_members(
    session: Session, audience: Audience, members: Iterable[ListMember]
) -> SyncResult:
    """The list's members become the audience's membership (and contacts of its workspace)."""
    session.execute(delete(StaticMember).where(StaticMember.audience_id == audience.id))
    tally = _Tally()
    rows = _rows(members, tally)
    while True:
        chunk = list(islice(rows, CHUNK))
        if not chunk:
            break
        _upsert_contacts(session, audience.workspace_id, chunk)
        now = utcnow()
        session.execute(
            insert(StaticMember),
            [
                {
                    **{name: value for name, value in row.items() if name != "joined_at"},
                    "audience_id": audience.id,
                    "added_at": row["joined_at"] or now,
                    "import_id": None,
                }
                for row in chunk
            ],
        )
    return SyncResult(audience.id, len(tally.seen), tally.skipped)


@dataclass
class _Tally:
    seen: set[str] = field(default_factory=set)
    skipped: int = 0  # profiles without a usable email


def _rows(members: Iterable[ListMember], tally: _Tally) -> Iterator[dict[str, Any]]:
    for member in members:
        email = (member.email or "").strip().lower()
        if not EMAIL.match(email) or len(email) > LIMITS["email"]:
            tally.skipped += 1
            continue
        if email in tally.seen:
            continue
        tally.seen.add(email)
        yield {
            "member_key": email,
            "email": email,
            "first_name": _fit(member.first_name, "first_name"),
            "last_name": _fit(member.last_name, "last_name"),
            "phone": _fit(member.phone_number, "phone"),
            "user_id": _fit(member.external_id, "user_id"),
            "last_active_at": None,
            "properties": member.properties,
            "joined_at": _when(member.joined_at),
        }


def _fit(value: str | None, name: str) -> str | None:
    return value if value is not None and len(value) <= LIMITS[name] else None


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _upsert_contacts(session: Session, workspace_id: str, rows: list[dict[str, Any]]) -> None:
    emails = [row["email"] for row in rows]
    existing = {
        contact.email: contact
        for contact in session.execute(
            select(Contact).where(Contact.workspace_id == workspace_id, Contact.email.in_(emails))
        ).scalars()
    }
    for row in rows:
        contact = existing.get(row["email"])
        if contact is None:
            session.add(
                Contact(
                    id=new_id(),
                    workspace_id=workspace_id,
                    email=row["email"],
                    first_name=row["first_name"],
                    last_name=row["last_name"],
                    phone=row["phone"],
                    user_id=row["user_id"],
                    properties=dict(row["properties"]),
                )
            )
            continue
        for name in ("first_name", "last_name", "phone", "user_id"):
            if row[name] is not None:
                setattr(contact, name, row[name])
        if row["properties"]:
            contact.properties = {**(contact.properties or {}), **row["properties"]}
    session.flush()

"""Delivering a handful of member keys of one sync, outside any run (contact events, retries).

The same machinery as a run, restricted to the keys: the audience's SQL with ``keys=...``, the
sync's mapping and payload hash, ``plan_diff`` against the keys' sync state, the connector, and
the state written exactly as a run writes it. So after an event push, the next scheduled run
finds nothing left to do for these keys.

Two things a run does not do:

- ``force``: re-send keys whose payload is unchanged (a retry on demand, or a re-push after a
  full run overlapped an event push and the order of their deliveries is unknown);
- ``erase``: remove keys from the destination whatever the sync mode (a GDPR deletion).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.event_models import ContactAudit
from shared.db.models import AudienceSync, SyncState
from shared.db.types import utcnow
from shared.delivery.connector import (
    BatchRejected,
    Connector,
    DestinationError,
    DestinationUnavailable,
    Outcome,
    Record,
)
from shared.domain.diff import Change, Current, Delivered, Op, SyncMode, plan_diff
from shared.domain.groups import split_filter
from shared.domain.mapping import FieldMapping, map_row, payload_hash
from shared.domain.members import source_for
from shared.execution import upsert_state

logger = logging.getLogger(__name__)


@dataclass
class KeyResult:
    """What happened to each key: ``op`` is the operation tried (or ``unchanged``)."""

    ops: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    requests: int = 0


def plan_keys(
    session: Session,
    sync: AudienceSync,
    keys: Collection[str],
    force: Collection[str] = (),
    erase: Collection[str] = (),
) -> list[Change]:
    """The diff for ``keys`` only, computed as a run computes it."""
    ordered = sorted(set(keys))
    mapping = FieldMapping.parse(sync.field_mapping)
    audience = sync.audience
    source = source_for(session, audience)
    keep = split_filter(session, sync.split_group_id)
    current = {
        member.key: Current(member.key, payload, payload_hash(payload))
        for member in source.iter_members(audience.rules, keys=ordered)
        if member.key not in erase and (keep is None or keep(member.key))
        for payload in (map_row(member.row, mapping),)
    }
    rows = {
        row.key: row
        for row in (
            Delivered(key, hash_, delivered, status == "failed", ref)
            for key, hash_, delivered, status, ref in session.execute(
                select(
                    SyncState.member_key,
                    SyncState.payload_hash,
                    SyncState.delivered,
                    SyncState.status,
                    SyncState.destination_ref,
                ).where(SyncState.sync_id == sync.id, SyncState.member_key.in_(ordered))
            )
        )
    }
    mode = SyncMode(sync.sync_mode)
    changes: list[Change] = []
    for key in ordered:
        row = rows.get(key)
        if key in erase:
            if row is not None and row.delivered:
                changes.append(Change(Op.REMOVE, key, destination_ref=row.destination_ref))
            elif row is not None:
                changes.append(Change(Op.FORGET, key))
            continue
        member = current.get(key)
        [change] = list(plan_diff([member] if member else [], [row] if row else [], mode)) or [
            Change(Op.UNCHANGED, key)
        ]
        if (
            key in force
            and change.op is Op.UNCHANGED
            and member is not None
            and row is not None
            and mode in (SyncMode.UPSERT, SyncMode.MIRROR)
        ):
            change = Change(
                Op.UPDATE, key, member.payload, member.payload_hash, row.destination_ref
            )
        changes.append(change)
    return changes


def deliver_changes(
    sessions: sessionmaker[Session],
    sync: AudienceSync,
    changes: Sequence[Change],
    connector: Connector,
    audit: Callable[[str], dict[str, Any]],
) -> KeyResult:
    """Send the changes and write state and audit rows in one transaction.

    ``audit(key)`` gives the audit row's context (workspace, event id) for a key.
    """
    result = KeyResult()
    upserts = [c for c in changes if c.op in (Op.ADD, Op.UPDATE)]
    removals = [c for c in changes if c.op is Op.REMOVE]
    outcomes: dict[str, Outcome] = {}
    before = connector.request_count
    if upserts or removals:
        connector.prepare(
            [item.destination_field for item in FieldMapping.parse(sync.field_mapping)]
        )
    for batch, call in ((upserts, connector.upsert), (removals, connector.remove)):
        if batch:
            outcomes.update(_send(batch, call))
    result.requests = connector.request_count - before
    now = utcnow()
    delivered_rows: list[dict[str, Any]] = []
    failed_rows: list[dict[str, Any]] = []
    gone: list[str] = []
    audits: list[dict[str, Any]] = []
    for change in changes:
        result.ops[change.key] = str(change.op)
        if change.op is Op.FORGET:
            gone.append(change.key)
            continue
        if change.op is Op.TRACK:
            delivered_rows.append(_state_row(sync.id, change, change.destination_ref, now))
            continue
        if change.op is Op.UNCHANGED:
            continue
        outcome = outcomes.get(change.key) or Outcome(
            change.key, False, error="the destination gave no answer for this record"
        )
        if outcome.ok:
            if change.op is Op.REMOVE:
                gone.append(change.key)
            else:
                delivered_rows.append(_state_row(sync.id, change, outcome.destination_ref, now))
        else:
            result.failed[change.key] = outcome.error
            failed_rows.append(
                {
                    "sync_id": sync.id,
                    "member_key": change.key,
                    "delivered": change.op is not Op.ADD,
                    "payload_hash": None,
                    "destination_ref": change.destination_ref,
                    "status": "failed",
                    "last_error": outcome.error,
                    "last_run_id": None,
                    "updated_at": now,
                }
            )
        audits.append(
            {
                **audit(change.key),
                "email": change.key,
                "operation": str(change.op),
                "target": sync.destination.type,
                "sync_id": sync.id,
                "destination_id": sync.destination_id,
                "result": "ok" if outcome.ok else "failed",
                "status_code": outcome.status_code,
                "message": outcome.error,
                "created_at": now,
            }
        )
    with sessions.begin() as session:
        upsert_state(session, delivered_rows, overwrite=True)
        upsert_state(session, failed_rows, overwrite=False)
        if gone:
            session.execute(
                delete(SyncState).where(
                    SyncState.sync_id == sync.id, SyncState.member_key.in_(gone)
                )
            )
        if audits:
            session.execute(insert(ContactAudit), audits)
    return result


def _state_row(sync_id: str, change: Change, ref: str | None, now: Any) -> dict[str, Any]:
    return {
        "sync_id": sync_id,
        "member_key": change.key,
        "payload_hash": change.payload_hash,
        "destination_ref": ref,
        "delivered": change.op is not Op.TRACK,
        "status": "synced",
        "last_error": "",
        "last_run_id": None,
        "updated_at": now,
    }


def _send(
    batch: Sequence[Change], call: Callable[[Sequence[Record]], Iterable[Outcome]]
) -> dict[str, Outcome]:
    """One call for the batch; a whole-batch refusal is retried record by record, and a
    destination that cannot be used fails every record with its reason."""
    records = [Record(c.key, c.payload or {}, c.destination_ref) for c in batch]
    outcomes: dict[str, Outcome] = {}
    try:
        for outcome in call(records):
            outcomes.setdefault(outcome.key, outcome)
    except BatchRejected as exc:
        if len(records) == 1:
            key = records[0].key
            return {key: Outcome(key, False, error=exc.message, status_code=exc.status)}
        for change in batch:
            if change.key not in outcomes:
                outcomes.update(_send([change], call))
    except (DestinationError, DestinationUnavailable) as exc:
        for record in records:
            outcomes.setdefault(record.key, Outcome(record.key, False, error=str(exc)))
    return outcomes

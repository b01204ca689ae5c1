"""Executing one sync run: plan the diff, deliver it in batches, record what happened.

The plan is computed twice, streaming both times: a first pass counts the work (the progress
total), the second delivers it. After every batch the destination confirmed, the sync state, the
run's counters and the per-record errors are written in one transaction, so a run that dies
half-way is resumed by the next delivery without re-sending confirmed work.

A service that allows several connections per account (Mailchimp: 10) gets that many batches at
once, from a small thread pool: its limit is on connections, not on requests per second, so one
batch at a time would use a tenth of it. Every key appears in one batch only, so parallel batches
never race on a record; the bookkeeping of each batch is still one transaction, taken in turn.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings
from shared.db.event_models import ContactAudit
from shared.db.models import Audience, AudienceSync, RunError, Source, SyncRun, SyncState
from shared.db.types import utcnow
from shared.delivery.connector import (
    BatchRejected,
    Connector,
    DestinationError,
    DestinationUnavailable,
    Outcome,
    Record,
)
from shared.delivery.registry import build_connector
from shared.domain.diff import (
    CALLS_DESTINATION,
    Change,
    Current,
    Delivered,
    Op,
    SyncMode,
    plan_diff,
)
from shared.domain.groups import UnknownSplit, split_filter
from shared.domain.mapping import FieldMapping, map_row, payload_hash
from shared.domain.members import ordered_key, source_for
from shared.logs import log_context, log_event
from shared.runs import Claim, beat, claim_run
from shared.sources import SourceError

logger = logging.getLogger(__name__)
SAVE_EVERY = 10  # outcomes saved per transaction when a connector yields them one by one
ConnectorFactory = Callable[..., Connector]


class LostOwnership(Exception):
    """Another worker took the run over (this one was thought dead): stop quietly."""


@dataclass
class BatchResult:
    counts: Counter[str] = field(default_factory=Counter)
    state_upserts: list[dict[str, Any]] = field(default_factory=list)
    state_failures: list[dict[str, Any]] = field(default_factory=list)
    state_deletes: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)


def execute_run(
    run_id: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    connector_factory: ConnectorFactory = build_connector,
) -> str:
    """Run ``run_id`` to its end if this worker can claim it; returns the run's final status."""
    with sessions.begin() as session:
        claim = claim_run(session, run_id, settings.run_lease_seconds)
    if claim is None:
        log_event(logger, "run.not_claimed", run_id=run_id)
        return "not_claimed"
    with sessions() as session:
        run = session.get_one(SyncRun, run_id)
        sync = session.get_one(AudienceSync, run.sync_id)
    with log_context(run_id=run_id, sync_id=sync.id), _Heartbeat(sessions, claim, settings):
        if claim.token > settings.max_deliveries:
            reason = f"gave up after {claim.token - 1} deliveries of this run"
            return _finish(sessions, claim, sync.id, "failed", reason)
        log_event(logger, "run.started", attempt=claim.token, mode=run.sync_mode)
        try:
            connector = connector_factory(sync.destination, settings)
        except Exception as exc:  # decryption or config problems are the operator's to fix
            return _finish(sessions, claim, sync.id, "failed", f"destination unusable: {exc}")
        try:
            return _Delivery(sessions, claim, sync, run, connector, settings).run()
        except LostOwnership:
            log_event(logger, "run.lost_ownership", level=logging.WARNING)
            return "lost_ownership"
        except DestinationError as exc:
            return _finish(sessions, claim, sync.id, "failed", str(exc), sync_error=True)
        except DestinationUnavailable as exc:
            return _finish(sessions, claim, sync.id, "failed", f"destination unavailable: {exc}")
        except UnknownSplit as exc:  # never send the whole audience for a split that is gone
            return _finish(sessions, claim, sync.id, "failed", str(exc), sync_error=True)
        except SourceError as exc:  # the audience's database went away mid-run
            return _finish(sessions, claim, sync.id, "failed", f"source unusable: {exc}")
        finally:
            connector.close()


class _Delivery:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        claim: Claim,
        sync: AudienceSync,
        run: SyncRun,
        connector: Connector,
        settings: Settings,
    ) -> None:
        self.sessions = sessions
        self.claim = claim
        self.sync = sync
        self.mode = SyncMode(run.sync_mode)
        self.connector = connector
        self.mapping = FieldMapping.parse(sync.field_mapping)
        connector.prepare([item.destination_field for item in self.mapping])
        cap = settings.batch_size or connector.batch_size
        self.batch_size = max(1, min(cap, connector.batch_size))
        self.requests_seen = 0
        self._record_lock = threading.Lock()
        # Contacts of the contact store get an audit row per operation, as event pushes do.
        self.audit_contacts = _reads_contact_store(sessions, sync)
        self.allow_mass_removal = run.allow_mass_removal
        self.earlier_paths = dict(run.delivery_paths or {})  # from deliveries before a crash
        self.max_removal_share = float(
            sync.config.get("max_removal_share", settings.max_removal_share)
        )
        self.removal_guard_min = int(
            sync.config.get("removal_guard_min", settings.removal_guard_min)
        )

    def run(self) -> str:
        totals = Counter(change.op for change in self._plan())
        planned = sum(totals[op] for op in CALLS_DESTINATION)
        self._record(BatchResult(), planned_total=planned)
        log_event(logger, "run.planned", **{str(op): n for op, n in totals.items()})
        refusal = self._removal_guard(totals[Op.REMOVE])
        if refusal:
            return _finish(self.sessions, self.claim, self.sync.id, "failed", refusal)
        if planned or totals[Op.TRACK] or totals[Op.FORGET]:
            self._deliver(self._plan())
        else:  # nothing to send or to note: skip the second pass
            self._record(BatchResult(counts=Counter(unchanged=totals[Op.UNCHANGED])))
        with self.sessions() as session:
            run = session.get_one(SyncRun, self.claim.run_id)
            status = "partial" if run.failed else "succeeded"
        return _finish(self.sessions, self.claim, self.sync.id, status, "")

    def connector_paths(self) -> dict[str, int]:
        """Records per delivery path so far in this run, this delivery included."""
        paths: dict[str, int] = dict(getattr(self.connector, "paths", {}) or {})
        for path, count in self.earlier_paths.items():
            paths[path] = paths.get(path, 0) + int(count)
        return paths

    def _removal_guard(self, removals: int) -> str:
        """Refuse to remove most of what this sync delivered in one run: when a source suddenly
        returns nothing, a mirror would otherwise empty the destination."""
        if self.allow_mass_removal or removals < self.removal_guard_min:
            return ""
        with self.sessions() as session:
            delivered = session.execute(
                select(func.count()).where(
                    SyncState.sync_id == self.sync.id, SyncState.delivered.is_(True)
                )
            ).scalar_one()
        if not delivered or removals / delivered <= self.max_removal_share:
            return ""
        return (
            f"removal guard: this run would remove {removals} of the {delivered} records this sync "
            f"delivered ({removals / delivered:.0%}), more than the limit of "
            f"{self.max_removal_share:.0%}. Nothing was sent. Check the audience and its source; "
            'to go ahead once, trigger the sync with {"allow_mass_removal": true}.'
        )

    def _deliver(self, plan: Iterator[Change]) -> None:
        """Send full batches as the plan streams by; unchanged members cost nothing."""
        upserts: list[Change] = []
        removals: list[Change] = []
        bookkeeping = BatchResult()
        with _InFlight(self.connector.connections) as in_flight:
            for change in plan:
                if change.op is Op.UNCHANGED:
                    bookkeeping.counts["unchanged"] += 1
                elif change.op is Op.TRACK:
                    bookkeeping.state_upserts.append(
                        self._delivered_row(change, change.destination_ref)
                    )
                elif change.op is Op.FORGET:
                    bookkeeping.state_deletes.append(change.key)
                elif change.op is Op.REMOVE:
                    removals.append(change)
                    if len(removals) >= self.batch_size:
                        in_flight.submit(self._send, removals, self.connector.remove)
                        removals = []
                else:
                    upserts.append(change)
                    if len(upserts) >= self.batch_size:
                        in_flight.submit(self._send, upserts, self.connector.upsert)
                        upserts = []
                if len(bookkeeping.state_upserts) + len(bookkeeping.state_deletes) >= 1000:
                    self._record(bookkeeping)
                    bookkeeping = BatchResult()
            if upserts:
                in_flight.submit(self._send, upserts, self.connector.upsert)
            if removals:
                in_flight.submit(self._send, removals, self.connector.remove)
        self._record(bookkeeping)

    def _plan(self) -> Iterator[Change]:
        """Stream the diff; each pass opens its own read session."""
        with self.sessions() as session:
            audience = self.sync.audience
            source = source_for(session, audience)
            keep = split_filter(session, self.sync.split_group_id)  # an A/B split: its part only
            current = (
                Current(member.key, payload, payload_hash(payload))
                for member in source.iter_members(audience.rules)
                if keep is None or keep(member.key)
                for payload in (map_row(member.row, self.mapping),)
            )
            yield from plan_diff(current, self._state(session), self.mode)

    def _state(self, session: Session) -> Iterator[Delivered]:
        dialect = session.get_bind().dialect.name
        statement = (
            select(
                SyncState.member_key,
                SyncState.payload_hash,
                SyncState.delivered,
                SyncState.status,
                SyncState.destination_ref,
            )
            .where(SyncState.sync_id == self.sync.id)
            .order_by(ordered_key(SyncState.member_key, dialect))
            .execution_options(yield_per=2000, stream_results=True)
        )
        for key, hash_, delivered, status, ref in session.execute(statement):
            yield Delivered(key, hash_, delivered, status == "failed", ref)

    def _send(self, batch: Sequence[Change], call: Callable[[Sequence[Record]], Any]) -> None:
        """Deliver one batch, saving outcomes as they arrive (a connector that yields them
        record by record gets its work saved every few records, not only at the end).

        A batch the service rejects as a whole (``BatchRejected``) is split in halves until the
        bad records are isolated: the good ones are delivered, the bad ones fail alone.
        """
        changes = {change.key: change for change in batch}
        records = [
            Record(change.key, change.payload or {}, change.destination_ref) for change in batch
        ]
        answered: dict[str, Outcome] = {}
        saved = 0

        def save() -> None:
            nonlocal saved
            keys = list(answered)[saved:]
            if keys:
                self._record(self._result([changes[key] for key in keys], answered))
            saved = len(answered)

        def unanswered() -> list[Change]:
            return [change for key, change in changes.items() if key not in answered]

        try:
            outcomes = call(records)
            # A list came back whole: one transaction. Outcomes yielded one by one as the
            # service answers are saved every few, so a long call's progress survives a crash.
            every = len(records) if isinstance(outcomes, Sequence) else SAVE_EVERY
            for outcome in outcomes:
                if outcome.key in changes and outcome.key not in answered:
                    answered[outcome.key] = outcome
                    if len(answered) - saved >= every:
                        save()
        except BatchRejected as exc:
            save()
            rest = unanswered()
            if len(rest) == 1:
                failed = Outcome(rest[0].key, False, error=exc.message, status_code=exc.status)
                self._record(self._result(rest, {failed.key: failed}))
                return
            half = len(rest) // 2
            self._send(rest[:half], call)
            self._send(rest[half:], call)
            return
        except DestinationUnavailable as exc:
            save()
            rest = unanswered()
            self._record(
                self._result(rest, {c.key: Outcome(c.key, False, error=str(exc)) for c in rest})
            )
            raise
        save()
        if rest := unanswered():
            self._record(self._result(rest, {}))

    def _result(self, batch: Sequence[Change], outcomes: dict[str, Outcome]) -> BatchResult:
        result = BatchResult()
        now = utcnow()
        for change in batch:
            outcome = outcomes.get(change.key) or Outcome(
                change.key, False, error="the destination gave no answer for this record"
            )
            result.counts["processed"] += 1
            if self.audit_contacts:
                result.audits.append(self._audit_row(change, outcome, now))
            if outcome.ok:
                if change.op is Op.REMOVE:
                    result.state_deletes.append(change.key)
                    result.counts["removed"] += 1
                else:
                    result.state_upserts.append(
                        self._delivered_row(change, outcome.destination_ref)
                    )
                    result.counts["added" if change.op is Op.ADD else "updated"] += 1
                continue
            result.counts["failed"] += 1
            result.state_failures.append(
                {
                    "sync_id": self.sync.id,
                    "member_key": change.key,
                    "delivered": change.op is not Op.ADD,
                    "payload_hash": None,
                    "destination_ref": change.destination_ref,
                    "status": "failed",
                    "last_error": outcome.error,
                    "last_run_id": self.claim.run_id,
                    "updated_at": utcnow(),
                }
            )
            result.errors.append(
                {
                    "run_id": self.claim.run_id,
                    "member_key": change.key,
                    "operation": str(change.op),
                    "status_code": outcome.status_code,
                    "message": outcome.error,
                }
            )
        return result

    def _audit_row(self, change: Change, outcome: Outcome, now: datetime) -> dict[str, Any]:
        return {
            "workspace_id": self.sync.workspace_id,
            "email": change.key,
            "operation": str(change.op),
            "target": self.connector.type,
            "sync_id": self.sync.id,
            "destination_id": self.sync.destination_id,
            "run_id": self.claim.run_id,
            "result": "ok" if outcome.ok else "failed",
            "status_code": outcome.status_code,
            "message": outcome.error,
            "created_at": now,
        }

    def _delivered_row(self, change: Change, ref: str | None) -> dict[str, Any]:
        return {
            "sync_id": self.sync.id,
            "member_key": change.key,
            "payload_hash": change.payload_hash,
            "destination_ref": ref,
            "delivered": True,
            "status": "synced",
            "last_error": "",
            "last_run_id": self.claim.run_id,
            "updated_at": utcnow(),
        }

    def _record(self, result: BatchResult, planned_total: int | None = None) -> None:
        """Write one batch's outcome and the run's counters in one transaction."""
        with self._record_lock:
            self._record_locked(result, planned_total)

    def _record_locked(self, result: BatchResult, planned_total: int | None) -> None:
        requests = self.connector.request_count
        counts = result.counts
        with self.sessions.begin() as session:
            upsert_state(session, result.state_upserts, overwrite=True)
            upsert_state(session, result.state_failures, overwrite=False)
            if result.state_deletes:
                session.execute(
                    delete(SyncState).where(
                        SyncState.sync_id == self.sync.id,
                        SyncState.member_key.in_(result.state_deletes),
                    )
                )
            if result.errors:
                session.execute(insert(RunError), result.errors)
            if result.audits:
                session.execute(insert(ContactAudit), result.audits)
            values: dict[str, Any] = {
                name: getattr(SyncRun, name) + counts[name]
                for name in ("processed", "added", "updated", "removed", "unchanged", "failed")
                if counts[name]
            }
            values["destination_requests"] = SyncRun.destination_requests + (
                requests - self.requests_seen
            )
            values["heartbeat_at"] = utcnow()
            paths = self.connector_paths()
            if paths:
                values["delivery_paths"] = paths
            if planned_total is not None:
                values["planned_total"] = SyncRun.processed + planned_total
            owned = session.execute(
                update(SyncRun)
                .where(
                    SyncRun.id == self.claim.run_id,
                    SyncRun.attempts == self.claim.token,
                    SyncRun.status == "running",
                )
                .values(**values)
            )
        self.requests_seen = requests
        if owned.rowcount != 1:  # type: ignore[attr-defined]
            raise LostOwnership(self.claim.run_id)


def _reads_contact_store(sessions: sessionmaker[Session], sync: AudienceSync) -> bool:
    with sessions() as session:
        audience = session.get_one(Audience, sync.audience_id)
        if audience.source_id is None:
            return True
        return session.get_one(Source, audience.source_id).kind == "contacts"


class _InFlight:
    """Batches for a connector allowing ``connections`` requests at once. With one, a batch is
    sent in the calling thread, as it always was. With more, twice as many threads as
    connections take batches, so that while some build or record theirs, others hold every
    connection (the client itself never exceeds its connections). A batch that fails stops new
    ones from starting; the ones already on their way finish and are recorded, then the first
    failure is raised."""

    def __init__(self, connections: int) -> None:
        self.width = 1 if connections <= 1 else 2 * connections
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[Future[None]] = set()

    def __enter__(self) -> _InFlight:
        if self.width > 1:
            self._pool = ThreadPoolExecutor(self.width, thread_name_prefix="run-batch")
        return self

    def submit(self, send: Callable[..., None], *args: Any) -> None:
        if self._pool is None:
            send(*args)
            return
        self._settle({future for future in self._pending if future.done()})
        if len(self._pending) >= self.width:
            self._settle(wait(self._pending, return_when=FIRST_COMPLETED).done)
        self._pending.add(self._pool.submit(send, *args))

    def __exit__(self, exc_type: object, *_exc: object) -> None:
        if self._pool is None:
            return
        done = wait(self._pending).done
        self._pool.shutdown()
        if exc_type is None:
            self._settle(done)

    def _settle(self, done: set[Future[None]]) -> None:
        self._pending -= done
        for future in done:
            future.result()  # raises the batch's failure in the run's thread


def upsert_state(session: Session, rows: list[dict[str, Any]], overwrite: bool) -> None:
    """Insert or update state rows. A failure keeps what was last delivered (hash, flag)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = dialect_insert(SyncState)
    columns = (
        ["payload_hash", "destination_ref", "delivered", "status", "last_error"]
        if overwrite
        else ["status", "last_error"]
    )
    columns += ["last_run_id", "updated_at"]
    statement = statement.on_conflict_do_update(
        index_elements=["sync_id", "member_key"],
        set_={name: statement.excluded[name] for name in columns},
    )
    session.execute(statement, rows)


def _finish(
    sessions: sessionmaker[Session],
    claim: Claim,
    sync_id: str,
    status: str,
    error: str,
    sync_error: bool = False,
) -> str:
    now = utcnow()
    with sessions.begin() as session:
        finished = session.execute(
            update(SyncRun)
            .where(
                SyncRun.id == claim.run_id,
                SyncRun.attempts == claim.token,
                SyncRun.status == "running",
            )
            .values(status=status, error=error, finished_at=now)
        )
        if finished.rowcount != 1:  # type: ignore[attr-defined]
            return "lost_ownership"
        sync = session.get_one(AudienceSync, sync_id)
        if status in ("succeeded", "partial"):
            sync.last_synced_at = now
            if sync.status == "error":
                sync.status, sync.status_error = "active", ""
        elif sync_error:
            sync.status, sync.status_error = "error", error
    log_event(logger, "run.finished", status=status, error=error)
    return status


class _Heartbeat:
    """Keeps the run's heartbeat fresh from a thread while the worker is busy (even asleep on a
    rate-limit wait), so the sweeper only takes over runs whose worker is really gone."""

    def __init__(self, sessions: sessionmaker[Session], claim: Claim, settings: Settings) -> None:
        self.sessions = sessions
        self.claim = claim
        self.interval = settings.heartbeat_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="run-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self.sessions.begin() as session:
                    if not beat(session, self.claim):
                        return
            except Exception:  # a missed beat is retried; never kill the run for it
                logger.warning("run.heartbeat_failed", exc_info=True)

"""The marketing sync: "put my (active) users into a new Resend segment", in one call.

It is a shortcut through the normal machinery, not a second sync engine: one call makes an
audience (rules from the activity filter), a Resend segment, a destination pointing at that
segment, an add-mode audience sync and a run, and the worker delivers the run like any other.
Which workspace, source and Resend account it uses is configuration (``MarketingSettings``),
because the caller authenticates with a shared secret, not as a workspace.

Creating the segment is the one destination call made outside a run: its id must exist before
the destination row that points at it, and the caller is answered with it. It happens before
anything is written, so a Resend failure leaves nothing behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Boolean, insert, literal, select
from sqlalchemy.orm import Session, sessionmaker

from shared.config import get_settings
from shared.db.models import (
    ACTIVE_RUN_STATUSES,
    Audience,
    AudienceSync,
    Destination,
    Source,
    SyncRun,
    SyncState,
    Workspace,
)
from shared.db.types import UTCDateTime, utcnow
from shared.delivery.base import json_body
from shared.delivery.connector import DestinationError
from shared.delivery.http import DeliveryClient, RetryPolicy
from shared.delivery.limiter import AccountLimiter, account_key
from shared.delivery.resend import ResendConnector
from shared.domain.members import source_for
from shared.domain.rules import validate_rules
from shared.runs import create_run
from shared.secrets import decrypt_json

# Marks the syncs this module creates: "new" skips members any of them delivered.
ORIGIN = "marketing"
PLATFORMS = ("resend",)
SAMPLE_SIZE = 5
# A contact field, then the destination field it fills on Resend.
CONTACT_MAPPING = (("email", "email"), ("first_name", "first_name"), ("last_name", "last_name"))
TAGS_PROPERTY = "tags"

SyncType = Literal["all", "new", "specific"]


class MarketingSettings(BaseSettings):
    """``MARKETING_*`` variables. Read on every request, so a change needs no code reload."""

    model_config = SettingsConfigDict(env_prefix="MARKETING_", extra="ignore")

    api_secret: SecretStr | None = Field(
        default=None, description="the Bearer secret callers send; unset = endpoint disabled"
    )
    workspace_id: str | None = Field(default=None, description="the workspace whose users sync")
    destination_id: str | None = Field(
        default=None, description="a Resend destination of that workspace: account and base URL"
    )
    source_id: str | None = Field(
        default=None, description="a source of that workspace; default its contact store"
    )
    wait_seconds: float = Field(default=300.0, gt=0, description="longest wait for ?wait=true")
    resend_attempts: int = Field(
        default=3, ge=1, le=10, description="tries to create a segment before answering 502"
    )


class MarketingNotConfigured(Exception):
    """The operator has not (correctly) configured the endpoint; the caller cannot fix it."""


class SegmentRefused(Exception):
    """Resend refused the segment request for a reason the caller can fix (a bad name or id)."""


@dataclass(frozen=True)
class MarketingTarget:
    """Where marketing syncs read and write, resolved from ``MarketingSettings``."""

    workspace_id: str
    source_id: str | None
    destination: Destination | None


@dataclass(frozen=True)
class SampleUser:
    email: str
    full_name: str | None
    first_name: str | None
    last_name: str | None


@dataclass(frozen=True)
class Preview:
    count: int
    sample: list[SampleUser]


@dataclass(frozen=True)
class StartedSync:
    audience: Audience
    destination: Destination
    sync: AudienceSync
    run: SyncRun
    skipped: int


def resolve_target(
    session: Session, settings: MarketingSettings, need_destination: bool
) -> MarketingTarget:
    """Check the configuration against the database; every problem names the variable."""
    if not settings.workspace_id:
        raise MarketingNotConfigured("MARKETING_WORKSPACE_ID is not set")
    if session.get(Workspace, settings.workspace_id) is None:
        raise MarketingNotConfigured("MARKETING_WORKSPACE_ID names no workspace")
    if settings.source_id:
        source = session.get(Source, settings.source_id)
        if source is None or source.workspace_id != settings.workspace_id:
            raise MarketingNotConfigured("MARKETING_SOURCE_ID names no source of the workspace")
    destination = None
    if need_destination:
        if not settings.destination_id:
            raise MarketingNotConfigured("MARKETING_DESTINATION_ID is not set")
        destination = session.get(Destination, settings.destination_id)
        if destination is None or destination.workspace_id != settings.workspace_id:
            raise MarketingNotConfigured(
                "MARKETING_DESTINATION_ID names no destination of the workspace"
            )
        if destination.type not in PLATFORMS:
            raise MarketingNotConfigured(
                f"MARKETING_DESTINATION_ID is a {destination.type} destination; "
                f"it must be one of {list(PLATFORMS)}"
            )
    return MarketingTarget(settings.workspace_id, settings.source_id, destination)


def activity_rules(
    filter_active: bool, active_days: int, user_ids: Sequence[str] | None = None
) -> dict[str, Any]:
    """Audience rules for the endpoint's filters; ``{}`` (everyone) without any filter."""
    conditions: list[dict[str, Any]] = []
    if filter_active:
        conditions.append(
            {"field": "last_active_at", "op": "within_last_days", "value": active_days}
        )
    if user_ids:
        conditions.append({"field": "user_id", "op": "in", "value": list(user_ids)})
    return {"all": conditions} if conditions else {}


def draft_audience(target: MarketingTarget, rules: dict[str, Any], name: str = "") -> Audience:
    """An unsaved audience: what ``source_for`` needs to pick and check the source."""
    return Audience(
        workspace_id=target.workspace_id,
        source_id=target.source_id,
        name=name,
        kind="rules",
        rules=rules,
    )


def check_rules(session: Session, audience: Audience) -> None:
    """Raise ``RuleError`` when the source cannot evaluate the rules (e.g. no activity column)."""
    validate_rules(audience.rules, source_for(session, audience).resolve)


def preview(session: Session, audience: Audience, size: int = SAMPLE_SIZE) -> Preview:
    """How many members the rules match, and the first ``size`` of them in member-key order."""
    source = source_for(session, audience)
    count = source.count(audience.rules)
    sample = [sample_user(member.row) for member in source.page(audience.rules, size).members]
    return Preview(count, sample)


def sample_user(row: dict[str, Any]) -> SampleUser:
    first, last = row.get("first_name"), row.get("last_name")
    full = " ".join(str(part) for part in (first, last) if part) or None
    return SampleUser(str(row.get("email") or ""), full, first, last)


def default_audience_name(now: datetime | None = None) -> str:
    return f"Audience {(now or datetime.now(UTC)).date().isoformat()}"


# --- Resend segments ---------------------------------------------------------------------------


def segment_client(destination: Destination, attempts: int) -> DeliveryClient:
    """A client for the destination's Resend account, on the account's shared rate limiter
    (the same one every run to that account waits on), with few retries: a person waits."""
    credentials = decrypt_json(destination.credentials_encrypted)
    settings = get_settings()
    policy = RetryPolicy(
        max_attempts=attempts,
        backoff_initial=min(settings.backoff_initial_seconds, 0.5),
        backoff_max=min(settings.backoff_max_seconds, 2.0),
        max_rate_limit_wait=30.0,
        timeout=min(settings.http_timeout_seconds, 15.0),
    )
    base_url = ResendConnector.base_url(destination.config, credentials)
    client = DeliveryClient(base_url, ResendConnector.auth_headers(credentials), policy)
    if settings.redis_url:
        rate = destination.config.get("rate_limit") or ResendConnector.default_rate
        client.limiter = AccountLimiter(
            settings.redis_url,
            account_key(destination.type, base_url, json.dumps(credentials, sort_keys=True)),
            rate=float(rate),
            concurrency=ResendConnector.max_concurrency,
        )
    return client


def create_segment(client: DeliveryClient, name: str) -> str:
    """``POST /segments``; the new segment's id. Retries and 429 waits are the client's."""
    response = client.request("POST", "/segments", json={"name": name})
    _raise_for_refusal(response, "create the segment")
    segment_id = json_body(response).get("id")
    if not isinstance(segment_id, str) or not segment_id:
        raise DestinationError("Resend answered the segment creation without a segment id")
    return segment_id


def find_segment(client: DeliveryClient, segment_id: str) -> dict[str, Any] | None:
    """``GET /segments/{id}``; ``None`` when the account has no such segment."""
    response = client.request("GET", f"/segments/{quote(segment_id, safe='')}")
    if response.status_code == 404:
        return None
    _raise_for_refusal(response, "read the segment")
    return json_body(response)


def delete_segment(client: DeliveryClient, segment_id: str) -> None:
    """Best effort: undo a segment whose rows could not be written."""
    client.request("DELETE", f"/segments/{quote(segment_id, safe='')}")


def _raise_for_refusal(response: httpx.Response, doing: str) -> None:
    if response.is_success:
        return
    reason = ResendConnector.error_message(response)
    if response.status_code in (401, 403):
        raise DestinationError(f"Resend refused the configured destination's credentials: {reason}")
    if response.status_code in (400, 404, 409, 422):
        raise SegmentRefused(f"Resend refused to {doing}: {reason}")
    raise DestinationError(f"Resend could not {doing}: {reason}")


# --- the sync ----------------------------------------------------------------------------------


def field_mapping(tags: Sequence[str]) -> list[dict[str, Any]]:
    """Contact columns to Resend contact fields; tags (if any) as one ``tags`` property, the
    tags joined by commas (Resend contacts have properties, not tags)."""
    mapping: list[dict[str, Any]] = [
        {"source_column": column, "destination_field": field, "transforms": []}
        for column, field in CONTACT_MAPPING
    ]
    if tags:
        mapping.append(
            {"constant": ",".join(tags), "destination_field": TAGS_PROPERTY, "transforms": []}
        )
    return mapping


def check_mapping_columns(session: Session, audience: Audience) -> None:
    source = source_for(session, audience)
    missing = [column for column, _ in CONTACT_MAPPING if not source.has_field(column)]
    if missing:
        raise MarketingNotConfigured(f"the marketing source has no column(s) {missing}")


def segment_destination(session: Session, base: Destination, segment_id: str) -> Destination:
    """The destination for one segment: the configured one when it already points there, an
    earlier marketing destination of the same account and segment, or a new copy of the
    configured destination (same encrypted credentials) with ``config.segment_id`` set."""
    if base.config.get("segment_id") == segment_id:
        return base
    candidates = session.execute(
        select(Destination).where(
            Destination.workspace_id == base.workspace_id,
            Destination.type == base.type,
            Destination.credentials_encrypted == base.credentials_encrypted,
        )
    ).scalars()
    for candidate in candidates:
        config = candidate.config or {}
        if config.get("marketing_base_id") == base.id and config.get("segment_id") == segment_id:
            return candidate
    config = {**base.config, "segment_id": segment_id, "marketing_base_id": base.id}
    destination = Destination(
        workspace_id=base.workspace_id,
        name=f"{base.name} / segment {segment_id}"[:200],
        type=base.type,
        config=config,
        credentials_encrypted=base.credentials_encrypted,
    )
    session.add(destination)
    session.flush()
    return destination


def start_marketing_sync(
    session: Session,
    audience: Audience,
    base_destination: Destination,
    segment_id: str,
    sync_type: SyncType,
    tags: Sequence[str],
) -> StartedSync:
    """Write the audience, destination, add-mode sync and pending run. The caller commits and
    then publishes the run (never the other way round)."""
    session.add(audience)
    session.flush()
    destination = segment_destination(session, base_destination, segment_id)
    sync = AudienceSync(
        workspace_id=audience.workspace_id,
        audience_id=audience.id,
        destination_id=destination.id,
        name=f"marketing: {audience.name}"[:200],
        description=audience.description,
        field_mapping=field_mapping(tags),
        sync_mode="add",
        status="active",
        config={"origin": ORIGIN, "sync_type": sync_type, "tags": list(tags)},
        schedule_changed_at=utcnow(),
    )
    session.add(sync)
    session.flush()
    skipped = skip_delivered_by_marketing(session, sync) if sync_type == "new" else 0
    run = create_run(session, sync, "api")
    return StartedSync(audience, destination, sync, run, skipped)


def skip_delivered_by_marketing(session: Session, sync: AudienceSync) -> int:
    """For ``sync_type: new``: mark every member an earlier marketing sync of the workspace
    delivered as already delivered for this sync too (status ``skipped``), so the add-mode diff
    leaves them out. One INSERT ... SELECT, whatever the number of members."""
    earlier = [
        sync_id
        for sync_id, config in session.execute(
            select(AudienceSync.id, AudienceSync.config).where(
                AudienceSync.workspace_id == sync.workspace_id, AudienceSync.id != sync.id
            )
        )
        if (config or {}).get("origin") == ORIGIN
    ]
    if not earlier:
        return 0
    delivered = (
        select(
            SyncState.member_key,
            literal(sync.id).label("sync_id"),
            literal(True, Boolean()).label("delivered"),
            literal("skipped").label("status"),
            literal("").label("last_error"),
            literal(utcnow(), UTCDateTime()).label("updated_at"),
        )
        .where(SyncState.sync_id.in_(earlier), SyncState.delivered.is_(True))
        .group_by(SyncState.member_key)
    )
    result = session.execute(
        insert(SyncState).from_select(
            ["member_key", "sync_id", "delivered", "status", "last_error", "updated_at"],
            delivered,
        )
    )
    count = int(result.rowcount)  # type: ignore[attr-defined]
    sync.config = {**sync.config, "skipped_already_delivered": count}
    return count


def wait_for_run(
    sessions: sessionmaker[Session],
    run_id: str,
    timeout: float,
    interval: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncRun:
    """Poll the run row (a fresh transaction each time) until it ends or ``timeout`` passes;
    returns the last state seen, finished or not."""
    deadline = time.monotonic() + timeout
    while True:
        with sessions() as session:
            run = session.get_one(SyncRun, run_id)
        if run.status not in ACTIVE_RUN_STATUSES or time.monotonic() >= deadline:
            return run
        sleep(min(interval, max(deadline - time.monotonic(), 0.0)))

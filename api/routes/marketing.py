"""Seed 000's marketing sync endpoint: ``GET`` / ``POST /api/v1/marketing/sync-users``.

Authenticated by one shared secret (``MARKETING_API_SECRET``), not by workspace tokens: the
caller is a marketing tool or script, and which workspace, source and Resend account it reaches
is the operator's configuration (``shared.marketing.MarketingSettings``, see
docs/marketing-endpoint.md). The route validates, authenticates, creates the segment, writes
the rows, commits, then publishes the run; the worker does the delivery.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from api.deps import DbSession
from api.errors import ApiError
from api.schemas import SyncRunOut
from shared.db.models import SyncRun
from shared.db.session import get_sessionmaker
from shared.delivery.connector import DestinationError, DestinationUnavailable
from shared.delivery.http import DeliveryClient
from shared.domain.rules import RuleError
from shared.logs import log_event
from shared.marketing import (
    PLATFORMS,
    MarketingNotConfigured,
    MarketingSettings,
    MarketingTarget,
    SegmentRefused,
    activity_rules,
    check_mapping_columns,
    check_rules,
    create_segment,
    default_audience_name,
    delete_segment,
    draft_audience,
    find_segment,
    preview,
    resolve_target,
    segment_client,
    start_marketing_sync,
    wait_for_run,
)
from shared.runs import mark_published
from shared.secrets import SecretKeyError
from shared.sources import SourceError
from worker.publish import publish_run

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/marketing", tags=["marketing"])
marketing_bearer = HTTPBearer(
    auto_error=False, description="The marketing secret (`MARKETING_API_SECRET`), not a token"
)
MAX_USER_IDS = 10_000  # a rule's IN list; SQLite binds at most 32,766 parameters


def marketing_settings(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(marketing_bearer)],
) -> MarketingSettings:
    """The settings, once the caller proved it knows the secret (compared in constant time).

    Unset secret: 503, the endpoint is off until the operator turns it on (no key can be right).
    """
    settings = MarketingSettings()
    if settings.api_secret is None or not settings.api_secret.get_secret_value():
        raise ApiError(
            503,
            "the marketing endpoint is not configured (MARKETING_API_SECRET is unset)",
            code="not_configured",
        )
    if credentials is None:
        raise ApiError(401, "missing marketing API key (Authorization: Bearer ...)")
    expected = settings.api_secret.get_secret_value().encode()
    if not hmac.compare_digest(credentials.credentials.encode(), expected):
        raise ApiError(401, "invalid marketing API key")
    return settings


Marketing = Annotated[MarketingSettings, Depends(marketing_settings)]


class SyncUsersRequest(BaseModel):
    """Seed 000's body (its camelCase and snake_case names as they are)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    audience_name: str | None = Field(
        default=None, alias="audienceName", min_length=1, max_length=200,
        description='the new segment\'s name; default "Audience YYYY-MM-DD" (UTC date)',
    )  # fmt: skip
    audience_description: str = Field(
        default="", alias="audienceDescription", max_length=2000,
        description="kept on our audience row (Resend segments have no description)",
    )  # fmt: skip
    filter_active: bool = Field(default=False, alias="filterActive")
    active_days: int = Field(default=30, alias="activeDays", ge=0, le=36500)
    platform: str = Field(default="resend", description=f"one of {list(PLATFORMS)}")
    list_id: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="an existing segment to sync into instead of creating one",
    )  # fmt: skip
    sync_type: Literal["all", "new", "specific"] = "all"
    user_ids: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=MAX_USER_IDS
    )
    tags: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=50
    )

    @field_validator("platform")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value.lower() not in PLATFORMS:
            raise ValueError(f"platform {value!r} is not supported; supported: {list(PLATFORMS)}")
        return value.lower()

    @field_validator("audience_name")
    @classmethod
    def _named(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value.strip() if value is not None else None

    @field_validator("tags")
    @classmethod
    def _no_commas(cls, value: list[str]) -> list[str]:
        if any("," in tag for tag in value):
            raise ValueError("a tag cannot contain a comma (tags are stored comma-separated)")
        return value

    @model_validator(mode="after")
    def _user_ids_with_specific(self) -> SyncUsersRequest:
        if self.sync_type == "specific" and not self.user_ids:
            raise ValueError('user_ids is required (non-empty) when sync_type is "specific"')
        if self.sync_type != "specific" and self.user_ids:
            raise ValueError('user_ids is only used with sync_type "specific"')
        return self


class SampleUserOut(BaseModel):
    email: str
    full_name: str | None
    first_name: str | None
    last_name: str | None


class PreviewOut(BaseModel):
    success: bool = True
    count: int
    sample: list[SampleUserOut]


class SegmentOut(BaseModel):
    id: str = Field(description="the Resend segment id")
    name: str


class SyncStartedOut(BaseModel):
    success: bool = True
    audience: SegmentOut
    audience_id: str = Field(description="our audience row")
    destination_id: str
    sync_id: str
    run: SyncRunOut
    message: str


class SyncFinishedOut(BaseModel):
    success: bool
    audience: SegmentOut
    contactsAdded: int
    message: str
    audience_id: str
    sync_id: str
    run: SyncRunOut


def _target(session: DbSession, settings: MarketingSettings, destination: bool) -> MarketingTarget:
    try:
        return resolve_target(session, settings, need_destination=destination)
    except MarketingNotConfigured as exc:
        raise _misconfigured(exc) from None


def _misconfigured(exc: Exception) -> ApiError:
    """The operator's configuration is wrong: 503 naming the variable, nothing secret."""
    return ApiError(503, f"the marketing endpoint is misconfigured: {exc}", code="not_configured")


@contextmanager
def source_errors() -> Iterator[None]:
    """Reading the source: a filter it cannot apply is 422, a source that cannot be reached
    502 (its message names the source, never its password), a wrong configuration 503."""
    try:
        yield
    except RuleError as exc:
        raise ApiError(
            422,
            f"the marketing source cannot apply this filter: {exc}",
            details={"path": exc.path, "reason": exc.message},
        ) from None
    except MarketingNotConfigured as exc:
        raise _misconfigured(exc) from None
    except SourceError as exc:
        raise ApiError(502, f"the marketing source failed: {exc}", "source_unavailable") from None


@router.get(
    "/sync-users",
    response_model=PreviewOut,
    summary="Preview how many users a marketing sync would send, and the first 5",
)
def preview_sync_users(
    settings: Marketing,
    session: DbSession,
    filter_active: Annotated[bool, Query(alias="filterActive")] = False,
    active_days: Annotated[int, Query(alias="activeDays", ge=0, le=36500)] = 30,
) -> PreviewOut:
    target = _target(session, settings, destination=False)
    audience = draft_audience(target, activity_rules(filter_active, active_days))
    with source_errors():
        result = preview(session, audience)
    return PreviewOut(
        count=result.count,
        sample=[SampleUserOut(**vars(user)) for user in result.sample],
    )


@router.post(
    "/sync-users",
    status_code=202,
    response_model=None,
    summary="Create a Resend segment and sync the filtered users into it",
    responses={
        202: {"model": SyncStartedOut, "description": "the run is queued"},
        200: {"model": SyncFinishedOut, "description": "with ?wait=true: the run finished"},
    },
)
def sync_users(
    settings: Marketing,
    session: DbSession,
    body: SyncUsersRequest | None = None,
    wait: Annotated[bool, Query(description="wait for the run to finish")] = False,
) -> JSONResponse:
    body = body or SyncUsersRequest()  # every field has a default: no body is a fine request
    target = _target(session, settings, destination=True)
    assert target.destination is not None
    rules = activity_rules(body.filter_active, body.active_days, body.user_ids)
    audience = draft_audience(target, rules)
    audience.description = body.audience_description
    with source_errors():
        check_rules(session, audience)
        check_mapping_columns(session, audience)

    try:
        client = segment_client(target.destination, settings.resend_attempts)
    except SecretKeyError as exc:
        raise _misconfigured(exc) from None
    created = False
    try:
        with client_errors():
            if body.list_id:
                segment = find_segment(client, body.list_id)
                if segment is None:
                    raise ApiError(
                        422, f"list_id {body.list_id!r} is not a segment of the Resend account"
                    )
                segment_id = body.list_id
                name = body.audience_name or str(segment.get("name") or segment_id)
            else:
                name = body.audience_name or default_audience_name()
                segment_id = create_segment(client, name)
                created = True
        audience.name = name
        try:
            started = start_marketing_sync(
                session, audience, target.destination, segment_id, body.sync_type, body.tags
            )
            session.commit()
        except BaseException:
            session.rollback()
            if created:  # leave nothing half-written on Resend either
                _undo_segment(client, segment_id)
            raise
    finally:
        client.close()

    run_id = started.run.id
    if publish_run(run_id):
        mark_published(session, run_id)
        session.commit()
    segment_out = SegmentOut(id=segment_id, name=name)
    log_event(
        logger, "marketing.sync_started", run_id=run_id, sync_id=started.sync.id,
        sync_type=body.sync_type, skipped=started.skipped,
    )  # fmt: skip
    run: SyncRun = started.run
    if wait:
        run = wait_for_run(get_sessionmaker(), run_id, settings.wait_seconds)
    if run.status in ("pending", "running"):
        message = (
            f"Segment '{name}' ready; the sync is {run.status}"
            + (" (still running when the wait ended)" if wait else "")
            + f": GET /api/v1/workspaces/{target.workspace_id}/audience-syncs/"
            f"{started.sync.id}/runs/{run_id} follows it"
        )
        out = SyncStartedOut(
            audience=segment_out,
            audience_id=started.audience.id,
            destination_id=started.destination.id,
            sync_id=started.sync.id,
            run=SyncRunOut.model_validate(run),
            message=message,
        )
        return JSONResponse(out.model_dump(mode="json"), 202)
    return _finished(run, segment_out, started.audience.id, started.sync.id)


def _finished(run: SyncRun, segment: SegmentOut, audience_id: str, sync_id: str) -> JSONResponse:
    if run.status == "failed":
        raise ApiError(
            502,
            f"the sync into Resend segment {segment.id} failed: {run.error}",
            code="destination_error",
            details={
                "audience": segment.model_dump(),
                "contactsAdded": run.added,
                "run_id": run.id,
                "sync_id": sync_id,
            },
        )
    message = f"Added {run.added} contacts to '{segment.name}'"
    if run.failed:
        message += f"; {run.failed} refused by Resend (see the run's errors)"
    out = SyncFinishedOut(
        success=run.status == "succeeded",
        audience=segment,
        contactsAdded=run.added,
        message=message,
        audience_id=audience_id,
        sync_id=sync_id,
        run=SyncRunOut.model_validate(run),
    )
    return JSONResponse(out.model_dump(mode="json"), 200)


@contextmanager
def client_errors() -> Iterator[None]:
    """Resend's failures as API errors: the caller's mistake 422, Resend's own trouble 502."""
    try:
        yield
    except SegmentRefused as exc:
        raise ApiError(422, str(exc), code="destination_refused") from None
    except DestinationUnavailable as exc:
        raise ApiError(502, f"Resend is unavailable: {exc}", "destination_unavailable") from None
    except DestinationError as exc:
        raise ApiError(502, str(exc), code="destination_error") from None


def _undo_segment(client: DeliveryClient, segment_id: str) -> None:
    try:
        delete_segment(client, segment_id)
    except Exception as exc:  # the original error matters more; say what is left behind
        log_event(
            logger, "marketing.segment_left_behind", level=logging.WARNING,
            segment_id=segment_id, error=str(exc),
        )  # fmt: skip

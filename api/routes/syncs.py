"""Seed 002's Audience Syncs API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import exists, select

from api.deps import DbSession, WorkspaceId
from api.errors import ApiError
from api.routes.lookups import get_owned
from api.schemas import (
    AudienceSyncCreate,
    AudienceSyncOut,
    AudienceSyncUpdate,
    Deleted,
    FieldMappingItem,
    RunErrorOut,
    SchedulePreview,
    SyncRunDetail,
    SyncRunOut,
    TriggerRequest,
)
from shared.db.models import (
    ACTIVE_RUN_STATUSES,
    Audience,
    AudienceSync,
    Destination,
    RunError,
    SyncRun,
)
from shared.db.types import utcnow
from shared.delivery.registry import CONNECTORS
from shared.domain.groups import split_audience_id
from shared.domain.members import source_for
from shared.runs import SyncAlreadyRunning, SyncPaused, create_run, mark_published
from shared.schedules import next_run_at, next_ticks, parse_zone, schedule_anchor
from worker.publish import publish_run

router = APIRouter(prefix="/api/v1/workspaces/{id}/audience-syncs", tags=["audience syncs"])


def _check_mapping(
    session: DbSession,
    audience: Audience,
    destination: Destination,
    mapping: list[FieldMappingItem],
) -> None:
    source = source_for(session, audience)
    unknown = [
        item.source_column
        for item in mapping
        if item.source_column is not None and not source.has_field(item.source_column)
    ]
    if unknown:
        raise ApiError(
            422,
            f"field_mapping names columns the audience's source does not have: {unknown}; "
            f"available: {source.field_names()}",
        )
    try:
        CONNECTORS[destination.type].validate_mapping([item.destination_field for item in mapping])
    except ValueError as exc:
        raise ApiError(422, f"field_mapping: {exc}") from None


def _check_split(session: DbSession, split_group_id: str | None, audience_id: str) -> None:
    """A sync may send one split of its own audience's A/B group, nothing else."""
    if split_group_id is not None and split_audience_id(session, split_group_id) != audience_id:
        raise ApiError(422, "split_group_id must name a split of the sync's audience")


def sync_out(sync: AudienceSync) -> AudienceSyncOut:
    out = AudienceSyncOut.model_validate(sync)
    out.next_run_at = next_run_at(sync, utcnow())
    return out


@router.get("", response_model=list[AudienceSyncOut], summary="List all audience syncs")
def list_syncs(workspace_id: WorkspaceId, session: DbSession) -> list[AudienceSyncOut]:
    syncs = session.execute(
        select(AudienceSync)
        .where(AudienceSync.workspace_id == workspace_id)
        .order_by(AudienceSync.created_at)
    ).scalars()
    return [sync_out(sync) for sync in syncs]


@router.post("", response_model=AudienceSyncOut, status_code=201, summary="Create an audience sync")
def create_sync(
    body: AudienceSyncCreate, workspace_id: WorkspaceId, session: DbSession
) -> AudienceSyncOut:
    audience = get_owned(session, Audience, body.audience_id, workspace_id, "audience")
    destination = get_owned(session, Destination, body.destination_id, workspace_id, "destination")
    _check_mapping(session, audience, destination, body.field_mapping)
    _check_split(session, body.split_group_id, audience.id)
    sync = AudienceSync(
        workspace_id=workspace_id,
        **body.model_dump(exclude={"field_mapping"}),
        field_mapping=[item.stored() for item in body.field_mapping],
        schedule_changed_at=utcnow(),
    )
    session.add(sync)
    session.flush()
    return sync_out(sync)


@router.get("/{sync_id}", response_model=AudienceSyncOut, summary="Get an audience sync")
def get_sync(sync_id: str, workspace_id: WorkspaceId, session: DbSession) -> AudienceSyncOut:
    return sync_out(get_owned(session, AudienceSync, sync_id, workspace_id, "audience sync"))


@router.get(
    "/{sync_id}/schedule/preview",
    response_model=SchedulePreview,
    summary="The next fire times of the sync's schedule",
)
def preview_schedule(
    sync_id: str,
    workspace_id: WorkspaceId,
    session: DbSession,
    count: Annotated[int, Query(ge=1, le=100)] = 5,
) -> SchedulePreview:
    sync = get_owned(session, AudienceSync, sync_id, workspace_id, "audience sync")
    if not sync.schedule:
        raise ApiError(400, "this sync has no schedule", code="no_schedule")
    after = max(utcnow(), schedule_anchor(sync))
    runs = next_ticks(sync.schedule, parse_zone(sync.timezone), after, count)
    return SchedulePreview(schedule=sync.schedule, timezone=sync.timezone, next_runs=runs)


@router.put("/{sync_id}", response_model=AudienceSyncOut, summary="Update an audience sync")
def update_sync(
    sync_id: str, body: AudienceSyncUpdate, workspace_id: WorkspaceId, session: DbSession
) -> AudienceSyncOut:
    sync = get_owned(session, AudienceSync, sync_id, workspace_id, "audience sync")
    changes = body.model_dump(exclude_unset=True)
    for required in (
        "name", "audience_id", "destination_id", "field_mapping", "sync_mode", "timezone",
        "catch_up",
    ):  # fmt: skip
        if required in changes and changes[required] is None:
            raise ApiError(422, f"{required} cannot be null")
    audience = get_owned(
        session, Audience, changes.get("audience_id", sync.audience_id), workspace_id, "audience"
    )
    destination = get_owned(
        session,
        Destination,
        changes.get("destination_id", sync.destination_id),
        workspace_id,
        "destination",
    )
    if body.field_mapping is not None:
        changes["field_mapping"] = [item.stored() for item in body.field_mapping]
    if {"field_mapping", "audience_id", "destination_id"} & changes.keys():
        items = body.field_mapping or [FieldMappingItem(**item) for item in sync.field_mapping]
        _check_mapping(session, audience, destination, items)
    if {"split_group_id", "audience_id"} & changes.keys():
        _check_split(session, changes.get("split_group_id", sync.split_group_id), audience.id)
    reschedules = {"schedule", "timezone"} & changes.keys() or (
        changes.get("status") == "active" and sync.status != "active"
    )
    for name, value in changes.items():
        setattr(sync, name, value)
    if reschedules:  # ticks count from now: no catch-up for a schedule that did not exist
        sync.schedule_changed_at = utcnow()
    if sync.status != "error":
        sync.status_error = ""
    session.flush()
    return sync_out(sync)


@router.delete("/{sync_id}", response_model=Deleted, summary="Delete an audience sync")
def delete_sync(sync_id: str, workspace_id: WorkspaceId, session: DbSession) -> Deleted:
    sync = get_owned(session, AudienceSync, sync_id, workspace_id, "audience sync")
    active = session.execute(
        select(exists().where(SyncRun.sync_id == sync.id, SyncRun.status.in_(ACTIVE_RUN_STATUSES)))
    ).scalar_one()
    if active:
        raise ApiError(409, "a run of this sync is in progress; wait for it or pause the sync")
    session.delete(sync)
    return Deleted()


@router.post(
    "/{sync_id}/trigger", response_model=SyncRunOut, status_code=201, summary="Trigger a sync run"
)
def trigger_sync(
    sync_id: str,
    workspace_id: WorkspaceId,
    session: DbSession,
    body: TriggerRequest | None = None,
) -> SyncRun:
    sync = get_owned(session, AudienceSync, sync_id, workspace_id, "audience sync")
    try:
        run = create_run(session, sync, trigger="manual")
        run.allow_mass_removal = bool(body and body.allow_mass_removal)
    except SyncAlreadyRunning as exc:
        raise ApiError(409, str(exc), code="run_in_progress") from None
    except SyncPaused as exc:
        raise ApiError(409, str(exc), code="sync_paused") from None
    session.commit()
    if publish_run(run.id):
        mark_published(session, run.id)
        session.commit()
    return run


@router.get("/{sync_id}/runs", response_model=list[SyncRunOut], summary="List sync runs")
def list_runs(
    sync_id: str,
    workspace_id: WorkspaceId,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[SyncRun]:
    get_owned(session, AudienceSync, sync_id, workspace_id, "audience sync")
    return list(
        session.execute(
            select(SyncRun)
            .where(SyncRun.sync_id == sync_id)
            .order_by(SyncRun.created_at.desc())
            .limit(limit)
        ).scalars()
    )


@router.get("/{sync_id}/runs/{run_id}", response_model=SyncRunDetail, summary="Get a sync run")
def get_run(
    sync_id: str, run_id: str, workspace_id: WorkspaceId, session: DbSession
) -> SyncRunDetail:
    run = get_owned(session, SyncRun, run_id, workspace_id, "sync run")
    if run.sync_id != sync_id:
        raise ApiError(404, "sync run not found")
    errors = session.execute(
        select(RunError).where(RunError.run_id == run.id).order_by(RunError.id).limit(100)
    ).scalars()
    detail = SyncRunDetail.model_validate(run)
    detail.errors = [RunErrorOut.model_validate(error) for error in errors]
    return detail

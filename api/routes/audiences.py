"""The audience endpoints a sync needs: create, list, get, delete (archive)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import exists, select

from api.deps import DbSession, WorkspaceId
from api.errors import ApiError
from api.routes.lookups import get_owned
from api.schemas import AudienceCreate, AudienceOut, Deleted
from shared.db.models import Audience, AudienceSync, Source
from shared.db.types import utcnow
from shared.domain.members import SOURCE_KINDS, source_for
from shared.domain.rules import RuleError, validate_rules

router = APIRouter(prefix="/api/v1/workspaces/{id}/audiences", tags=["audiences"])


@router.post("", response_model=AudienceOut, status_code=201, summary="Create an audience")
def create_audience(
    body: AudienceCreate, workspace_id: WorkspaceId, session: DbSession
) -> Audience:
    if body.source_id is not None:
        source = session.get(Source, body.source_id)
        if source is None or source.workspace_id != workspace_id:
            raise ApiError(404, "source not found")
        if source.kind not in SOURCE_KINDS:
            raise ApiError(422, f"source kind {source.kind!r} cannot feed audiences yet")
    audience = Audience(workspace_id=workspace_id, **body.model_dump())
    try:
        validate_rules(body.rules, source_for(session, audience).resolve)
    except RuleError as exc:
        raise ApiError(422, str(exc), details={"path": exc.path, "reason": exc.message}) from None
    session.add(audience)
    session.flush()
    return audience


@router.get("", response_model=list[AudienceOut], summary="List audiences")
def list_audiences(workspace_id: WorkspaceId, session: DbSession) -> list[Audience]:
    return list(
        session.execute(
            select(Audience)
            .where(Audience.workspace_id == workspace_id, Audience.archived_at.is_(None))
            .order_by(Audience.created_at)
        ).scalars()
    )


@router.get("/{audience_id}", response_model=AudienceOut, summary="Get an audience")
def get_audience(audience_id: str, workspace_id: WorkspaceId, session: DbSession) -> Audience:
    return get_owned(session, Audience, audience_id, workspace_id, "audience")


@router.delete("/{audience_id}", response_model=Deleted, summary="Delete (archive) an audience")
def delete_audience(audience_id: str, workspace_id: WorkspaceId, session: DbSession) -> Deleted:
    audience = get_owned(session, Audience, audience_id, workspace_id, "audience")
    if session.execute(select(exists().where(AudienceSync.audience_id == audience.id))).scalar():
        raise ApiError(409, "audience is used by an audience sync; delete the sync first")
    audience.archived_at = utcnow()
    return Deleted()

"""Destinations: create, list, get, delete. Credentials go in and never come back out."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import exists, select

from api.deps import DbSession, WorkspaceId
from api.errors import ApiError
from api.routes.lookups import get_owned
from api.schemas import Deleted, DestinationCheck, DestinationCreate, DestinationOut
from shared.config import get_settings
from shared.db.models import AudienceSync, Destination
from shared.delivery.connector import DestinationError, DestinationUnavailable
from shared.delivery.registry import build_connector, validate_destination
from shared.secrets import encrypt_json

router = APIRouter(prefix="/api/v1/workspaces/{id}/destinations", tags=["destinations"])


@router.post("", response_model=DestinationOut, status_code=201, summary="Create a destination")
def create_destination(
    body: DestinationCreate, workspace_id: WorkspaceId, session: DbSession
) -> Destination:
    try:
        validate_destination(body.type, body.config, body.credentials)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    destination = Destination(
        workspace_id=workspace_id,
        name=body.name,
        type=body.type,
        config=body.config,
        credentials_encrypted=encrypt_json(body.credentials),
    )
    session.add(destination)
    session.flush()
    return destination


@router.get("", response_model=list[DestinationOut], summary="List destinations")
def list_destinations(workspace_id: WorkspaceId, session: DbSession) -> list[Destination]:
    return list(
        session.execute(
            select(Destination)
            .where(Destination.workspace_id == workspace_id)
            .order_by(Destination.created_at)
        ).scalars()
    )


@router.get("/{destination_id}", response_model=DestinationOut, summary="Get a destination")
def get_destination(
    destination_id: str, workspace_id: WorkspaceId, session: DbSession
) -> Destination:
    return get_owned(session, Destination, destination_id, workspace_id, "destination")


@router.post(
    "/{destination_id}/test",
    response_model=DestinationCheck,
    summary="Check the destination's credentials and settings against the service",
)
def test_destination(
    destination_id: str, workspace_id: WorkspaceId, session: DbSession
) -> DestinationCheck:
    """Answers 200 either way; ``ok`` says whether the service accepted the credentials, and
    ``message`` gives the service's reason when it did not (never the credentials)."""
    destination = get_owned(session, Destination, destination_id, workspace_id, "destination")
    try:
        connector = build_connector(destination, get_settings())
    except Exception as exc:
        return DestinationCheck(ok=False, message=f"destination unusable: {type(exc).__name__}")
    try:
        connector.check()
    except DestinationError as exc:
        return DestinationCheck(ok=False, message=str(exc))
    except DestinationUnavailable as exc:
        return DestinationCheck(ok=False, message=f"service unavailable: {exc}")
    finally:
        connector.close()
    return DestinationCheck(ok=True, message="the service accepted the credentials")


@router.delete("/{destination_id}", response_model=Deleted, summary="Delete a destination")
def delete_destination(
    destination_id: str, workspace_id: WorkspaceId, session: DbSession
) -> Deleted:
    destination = get_owned(session, Destination, destination_id, workspace_id, "destination")
    used = session.execute(select(exists().where(AudienceSync.destination_id == destination.id)))
    if used.scalar():
        raise ApiError(409, "destination is used by an audience sync; delete the sync first")
    session.delete(destination)
    return Deleted()

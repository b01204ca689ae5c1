"""Request dependencies: a database session per request and the workspace a token may see."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Path
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.errors import ApiError
from shared.db.session import get_sessionmaker
from shared.workspaces import workspace_for_token

bearer = HTTPBearer(
    auto_error=False, description="A workspace token (`audiencesync workspaces create`)"
)


def db_session() -> Iterator[Session]:
    with get_sessionmaker()() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


DbSession = Annotated[Session, Depends(db_session)]


def workspace_id(
    session: DbSession,
    id: Annotated[str, Path(description="Workspace ID")],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    x_workspace_id: Annotated[str | None, Header()] = None,
) -> str:
    """The workspace of the path, if the token belongs to it.

    Another workspace's id answers 404, as if it did not exist: a token learns nothing about
    workspaces it cannot see.
    """
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "missing bearer token", code="unauthorized")
    owner = workspace_for_token(session, credentials.credentials)
    if owner is None:
        raise ApiError(401, "invalid bearer token", code="unauthorized")
    if owner != id:
        raise ApiError(404, "workspace not found")
    if x_workspace_id is not None and x_workspace_id != id:
        raise ApiError(400, "X-Workspace-ID does not match the workspace in the path")
    return id


WorkspaceId = Annotated[str, Depends(workspace_id)]

"""Workspaces (the tenants) and their API tokens."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import ApiKey, Workspace
from shared.db.types import utcnow
from shared.secrets import hash_token, new_api_token


def create_workspace(session: Session, name: str) -> tuple[Workspace, str]:
    """Create a workspace and its first token. The token is returned once and stored hashed."""
    workspace = Workspace(name=name)
    session.add(workspace)
    session.flush()
    return workspace, issue_token(session, workspace.id)


def issue_token(session: Session, workspace_id: str) -> str:
    token = new_api_token()
    session.add(ApiKey(workspace_id=workspace_id, token_hash=hash_token(token), prefix=token[:8]))
    session.flush()
    return token


def workspace_for_token(session: Session, token: str) -> str | None:
    return session.execute(
        select(ApiKey.workspace_id).where(
            ApiKey.token_hash == hash_token(token), ApiKey.revoked_at.is_(None)
        )
    ).scalar_one_or_none()


def revoke_token(session: Session, token: str) -> None:
    key = session.execute(
        select(ApiKey).where(ApiKey.token_hash == hash_token(token))
    ).scalar_one_or_none()
    if key is not None:
        key.revoked_at = utcnow()

"""Loading a workspace's rows, answering 404 for anything outside it."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.orm import Session

from api.errors import not_found
from shared.db.models import Audience, AudienceSync, Destination, SyncRun

Row = TypeVar("Row", Audience, AudienceSync, Destination, SyncRun)


def get_owned(session: Session, model: type[Row], row_id: str, workspace_id: str, what: str) -> Row:
    row = session.get(model, row_id)
    if row is None or row.workspace_id != workspace_id:
        raise not_found(what)
    if isinstance(row, Audience) and row.archived_at is not None:
        raise not_found(what)
    return row

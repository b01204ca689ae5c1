"""Sources: where an audience's members come from.

``contacts`` is the built-in contact store. ``sql`` is an external database read through a
read-only SQLAlchemy URL (write-only here: stored encrypted, never returned) and a ``table`` or a
``query`` (one SELECT) with a ``key_column``. A source is checked when it is saved: the server
connects, finds the table or runs the query with no rows, and finds the key column.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import exists, select, update

from api.deps import DbSession, WorkspaceId
from api.errors import ApiError
from api.schemas import Deleted
from shared.config import normalise_database_url
from shared.db.models import Audience, Source
from shared.domain.members import ContactStoreSource
from shared.secrets import encrypt_json
from shared.sources import (
    Relation,
    SourceError,
    SourceUnavailable,
    SqlSourceConfig,
    check_config,
    forget_source,
)

router = APIRouter(prefix="/api/v1/workspaces/{id}/sources", tags=["sources"])


class SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table: str | None = Field(default=None, max_length=200, examples=["users"])
    query: str | None = Field(default=None, max_length=20_000)
    key_column: str | None = Field(default=None, max_length=200, examples=["id"])


class SourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: Literal["contacts", "sql"]
    url: str | None = Field(
        default=None,
        description="sql: a SQLAlchemy URL with read rights; stored encrypted, never returned",
        examples=["postgresql://readonly@db.internal/app"],
    )
    config: SourceConfig = Field(default_factory=SourceConfig)


class SourceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    workspace_id: str
    name: str
    kind: str
    config: dict[str, Any]
    has_url: bool = False
    created_at: datetime
    updated_at: datetime


class FieldOut(BaseModel):
    name: str
    type: str | None = Field(
        description="the type rules see: string, number, boolean, datetime, "
        "json; null when rules cannot use the column"
    )
    database_type: str
    key: bool = False


class FieldsOut(BaseModel):
    source_id: str
    fields: list[FieldOut]


@contextmanager
def source_errors() -> Iterator[None]:
    """A source's problems as one clear answer: 502 when its database cannot be reached,
    422 when its settings are wrong. The message names the source, never the password."""
    try:
        yield
    except SourceUnavailable as exc:
        raise ApiError(502, str(exc), code="source_unavailable") from None
    except SourceError as exc:
        raise ApiError(422, str(exc), code="source_invalid") from None


def source_out(source: Source) -> SourceOut:
    out = SourceOut.model_validate(source)
    out.has_url = source.secret_encrypted is not None
    return out


def get_source(session: DbSession, source_id: str, workspace_id: str) -> Source:
    source = session.get(Source, source_id)
    if source is None or source.workspace_id != workspace_id:
        raise ApiError(404, "source not found")
    return source


@router.post("", response_model=SourceOut, status_code=201, summary="Create a source")
def create_source(body: SourceCreate, workspace_id: WorkspaceId, session: DbSession) -> SourceOut:
    config = body.config.model_dump(exclude_none=True)
    secret = None
    if body.kind == "contacts":
        if body.url or config:
            raise ApiError(422, "a contacts source takes no url or config")
    else:
        if not body.url:
            raise ApiError(422, "url is required for a sql source")
        url = normalise_database_url(body.url)
        with source_errors():
            check_config(config, url)
            Relation(
                body.name,
                SqlSourceConfig(
                    url, config.get("table"), config.get("query"), config["key_column"]
                ),
            )
        secret = encrypt_json({"url": url})
    source = Source(
        workspace_id=workspace_id,
        name=body.name,
        kind=body.kind,
        config=config,
        secret_encrypted=secret,
    )
    session.add(source)
    session.flush()
    return source_out(source)


@router.get("", response_model=list[SourceOut], summary="List sources")
def list_sources(workspace_id: WorkspaceId, session: DbSession) -> list[SourceOut]:
    rows = session.execute(
        select(Source).where(Source.workspace_id == workspace_id).order_by(Source.created_at)
    ).scalars()
    return [source_out(source) for source in rows]


@router.get("/{source_id}", response_model=SourceOut, summary="Get a source")
def get_one(source_id: str, workspace_id: WorkspaceId, session: DbSession) -> SourceOut:
    return source_out(get_source(session, source_id, workspace_id))


@router.get(
    "/{source_id}/fields",
    response_model=FieldsOut,
    summary="The columns rules and field mappings can use, with their types",
)
def source_fields(source_id: str, workspace_id: WorkspaceId, session: DbSession) -> FieldsOut:
    source = get_source(session, source_id, workspace_id)
    if source.kind == "contacts":
        store = ContactStoreSource(session, workspace_id)
        fields = [
            FieldOut(name=name, type=kind, database_type=kind, key=name == "email")
            for name, kind in store.field_types().items()
        ]
        return FieldsOut(source_id=source.id, fields=fields)
    from shared.sources import source_config

    with source_errors():
        relation = Relation(source.name, source_config(source))  # fresh: the table may change
        items = relation.fields()
        for name, kind in relation.field_types.items():
            if kind == "json":
                prefix = "metadata" if name in ("metadata", "properties") else name
                items.append(
                    {"name": f"{prefix}.*", "type": "json", "database_type": "json", "key": False}
                )
    return FieldsOut(source_id=source.id, fields=[FieldOut(**item) for item in items])


@router.delete("/{source_id}", response_model=Deleted, summary="Delete a source")
def delete_source(source_id: str, workspace_id: WorkspaceId, session: DbSession) -> Deleted:
    source = get_source(session, source_id, workspace_id)
    in_use = session.execute(
        select(exists().where(Audience.source_id == source.id, Audience.archived_at.is_(None)))
    ).scalar()
    if in_use:
        raise ApiError(409, "source is used by an audience; delete the audience first")
    session.execute(update(Audience).where(Audience.source_id == source.id).values(source_id=None))
    session.delete(source)
    forget_source(source.id)
    return Deleted()

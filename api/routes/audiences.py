"""Audiences (seed 003): rule-based over a source, or static lists filled by CSV import and the
API; their members, count, status, rules and preview, and CSV imports with a report."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import IO, Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import exists, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import DbSession, WorkspaceId
from api.errors import ApiError
from api.routes.lookups import get_owned
from api.routes.sources import source_errors
from api.schemas import Deleted
from shared.audiences import (
    AUDIENCE_KINDS,
    MAX_MEMBERS_PER_CALL,
    MemberInputError,
    add_rules,
    add_static_members,
    remove_static_members,
)
from shared.csv_import import ImportFailed, create_import, run_import
from shared.db.audience_models import AudienceImport, ImportRejection
from shared.db.models import Audience, AudienceSync, Source
from shared.db.session import get_sessionmaker
from shared.db.types import utcnow
from shared.domain.members import (
    SOURCE_KINDS,
    CursorError,
    Member,
    MemberSource,
    jsonable,
    source_for,
)
from shared.domain.rules import RuleError, validate_rules

router = APIRouter(prefix="/api/v1/workspaces/{id}/audiences", tags=["audiences"])

INCLUDES = {"rules", "imports", "primarySyncSource"}
PREVIEW_SIZE = 5
MAX_UPLOAD_SPOOL = 4 * 1024 * 1024  # bytes of an upload held in memory before going to disk


# Bodies -----------------------------------------------------------------------------------------
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AudienceCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    kind: Literal["rules", "dynamic", "static"] = Field(
        default="rules",
        description="rules (= dynamic): members are who match the rules now; "
        "static: a list filled by CSV import or the API",
    )
    source_id: str | None = None
    rules: dict[str, Any] = Field(default_factory=dict)


class AudienceUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None
    source_id: str | None = None
    rules: dict[str, Any] | None = None


class RulesAdd(Strict):
    rules: list[dict[str, Any]] = Field(min_length=1, description="conditions or groups")
    combine: Literal["all", "any"] = "all"


class PreviewRequest(Strict):
    source_id: str | None = None
    rules: dict[str, Any] = Field(default_factory=dict)


class MembersAdd(Strict):
    members: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_MEMBERS_PER_CALL)


class MembersRemove(Strict):
    keys: list[str] = Field(min_length=1, max_length=MAX_MEMBERS_PER_CALL)


class ImportOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    audience_id: str | None
    target: str
    filename: str
    status: str
    rows_read: int
    accepted: int
    rejected: int
    written: int
    bytes_read: int
    bytes_total: int | None
    error: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    rejections: list[dict[str, Any]] | None = None


class AudienceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    workspace_id: str
    source_id: str | None
    name: str
    description: str
    kind: str
    rules: dict[str, Any]
    status: str
    status_changed_at: datetime | None
    group_id: str | None
    sync_source: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    imports: list[ImportOut] | None = None
    primary_sync_source: dict[str, Any] | None = None


class PageInfo(BaseModel):
    end_cursor: str | None
    has_next_page: bool


class MembersPage(BaseModel):
    data: list[dict[str, Any]]
    page_info: PageInfo


class CountOut(BaseModel):
    audience_id: str | None
    count: int


class StatusOut(BaseModel):
    audience_id: str
    kind: str
    status: str = Field(description="ready, importing, syncing or error")
    status_error: str
    status_changed_at: datetime | None
    materialized: bool = Field(
        description="static and synced lists hold their members; rule-based audiences are "
        "evaluated in the source database whenever they are read"
    )


class PreviewOut(BaseModel):
    count: int
    members: list[dict[str, Any]]


# Helpers ----------------------------------------------------------------------------------------
@contextmanager
def rule_errors() -> Iterator[None]:
    try:
        yield
    except RuleError as exc:
        raise ApiError(422, str(exc), details={"path": exc.path, "reason": exc.message}) from None
    except CursorError as exc:
        raise ApiError(422, str(exc)) from None


def _source_of(session: Session, workspace_id: str, source_id: str | None) -> Source | None:
    if source_id is None:
        return None
    source = session.get(Source, source_id)
    if source is None or source.workspace_id != workspace_id:
        raise ApiError(404, "source not found")
    if source.kind not in SOURCE_KINDS:
        raise ApiError(422, f"source kind {source.kind!r} cannot feed audiences")
    return source


def _validated_source(session: Session, audience: Audience) -> MemberSource:
    """The audience's source, with its rules checked against it (422 naming the rule)."""
    with source_errors(), rule_errors():
        source = source_for(session, audience)
        validate_rules(audience.rules, source.resolve)
    return source


def member_json(member: Member) -> dict[str, Any]:
    """A member as the API shows it: its key, its columns, and ``metadata`` as an object."""
    out: dict[str, Any] = {"key": member.key}
    metadata: dict[str, Any] = {}
    for name, value in member.row.items():
        if name.startswith("metadata."):
            metadata[name[len("metadata.") :]] = value
        else:
            out[name] = jsonable(value)
    if metadata:
        out["metadata"] = metadata
    return out


def _includes(include: str | None, default: set[str]) -> set[str]:
    if include is None:
        return default
    wanted = {item.strip() for item in include.split(",") if item.strip()}
    unknown = wanted - INCLUDES
    if unknown:
        raise ApiError(422, f"include: unknown {sorted(unknown)}; one of {sorted(INCLUDES)}")
    return wanted


def audience_out(session: Session, audience: Audience, include: set[str]) -> AudienceOut:
    out = AudienceOut.model_validate(audience)
    if "imports" in include:
        imports = session.execute(
            select(AudienceImport)
            .where(AudienceImport.audience_id == audience.id)
            .order_by(AudienceImport.created_at.desc())
            .limit(10)
        ).scalars()
        out.imports = [ImportOut.model_validate(item) for item in imports]
    if "primarySyncSource" in include:
        out.primary_sync_source = _primary_source(session, audience)
    return out


def _primary_source(session: Session, audience: Audience) -> dict[str, Any] | None:
    if audience.sync_source:
        return dict(audience.sync_source)
    if audience.kind == "static":
        return None
    if audience.source_id is None:
        return {"type": "contacts", "id": None, "name": "contact store"}
    source = session.get(Source, audience.source_id)
    return None if source is None else {"type": source.kind, "id": source.id, "name": source.name}


def _audience(session: Session, audience_id: str, workspace_id: str) -> Audience:
    return get_owned(session, Audience, audience_id, workspace_id, "audience")


def import_out(session: Session, record: AudienceImport, limit: int = 100) -> ImportOut:
    out = ImportOut.model_validate(record)
    rows = session.execute(
        select(ImportRejection.row_number, ImportRejection.reason)
        .where(ImportRejection.import_id == record.id)
        .order_by(ImportRejection.row_number)
        .limit(limit)
    ).all()
    out.rejections = [{"row": number, "reason": reason} for number, reason in rows]
    return out


# Collection -------------------------------------------------------------------------------------
@router.post("", response_model=AudienceOut, status_code=201, summary="Create an audience")
def create_audience(
    body: AudienceCreate, workspace_id: WorkspaceId, session: DbSession
) -> AudienceOut:
    kind = AUDIENCE_KINDS[body.kind]
    if kind == "static" and body.source_id is not None:
        raise ApiError(422, "a static list holds its own members: it takes no source_id")
    _source_of(session, workspace_id, body.source_id)
    audience = Audience(
        workspace_id=workspace_id,
        name=body.name,
        description=body.description,
        kind=kind,
        source_id=body.source_id,
        rules=body.rules,
        status="ready",
        status_changed_at=utcnow(),
    )
    _validated_source(session, audience)
    session.add(audience)
    session.flush()
    return audience_out(session, audience, set())


@router.get("", response_model=list[AudienceOut], summary="List audiences")
def list_audiences(
    workspace_id: WorkspaceId,
    session: DbSession,
    include: Annotated[
        str | None, Query(description="comma-separated: rules, imports, primarySyncSource")
    ] = None,
) -> list[AudienceOut]:
    wanted = _includes(include, {"rules"})
    rows = session.execute(
        select(Audience)
        .where(Audience.workspace_id == workspace_id, Audience.archived_at.is_(None))
        .order_by(Audience.created_at)
    ).scalars()
    return [audience_out(session, audience, wanted) for audience in rows]


@router.post("/preview", response_model=PreviewOut, summary="Count and first 5 of unsaved rules")
def preview_rules(
    body: PreviewRequest, workspace_id: WorkspaceId, session: DbSession
) -> PreviewOut:
    _source_of(session, workspace_id, body.source_id)
    audience = Audience(workspace_id=workspace_id, source_id=body.source_id, rules=body.rules)
    audience.kind = "rules"
    return _preview(session, audience)


def _preview(session: Session, audience: Audience) -> PreviewOut:
    source = _validated_source(session, audience)
    with source_errors(), rule_errors():
        count = source.count(audience.rules)
        page = source.page(audience.rules, PREVIEW_SIZE)
    return PreviewOut(count=count, members=[member_json(member) for member in page.members])


# Imports into the contact store (no audience) ---------------------------------------------------
@router.post(
    "/imports",
    response_model=ImportOut,
    status_code=201,
    summary="Import a CSV into the contact store",
)
async def import_contacts(request: Request, workspace_id: WorkspaceId) -> ImportOut:
    return await _import(request, workspace_id, None)


@router.get("/imports/{import_id}", response_model=ImportOut, summary="An import's progress")
def get_import(
    import_id: str,
    workspace_id: WorkspaceId,
    session: DbSession,
    rejections: Annotated[int, Query(ge=0, le=1000)] = 100,
) -> ImportOut:
    record = session.get(AudienceImport, import_id)
    if record is None or record.workspace_id != workspace_id:
        raise ApiError(404, "import not found")
    return import_out(session, record, rejections)


# One audience -----------------------------------------------------------------------------------
@router.get("/{audience_id}", response_model=AudienceOut, summary="Get an audience")
def get_audience(
    audience_id: str,
    workspace_id: WorkspaceId,
    session: DbSession,
    include: Annotated[str | None, Query()] = None,
) -> AudienceOut:
    audience = _audience(session, audience_id, workspace_id)
    return audience_out(session, audience, _includes(include, {"rules", "imports"}))


@router.put("/{audience_id}", response_model=AudienceOut, summary="Update an audience")
def update_audience(
    audience_id: str, body: AudienceUpdate, workspace_id: WorkspaceId, session: DbSession
) -> AudienceOut:
    audience = _audience(session, audience_id, workspace_id)
    changes = body.model_dump(exclude_unset=True)
    if "source_id" in changes:
        if audience.kind == "static" and changes["source_id"] is not None:
            raise ApiError(422, "a static list holds its own members: it takes no source_id")
        _source_of(session, workspace_id, changes["source_id"])
    for name, value in changes.items():
        if value is None and name != "source_id":
            continue
        setattr(audience, name, value)
    _validated_source(session, audience)
    session.flush()
    return audience_out(session, audience, {"rules"})


@router.delete("/{audience_id}", response_model=Deleted, summary="Delete (archive) an audience")
def delete_audience(audience_id: str, workspace_id: WorkspaceId, session: DbSession) -> Deleted:
    audience = _audience(session, audience_id, workspace_id)
    if session.execute(select(exists().where(AudienceSync.audience_id == audience.id))).scalar():
        raise ApiError(409, "audience is used by an audience sync; delete the sync first")
    audience.archived_at = utcnow()
    return Deleted()


@router.get("/{audience_id}/members", response_model=MembersPage, summary="Members, a page")
def audience_members(
    audience_id: str,
    workspace_id: WorkspaceId,
    session: DbSession,
    first: Annotated[int, Query(ge=1, le=100, description="page size")] = 20,
    after: Annotated[str | None, Query(description="end_cursor of the previous page")] = None,
    search: Annotated[
        str | None, Query(max_length=200, description="part of an email, phone or name")
    ] = None,
) -> MembersPage:
    audience = _audience(session, audience_id, workspace_id)
    source = _validated_source(session, audience)
    with source_errors(), rule_errors():
        page = source.page(audience.rules, first, after, search)
    return MembersPage(
        data=[member_json(member) for member in page.members],
        page_info=PageInfo(end_cursor=page.end_cursor, has_next_page=page.has_next_page),
    )


@router.post("/{audience_id}/members", summary="Add members to a static list")
def add_members(
    audience_id: str, body: MembersAdd, workspace_id: WorkspaceId, session: DbSession
) -> dict[str, int]:
    audience = _static(session, audience_id, workspace_id)
    _not_synced(audience)
    try:
        written = add_static_members(session, audience, body.members)
    except MemberInputError as exc:
        raise ApiError(422, str(exc)) from None
    return {"written": written}


@router.post("/{audience_id}/members/remove", summary="Remove members from a static list")
def remove_members(
    audience_id: str, body: MembersRemove, workspace_id: WorkspaceId, session: DbSession
) -> dict[str, int]:
    audience = _static(session, audience_id, workspace_id)
    return {"removed": remove_static_members(session, audience, body.keys)}


def _not_synced(audience: Audience) -> None:
    """A synced list takes its members from its source; what else was added would vanish at
    the next re-sync, so refuse it up front."""
    if audience.sync_source:
        raise ApiError(400, "a synced list takes its members from its source; re-sync it instead")


def _static(session: Session, audience_id: str, workspace_id: str) -> Audience:
    audience = _audience(session, audience_id, workspace_id)
    if audience.kind != "static":
        raise ApiError(400, "only a static list takes members through the API")
    return audience


@router.get("/{audience_id}/count", response_model=CountOut, summary="How many members now")
def audience_count(audience_id: str, workspace_id: WorkspaceId, session: DbSession) -> CountOut:
    audience = _audience(session, audience_id, workspace_id)
    source = _validated_source(session, audience)
    with source_errors(), rule_errors():
        return CountOut(audience_id=audience.id, count=source.count(audience.rules))


@router.get("/{audience_id}/status", response_model=StatusOut, summary="Materialization state")
def audience_status(audience_id: str, workspace_id: WorkspaceId, session: DbSession) -> StatusOut:
    audience = _audience(session, audience_id, workspace_id)
    return StatusOut(
        audience_id=audience.id,
        kind=audience.kind,
        status=audience.status,
        status_error=audience.status_error,
        status_changed_at=audience.status_changed_at,
        materialized=audience.kind != "rules",
    )


@router.post("/{audience_id}/rules", response_model=AudienceOut, summary="Add rules")
def audience_add_rules(
    audience_id: str, body: RulesAdd, workspace_id: WorkspaceId, session: DbSession
) -> AudienceOut:
    audience = _audience(session, audience_id, workspace_id)
    audience.rules = add_rules(audience.rules, body.rules, body.combine)
    _validated_source(session, audience)
    session.flush()
    return audience_out(session, audience, {"rules"})


@router.get("/{audience_id}/preview", response_model=PreviewOut, summary="Count and first 5")
def audience_preview(audience_id: str, workspace_id: WorkspaceId, session: DbSession) -> PreviewOut:
    return _preview(session, _audience(session, audience_id, workspace_id))


@router.post(
    "/{audience_id}/import",
    response_model=ImportOut,
    status_code=201,
    summary="Import a CSV: into a static list, or into the contact store a rule-based audience "
    "reads",
)
async def import_audience(
    audience_id: str, request: Request, workspace_id: WorkspaceId
) -> ImportOut:
    return await _import(request, workspace_id, audience_id)


@router.get(
    "/{audience_id}/imports", response_model=list[ImportOut], summary="Imports, newest first"
)
def audience_imports(
    audience_id: str, workspace_id: WorkspaceId, session: DbSession
) -> list[ImportOut]:
    audience = _audience(session, audience_id, workspace_id)
    rows = session.execute(
        select(AudienceImport)
        .where(AudienceImport.audience_id == audience.id)
        .order_by(AudienceImport.created_at.desc())
        .limit(100)
    ).scalars()
    return [ImportOut.model_validate(row) for row in rows]


# CSV import -------------------------------------------------------------------------------------
async def _upload(request: Request) -> tuple[IO[bytes], str, int | None]:
    """The CSV, from a multipart ``file`` field or the raw body (``Content-Type: text/csv``),
    spooled to disk past a few MB: it is never held whole in memory."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ApiError(400, "send the CSV as the multipart field 'file'")
        upload.file.seek(0)
        return upload.file, upload.filename or "", upload.size
    spool = tempfile.SpooledTemporaryFile(max_size=MAX_UPLOAD_SPOOL)  # noqa: SIM115
    size = 0
    async for chunk in request.stream():
        spool.write(chunk)
        size += len(chunk)
    spool.seek(0)
    return spool, request.headers.get("x-filename", ""), size


def _prepare_import(workspace_id: str, audience_id: str | None) -> str:
    with get_sessionmaker().begin() as session:
        audience = None
        if audience_id is not None:
            audience = _audience(session, audience_id, workspace_id)
            if audience.kind == "rules" and audience.source_id is not None:
                source = session.get(Source, audience.source_id)
                if source is not None and source.kind == "sql":
                    raise ApiError(
                        400,
                        "this audience reads an external database, which is read-only; "
                        "import into a static list or the contact store instead",
                    )
            if audience.kind not in ("rules", "static"):
                raise ApiError(400, f"a {audience.kind} audience takes no CSV import")
            _not_synced(audience)
            running = session.execute(
                select(
                    exists().where(
                        AudienceImport.audience_id == audience.id,
                        AudienceImport.status.in_(("pending", "running")),
                    )
                )
            ).scalar()
            if running:
                raise ApiError(409, "an import into this audience is already running")
        return create_import(session, workspace_id, audience, "").id


async def _import(request: Request, workspace_id: str, audience_id: str | None) -> ImportOut:
    """Inline: the upload is already spooled on this host; reading it is quick (100,000 rows in
    a few seconds) and its counters are committed as it goes, so GET .../imports/{id} shows the
    progress meanwhile."""
    stream, filename, size = await _upload(request)
    try:
        import_id = await run_in_threadpool(_prepare_import, workspace_id, audience_id)
    except BaseException:
        stream.close()
        raise
    sessions = get_sessionmaker()

    def work() -> ImportOut:
        with sessions.begin() as session:
            session.get_one(AudienceImport, import_id).filename = filename[:300]
        try:
            run_import(sessions, import_id, stream, size)
        except ImportFailed as exc:
            raise ApiError(
                exc.status, exc.message, code="import_failed", details={"import_id": import_id}
            ) from None
        finally:
            stream.close()
        with sessions() as session:
            return import_out(session, session.get_one(AudienceImport, import_id))

    return await run_in_threadpool(work)

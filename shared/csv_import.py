"""CSV import into a static list or the contact store: streamed, reported row by row, all or
nothing.

The file is read line by line (no line may exceed ``MAX_LINE_CHARS``), so memory stays bounded
whatever its size. Accepted rows are staged in ``audience_import_rows`` in chunks, each chunk
committed together with the import's counters: a client polling the import sees its progress.
Only when the whole file has been read do the staged rows reach their target, in one statement
and one transaction; a file that turns out unreadable half-way (a line too long, bytes that are
not UTF-8) leaves the target exactly as it was.

Per row, a bad email, a wrong number of fields, a value too long or a key already seen in the file
is a rejection with its reason; the import goes on. A header without ``email``, with duplicate or
empty names, is refused before anything is read.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from sqlalchemy import delete, func, insert, literal, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from shared.db.audience_models import AudienceImport, ImportRejection, ImportRow, StaticMember
from shared.db.models import Audience, Contact
from shared.db.types import utcnow

MAX_LINE_CHARS = 256 * 1024
CHUNK_ROWS = 2000
MAX_REJECTIONS_KEPT = 1000
EMAIL = re.compile(r"^[^@\s,;<>\"']+@[^@\s,;<>\"']+\.[^@\s,;<>\"'.]{2,}$")
COLUMNS = ("email", "first_name", "last_name", "phone", "user_id", "last_active_at")
LIMITS = {"email": 320, "first_name": 200, "last_name": 200, "phone": 40, "user_id": 200}
PROPERTY_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")


class ImportFailed(Exception):
    """The file as a whole cannot be imported; nothing was written. ``status`` is the HTTP
    status that fits (the domain does not answer HTTP, the route maps it)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class _Header:
    names: list[str]
    known: dict[str, int]  # contact column -> index
    properties: dict[str, int]  # property name -> index


@dataclass
class _Chunk:
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    read: int = 0


def create_import(
    session: Session, workspace_id: str, audience: Audience | None, filename: str
) -> AudienceImport:
    """The import row, pending; ``audience`` None (or a rules audience) means the contact store."""
    target = "static_list" if audience is not None and audience.kind == "static" else "contacts"
    record = AudienceImport(
        workspace_id=workspace_id,
        audience_id=audience.id if audience is not None else None,
        target=target,
        filename=filename[:300],
        status="pending",
    )
    session.add(record)
    session.flush()
    return record


def run_import(
    sessions: sessionmaker[Session], import_id: str, stream: IO[bytes], size: int | None = None
) -> AudienceImport:
    """Read ``stream`` into the import's target; returns the finished import row.

    Raises ``ImportFailed`` (after recording it on the import) when the file cannot be imported.
    """
    with sessions.begin() as session:
        claimed = session.execute(  # type: ignore[attr-defined]
            update(AudienceImport)
            .where(AudienceImport.id == import_id, AudienceImport.status == "pending")
            .values(status="running", started_at=utcnow(), bytes_total=size)
        ).rowcount
        if not claimed:
            raise ImportFailed("this import has already run", status=409)
        record = session.get_one(AudienceImport, import_id)
        _set_audience_status(session, record.audience_id, "importing")
    try:
        header = _process(sessions, import_id, stream)
        with sessions.begin() as session:
            record = session.get_one(AudienceImport, import_id)
            written = _publish(session, record, header)
            session.execute(delete(ImportRow).where(ImportRow.import_id == import_id))
            record.written = written
            record.status = "succeeded"
            record.finished_at = utcnow()
            _set_audience_status(session, record.audience_id, "ready")
    except ImportFailed as exc:
        _fail(sessions, import_id, exc.message)
        raise
    except Exception:
        _fail(sessions, import_id, "the import stopped on an unexpected error; nothing was written")
        raise
    with sessions() as session:
        return session.get_one(AudienceImport, import_id)


def _fail(sessions: sessionmaker[Session], import_id: str, message: str) -> None:
    with sessions.begin() as session:
        session.execute(delete(ImportRow).where(ImportRow.import_id == import_id))
        record = session.get_one(AudienceImport, import_id)
        record.status = "failed"
        record.error = message
        record.finished_at = utcnow()
        _set_audience_status(session, record.audience_id, "ready")


def _set_audience_status(session: Session, audience_id: str | None, status: str) -> None:
    if audience_id is None:
        return
    audience = session.get(Audience, audience_id)
    if audience is not None and audience.kind == "static" and audience.status != status:
        audience.status = status
        audience.status_changed_at = utcnow()


def _lines(stream: IO[bytes]) -> Iterator[str]:
    """Physical lines, none longer than ``MAX_LINE_CHARS``; the text must be UTF-8."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    number = 0
    try:
        while True:
            line = text.readline(MAX_LINE_CHARS + 1)
            if not line:
                return
            number += 1
            if len(line) > MAX_LINE_CHARS:
                raise ImportFailed(
                    f"line {number} is longer than {MAX_LINE_CHARS} characters; "
                    "nothing was imported",
                    status=413,
                )
            yield line
    except UnicodeDecodeError:
        raise ImportFailed(
            f"the file is not UTF-8 text (near line {number + 1}); nothing was imported",
            status=400,
        ) from None
    finally:
        text.detach()


def _parse_header(names: list[str]) -> _Header:
    cleaned = [name.strip() for name in names]
    if not cleaned or all(not name for name in cleaned):
        raise ImportFailed("the file is empty: the first line must name the columns")
    if any(not name for name in cleaned):
        raise ImportFailed(f"the header has an empty column name: {cleaned}")
    lowered = [name.lower() for name in cleaned]
    duplicates = sorted({name for name in lowered if lowered.count(name) > 1})
    if duplicates:
        raise ImportFailed(f"the header names these columns more than once: {duplicates}")
    if "email" not in lowered:
        raise ImportFailed(f"the header must have an 'email' column; it has {cleaned}")
    known: dict[str, int] = {}
    properties: dict[str, int] = {}
    for index, (name, low) in enumerate(zip(cleaned, lowered, strict=True)):
        if low in COLUMNS:
            known[low] = index
            continue
        prop = name.split(".", 1)[1] if low.startswith(("metadata.", "properties.")) else name
        if not PROPERTY_NAME.match(prop):
            raise ImportFailed(
                f"column {name!r}: other columns become metadata.<name> and need a name of "
                "letters, digits, '_' or '-'"
            )
        properties[prop] = index
    return _Header(cleaned, known, properties)


def _parse_row(values: list[str], header: _Header) -> tuple[dict[str, Any] | None, str]:
    if len(values) != len(header.names):
        return None, f"expected {len(header.names)} fields, got {len(values)}"
    row: dict[str, Any] = {}
    for name, index in header.known.items():
        value = values[index].strip()
        if name in LIMITS and len(value) > LIMITS[name]:
            return None, f"{name} is longer than {LIMITS[name]} characters"
        row[name] = value or None
    email = (row.get("email") or "").lower()
    if not email:
        return None, "email is empty"
    if not EMAIL.match(email):
        return None, f"not a valid email address: {values[header.known['email']].strip()!r}"
    row["email"] = email
    if row.get("last_active_at"):
        try:
            when = datetime.fromisoformat(row["last_active_at"].replace("Z", "+00:00"))
        except ValueError:
            return None, f"last_active_at is not an ISO 8601 time: {row['last_active_at']!r}"
        row["last_active_at"] = when if when.tzinfo else when.replace(tzinfo=UTC)
    row["properties"] = {
        name: values[index] for name, index in header.properties.items() if values[index] != ""
    }
    return row, ""


def _process(sessions: sessionmaker[Session], import_id: str, stream: IO[bytes]) -> _Header:
    lines = _lines(stream)
    reader = csv.reader(lines, strict=True)
    csv.field_size_limit(MAX_LINE_CHARS * 4)
    try:
        first = next(reader, None)
    except csv.Error as exc:
        raise ImportFailed(f"the header is not valid CSV: {exc}") from None
    if first is None:
        raise ImportFailed("the file is empty: the first line must name the columns")
    header = _parse_header(first)
    chunk = _Chunk()
    kept = 0
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # A broken quote swallows the rest of the file: refuse it whole.
            raise ImportFailed(f"line {reader.line_num}: not valid CSV ({exc})") from None
        row_number = reader.line_num  # the line the record ends on; the header is line 1
        chunk.read += 1
        if not values or values == [""]:
            chunk.read -= 1  # blank lines are not rows
            continue
        row, reason = _parse_row(values, header)
        if row is None:
            chunk.rejections.append(
                {"row_number": row_number, "reason": reason, "raw": ",".join(values)[:500]}
            )
        elif row["email"] in chunk.rows:
            first_seen = chunk.rows[row["email"]]["row_number"]
            chunk.rejections.append(
                {
                    "row_number": row_number,
                    "reason": f"duplicate email {row['email']!r} (first on line {first_seen})",
                    "raw": ",".join(values)[:500],
                }
            )
        else:
            row["row_number"] = row_number
            chunk.rows[row["email"]] = row
        if len(chunk.rows) + len(chunk.rejections) >= CHUNK_ROWS:
            kept = _save_chunk(sessions, import_id, chunk, kept, stream)
            chunk = _Chunk()
    _save_chunk(sessions, import_id, chunk, kept, stream)
    return header


def _save_chunk(
    sessions: sessionmaker[Session], import_id: str, chunk: _Chunk, kept: int, stream: IO[bytes]
) -> int:
    """Stage a chunk's accepted rows and record its rejections and the counters, in one commit.

    The staging table's primary key finds keys seen in earlier chunks (insert, skip on
    conflict): duplicates across the whole file are found without holding every key in memory.
    """
    with sessions.begin() as session:
        if chunk.rows:
            inserted = _stage(session, import_id, chunk.rows)
            duplicates = [key for key in chunk.rows if key not in inserted]
            if duplicates:
                seen = dict(
                    session.execute(
                        select(ImportRow.member_key, ImportRow.row_number).where(
                            ImportRow.import_id == import_id,
                            ImportRow.member_key.in_(duplicates),
                        )
                    ).all()
                )
                for key in duplicates:
                    row = chunk.rows.pop(key)
                    chunk.rejections.append(
                        {
                            "row_number": row["row_number"],
                            "reason": f"duplicate email {key!r} (first on line {seen.get(key)})",
                            "raw": key,
                        }
                    )
        room = max(0, MAX_REJECTIONS_KEPT - kept)
        if chunk.rejections and room:
            session.execute(
                insert(ImportRejection),
                [{"import_id": import_id, **item} for item in chunk.rejections[:room]],
            )
        try:
            position = stream.tell()
        except (OSError, ValueError):
            position = 0
        session.execute(
            update(AudienceImport)
            .where(AudienceImport.id == import_id)
            .values(
                rows_read=AudienceImport.rows_read + chunk.read,
                accepted=AudienceImport.accepted + len(chunk.rows),
                rejected=AudienceImport.rejected + len(chunk.rejections),
                bytes_read=position,
                updated_at=utcnow(),
            )
        )
    return kept + min(room, len(chunk.rejections))


STAGE_POSTGRESQL = text(
    """
    INSERT INTO audience_import_rows (import_id, member_key, email, new_id, first_name,
        last_name, phone, user_id, last_active_at, row_number, properties)
    SELECT :import_id, k, k, i, f, l, p, u, a, r, CAST(j AS jsonb)
    FROM unnest(CAST(:keys AS text[]), CAST(:ids AS text[]), CAST(:first AS text[]),
        CAST(:last AS text[]), CAST(:phone AS text[]), CAST(:user_id AS text[]),
        CAST(:active AS timestamptz[]), CAST(:rows AS integer[]), CAST(:props AS text[]))
        AS t(k, i, f, l, p, u, a, r, j)
    ON CONFLICT (import_id, member_key) DO NOTHING
    RETURNING member_key
    """
)


def _stage(session: Session, import_id: str, rows: dict[str, dict[str, Any]]) -> set[str]:
    """Insert a chunk's rows into the staging table, skipping keys already there; returns the
    keys inserted. On PostgreSQL the chunk travels as arrays in one short statement (a
    multi-row VALUES of thousands of parameters costs more to build and parse than to run)."""
    if session.get_bind().dialect.name == "postgresql":
        items = list(rows.items())
        result = session.execute(
            STAGE_POSTGRESQL,
            {
                "import_id": import_id,
                "keys": [key for key, _row in items],
                "ids": [str(uuid.uuid4()) for _item in items],
                "first": [row.get("first_name") for _key, row in items],
                "last": [row.get("last_name") for _key, row in items],
                "phone": [row.get("phone") for _key, row in items],
                "user_id": [row.get("user_id") for _key, row in items],
                "active": [row.get("last_active_at") for _key, row in items],
                "rows": [row["row_number"] for _key, row in items],
                "props": [json.dumps(row["properties"]) for _key, row in items],
            },
        )
        return set(result.scalars())
    table: Any = ImportRow.__table__
    statement = (
        sqlite.insert(table)
        .on_conflict_do_nothing(index_elements=["import_id", "member_key"])
        .returning(table.c.member_key)
    )
    staged = session.execute(
        statement,
        [
            {
                "import_id": import_id,
                "member_key": key,
                "new_id": str(uuid.uuid4()),
                **{name: row.get(name) for name in COLUMNS},
                "row_number": row["row_number"],
                "properties": row["properties"],
            }
            for key, row in rows.items()
        ],
    )
    return set(staged.scalars())


def _publish(session: Session, record: AudienceImport, header: _Header) -> int:
    """Move the staged rows to the target in one statement: insert new, update existing.

    Only the columns the file has are written over an existing member; its other columns and
    the metadata keys the file does not name are kept.
    """
    dialect = session.get_bind().dialect.name
    present = [name for name in COLUMNS if name in header.known and name != "email"]
    staged = select(ImportRow).where(ImportRow.import_id == record.id).subquery()
    if record.target == "static_list":
        target: Any = StaticMember.__table__
        values = select(
            literal(record.audience_id).label("audience_id"),
            staged.c.member_key,
            staged.c.email,
            *[staged.c[name] for name in COLUMNS if name != "email"],
            staged.c.properties,
            literal(utcnow(), type_=StaticMember.__table__.c.added_at.type).label("added_at"),
            literal(record.id).label("import_id"),
        )
        columns = [
            "audience_id",
            "member_key",
            "email",
            *[n for n in COLUMNS if n != "email"],
            "properties",
            "added_at",
            "import_id",
        ]
        conflict = ["audience_id", "member_key"]
    else:
        target = Contact.__table__
        now = literal(utcnow(), type_=Contact.__table__.c.created_at.type)
        values = select(
            staged.c.new_id,
            literal(record.workspace_id).label("workspace_id"),
            staged.c.email,
            *[staged.c[name] for name in COLUMNS if name != "email"],
            staged.c.properties,
            now.label("created_at"),
            now.label("updated_at"),
        )
        columns = [
            "id",
            "workspace_id",
            "email",
            *[n for n in COLUMNS if n != "email"],
            "properties",
            "created_at",
            "updated_at",
        ]
        conflict = ["workspace_id", "email"]
    builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = builder(target).from_select(columns, values.where(literal(True)))
    excluded = statement.excluded
    updates: dict[str, Any] = {name: excluded[name] for name in present}
    if header.properties:
        current = target.c.properties
        if dialect == "postgresql":
            updates["properties"] = current.op("||")(excluded.properties)
        else:
            updates["properties"] = func.json_patch(current, excluded.properties)
    if record.target == "static_list":
        updates["import_id"] = excluded.import_id
    else:
        updates["updated_at"] = excluded.updated_at
    statement = statement.on_conflict_do_update(index_elements=conflict, set_=updates)
    session.execute(statement)
    return int(
        session.execute(
            select(func.count()).select_from(ImportRow).where(ImportRow.import_id == record.id)
        ).scalar_one()
    )

"""Reading an audience's members from its source, sorted by member key.

The diff is a sorted merge of the members and the sync state, so both must come out in the same
order: plain code-point order of the key. PostgreSQL sorts text by its locale unless told
otherwise, hence ``COLLATE "C"`` there; SQLite compares bytes already.

Three kinds of source share one implementation (``TableSource``): the workspace's contact store,
a static list's own rows, and a table or SELECT in an external database (``SqlSource``). Each
says which selectable holds the rows, which expression is the member key and which columns rules
may use; counting, streaming, keyset pages and search are the same SQL for all of them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, ClassVar, Protocol

from sqlalchemy import ColumnElement, FromClause, String, cast, func, literal, or_, select
from sqlalchemy.orm import Session

from shared.db.audience_models import StaticMember
from shared.db.models import Audience, Contact, Source
from shared.domain.rules import JSON_KEY, FieldRef, FieldType, compile_rules, json_field

METADATA_PREFIXES = ("metadata.", "properties.")
SEARCH_FIELDS = ("email", "phone", "first_name", "last_name", "full_name", "name")


@dataclass(frozen=True, slots=True)
class Member:
    key: str
    row: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MemberPage:
    members: list[Member]
    end_cursor: str | None
    has_next_page: bool


class MemberSource(Protocol):
    def field_names(self) -> list[str]: ...

    def field_types(self) -> dict[str, FieldType]: ...

    def resolve(self, name: str) -> FieldRef | None: ...

    def has_field(self, name: str) -> bool: ...

    def iter_members(
        self, rules: dict[str, Any] | None, keys: Sequence[str] | None = None
    ) -> Iterator[Member]:
        """Members matching ``rules``, sorted by key; only those in ``keys`` when given (an
        event re-evaluates one contact with the same SQL a full run uses)."""
        ...

    def count(self, rules: dict[str, Any] | None) -> int: ...

    def page(
        self,
        rules: dict[str, Any] | None,
        first: int,
        after: str | None = None,
        search: str | None = None,
    ) -> MemberPage: ...


def ordered_key(column: Any, dialect_name: str) -> ColumnElement[Any]:
    return column.collate("C") if dialect_name == "postgresql" else column


class CursorError(ValueError):
    """A pagination cursor this API did not hand out."""


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CursorError("after: not a cursor returned by this API") from None


class TableSource:
    """Members are rows of one selectable; subclasses say which, and what rules may use.

    ``rows_from`` is the table or subquery, ``key`` the member key expression (text), ``columns``
    the fields rules see with their types, ``json_columns`` the JSON columns whose keys rules may
    reach as ``<column>.<key>`` (``metadata.<key>`` for the column named by ``metadata_column``),
    and ``scope`` the condition that restricts the rows to this source (a workspace, a list).
    """

    chunk_size: int = 2000

    def __init__(self, session: Session) -> None:
        self.session = session

    # What a subclass provides ------------------------------------------------------------------
    def rows_from(self) -> FromClause:
        raise NotImplementedError

    def key(self) -> ColumnElement[Any]:
        raise NotImplementedError

    def columns(self) -> dict[str, tuple[ColumnElement[Any], FieldType]]:
        raise NotImplementedError

    def json_columns(self) -> dict[str, ColumnElement[Any]]:
        return {}

    def metadata_column(self) -> str | None:
        return None

    def scope(self) -> ColumnElement[bool] | None:
        return None

    def to_row(self, row: Mapping[Any, Any]) -> dict[str, Any]:
        """A row as rules and field mappings see it: columns plus ``<json>.<key>``."""
        out: dict[str, Any] = {name: row[name] for name in self.columns()}
        for name in self.json_columns():
            prefix = "metadata" if name == self.metadata_column() else name
            for key, value in (row.get(f"__json_{name}") or {}).items():
                out[f"{prefix}.{key}"] = value
        return out

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name

    # Shared behaviour --------------------------------------------------------------------------
    def field_types(self) -> dict[str, FieldType]:
        types = {name: kind for name, (_column, kind) in self.columns().items()}
        for name in self.json_columns():
            prefix = "metadata" if name == self.metadata_column() else name
            types[f"{prefix}.*"] = "json"
        return types

    def field_names(self) -> list[str]:
        return list(self.field_types())

    def has_field(self, name: str) -> bool:
        return self.resolve(name) is not None

    def resolve(self, name: str) -> FieldRef | None:
        columns = self.columns()
        if name in columns:
            column, kind = columns[name]
            return FieldRef(kind, partial(_same_column, column))
        prefix, dot, key = name.partition(".")
        if not dot or not JSON_KEY.match(key):
            return None
        json_columns = self.json_columns()
        target = self.metadata_column() if f"{prefix}." in METADATA_PREFIXES else prefix
        if target is None or target not in json_columns:
            return None
        return FieldRef("json", partial(json_field, json_columns[target], key))

    def where(self, rules: Mapping[str, Any] | None) -> ColumnElement[bool]:
        condition = compile_rules(rules, self.resolve)
        scope = self.scope()
        return condition if scope is None else scope & condition

    def _select(self) -> Any:
        columns = [column.label(name) for name, (column, _kind) in self.columns().items()]
        columns += [column.label(f"__json_{name}") for name, column in self.json_columns().items()]
        return select(self.key().label("__key"), *columns).select_from(self.rows_from())

    def _sorted_key(self) -> ColumnElement[Any]:
        return ordered_key(self.key(), self.dialect)

    def iter_members(
        self, rules: Mapping[str, Any] | None, keys: Sequence[str] | None = None
    ) -> Iterator[Member]:
        """Plain rows, not ORM objects: a sync may stream millions of them."""
        where = self.where(rules)
        if keys is not None:
            where = where & self.key().in_(list(keys))
        statement = (
            self._select()
            .where(where)
            .order_by(self._sorted_key())
            .execution_options(yield_per=self.chunk_size, stream_results=True)
        )
        for row in self._stream(statement):
            yield Member(str(row["__key"]), self.to_row(row))

    def count(self, rules: Mapping[str, Any] | None) -> int:
        statement = select(func.count()).select_from(self.rows_from()).where(self.where(rules))
        return int(self._scalar(statement))

    def search_condition(self, term: str) -> ColumnElement[bool]:
        """Case-insensitive substring search over email, phone and name columns present."""
        columns = self.columns()
        needle = term.strip().lower()
        parts = [
            func.lower(columns[name][0]).contains(needle, autoescape=True)
            for name in SEARCH_FIELDS
            if name in columns and columns[name][1] == "string"
        ]
        if "first_name" in columns and "last_name" in columns:
            full = func.coalesce(columns["first_name"][0], "") + literal(" ")
            full = full + func.coalesce(columns["last_name"][0], "")
            parts.append(func.lower(full).contains(needle, autoescape=True))
        return or_(*parts) if parts else literal(False)

    def page(
        self,
        rules: Mapping[str, Any] | None,
        first: int,
        after: str | None = None,
        search: str | None = None,
    ) -> MemberPage:
        """One page in key order, from the key after the cursor: keyset, not OFFSET, so page
        10,000 costs what page 1 costs."""
        where = self.where(rules)
        if search:
            where = where & self.search_condition(search)
        if after is not None:
            where = where & (self._sorted_key() > decode_cursor(after))
        statement = self._select().where(where).order_by(self._sorted_key()).limit(first + 1)
        rows = self._fetch(statement)
        members = [Member(str(row["__key"]), self.to_row(row)) for row in rows[:first]]
        has_next = len(rows) > first
        cursor = encode_cursor(members[-1].key) if members else None
        return MemberPage(members, cursor, has_next)

    # Running statements (on our session; a source elsewhere runs them on its own engine) ---------
    def _stream(self, statement: Any) -> Iterable[Mapping[Any, Any]]:
        return self.session.execute(statement).mappings()

    def _fetch(self, statement: Any) -> list[Mapping[Any, Any]]:
        return list(self.session.execute(statement).mappings())

    def _scalar(self, statement: Any) -> Any:
        return self.session.execute(statement).scalar_one()


class OwnTableSource(TableSource):
    """A table of ours: ``model``'s columns, keyed by ``key_column``, with its ``properties``
    JSON column as ``metadata.<key>``; a subclass says which rows are its own (``scope``)."""

    model: ClassVar[Any]
    key_column: ClassVar[str]
    COLUMNS: ClassVar[dict[str, FieldType]]

    def rows_from(self) -> FromClause:
        table: FromClause = self.model.__table__
        return table

    def key(self) -> ColumnElement[Any]:
        column: ColumnElement[Any] = self.model.__table__.c[self.key_column]
        return column

    def columns(self) -> dict[str, tuple[ColumnElement[Any], FieldType]]:
        return {name: (getattr(self.model, name), kind) for name, kind in self.COLUMNS.items()}

    def json_columns(self) -> dict[str, ColumnElement[Any]]:
        return {"properties": self.model.__table__.c.properties}

    def metadata_column(self) -> str | None:
        return "properties"


class ContactStoreSource(OwnTableSource):
    """The workspace's built-in contact store; the member key is the lower-cased email."""

    model = Contact
    key_column = "email"
    COLUMNS: ClassVar[dict[str, FieldType]] = {
        "email": "string",
        "first_name": "string",
        "last_name": "string",
        "phone": "string",
        "user_id": "string",
        "last_active_at": "datetime",
        "created_at": "datetime",
        "updated_at": "datetime",
    }

    def __init__(self, session: Session, workspace_id: str, chunk_size: int = 2000) -> None:
        super().__init__(session)
        self.workspace_id = workspace_id
        self.chunk_size = chunk_size

    def scope(self) -> ColumnElement[bool] | None:
        return Contact.workspace_id == self.workspace_id


class StaticListSource(OwnTableSource):
    """A static list's own rows (filled by CSV import or the API); the key is the lower-cased
    email. Rules, when the list has any, filter within the list."""

    model = StaticMember
    key_column = "member_key"
    COLUMNS: ClassVar[dict[str, FieldType]] = {
        "email": "string",
        "first_name": "string",
        "last_name": "string",
        "phone": "string",
        "user_id": "string",
        "last_active_at": "datetime",
        "added_at": "datetime",
    }

    def __init__(self, session: Session, audience_id: str) -> None:
        super().__init__(session)
        self.audience_id = audience_id

    def scope(self) -> ColumnElement[bool] | None:
        return StaticMember.audience_id == self.audience_id


class SqlSource(TableSource):
    """A table or SELECT in an external database, read through its own read-only engine.

    The member key is the key column as text (so an integer id sorts as the sync state does).
    JSON columns expose their keys as ``<column>.<key>``; one named ``metadata`` (or
    ``properties``) is ``metadata.<key>``.
    """

    def __init__(self, session: Session, relation: Any) -> None:
        # ``relation`` is a ``shared.sources.Relation``; typed loosely to keep this module free of
        # engine handling.
        super().__init__(session)
        self.relation = relation

    @property
    def dialect(self) -> str:
        return str(self.relation.engine.dialect.name)

    def rows_from(self) -> FromClause:
        return self.relation.selectable

    def key(self) -> ColumnElement[Any]:
        column = self.relation.selectable.c[self.relation.key_column]
        if isinstance(column.type, String):
            return column
        return cast(column, String)

    def columns(self) -> dict[str, tuple[ColumnElement[Any], FieldType]]:
        selectable = self.relation.selectable
        return {
            name: (selectable.c[name], kind)
            for name, kind in self.relation.field_types.items()
            if kind != "json"
        }

    def json_columns(self) -> dict[str, ColumnElement[Any]]:
        selectable = self.relation.selectable
        return {
            name: selectable.c[name]
            for name, kind in self.relation.field_types.items()
            if kind == "json"
        }

    def metadata_column(self) -> str | None:
        names = self.json_columns()
        return next((name for name in ("metadata", "properties") if name in names), None)

    def to_row(self, row: Mapping[Any, Any]) -> dict[str, Any]:
        out = super().to_row(row)
        for name in self.json_columns():
            value = row.get(f"__json_{name}")
            out[name] = value
        return out

    def _stream(self, statement: Any) -> Iterable[Mapping[Any, Any]]:
        return self.relation.stream(statement)

    def _fetch(self, statement: Any) -> list[Mapping[Any, Any]]:
        return self.relation.fetch(statement)

    def _scalar(self, statement: Any) -> Any:
        return self.relation.scalar(statement)


def _same_column(column: ColumnElement[Any], _wanted: FieldType) -> ColumnElement[Any]:
    return column


def contact_row(contact: Mapping[Any, Any]) -> dict[str, Any]:
    """A contact as rules and field mappings see it: columns plus ``metadata.<key>``."""
    row: dict[str, Any] = {name: contact[name] for name in ContactStoreSource.COLUMNS}
    for key, value in (contact["properties"] or {}).items():
        row[f"metadata.{key}"] = value
    return row


def source_for(session: Session, audience: Audience) -> MemberSource:
    """The source an audience reads: a static list's rows, the external database its source
    names, or else its workspace's contact store."""
    if audience.kind == "static":
        return StaticListSource(session, audience.id)
    if audience.source_id is not None:
        source = session.get(Source, audience.source_id)
        if source is not None and source.kind == "sql":
            from shared.sources import relation_for

            return SqlSource(session, relation_for(source))
    return ContactStoreSource(session, audience.workspace_id)


SOURCE_KINDS = ("contacts", "sql")


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value

"""Reading an audience's members from its source, sorted by member key.

The diff is a sorted merge of the members and the sync state, so both must come out in the same
order: plain code-point order of the key. PostgreSQL sorts text by its locale unless told
otherwise, hence ``COLLATE "C"`` there; SQLite compares bytes already.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, ClassVar, Protocol

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from shared.db.models import Audience, Contact
from shared.domain.rules import FieldRef, FieldType, compile_rules

METADATA_PREFIXES = ("metadata.", "properties.")


@dataclass(frozen=True, slots=True)
class Member:
    key: str
    row: dict[str, Any]


class MemberSource(Protocol):
    def field_names(self) -> list[str]: ...

    def resolve(self, name: str) -> FieldRef | None: ...

    def has_field(self, name: str) -> bool: ...

    def iter_members(
        self, rules: dict[str, Any] | None, keys: Sequence[str] | None = None
    ) -> Iterator[Member]:
        """Members matching ``rules``, sorted by key; only those in ``keys`` when given (an
        event re-evaluates one contact with the same SQL a full run uses)."""
        ...

    def count(self, rules: dict[str, Any] | None) -> int: ...


def ordered_key(column: Any, dialect_name: str) -> ColumnElement[Any]:
    return column.collate("C") if dialect_name == "postgresql" else column


class ContactStoreSource:
    """The workspace's built-in contact store; the member key is the lower-cased email."""

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
        self.session = session
        self.workspace_id = workspace_id
        self.chunk_size = chunk_size

    def field_names(self) -> list[str]:
        return [*self.COLUMNS, "metadata.*"]

    def has_field(self, name: str) -> bool:
        return self.resolve(name) is not None

    def resolve(self, name: str) -> FieldRef | None:
        if name in self.COLUMNS:
            column: ColumnElement[Any] = getattr(Contact, name)
            return FieldRef(self.COLUMNS[name], partial(_same_column, column))
        for prefix in METADATA_PREFIXES:
            if name.startswith(prefix) and len(name) > len(prefix):
                return FieldRef("json", partial(_json_field, name[len(prefix) :]))
        return None

    def _where(self, rules: dict[str, Any] | None) -> ColumnElement[bool]:
        return compile_rules(rules, self.resolve)

    def iter_members(
        self, rules: dict[str, Any] | None, keys: Sequence[str] | None = None
    ) -> Iterator[Member]:
        """Plain rows, not ORM objects: a sync may stream millions of them."""
        dialect = self.session.get_bind().dialect.name
        columns = [getattr(Contact, name) for name in self.COLUMNS] + [Contact.properties]
        where = self._where(rules)
        if keys is not None:
            where = where & Contact.email.in_(list(keys))
        statement = (
            select(*columns)
            .where(Contact.workspace_id == self.workspace_id, where)
            .order_by(ordered_key(Contact.email, dialect))
            .execution_options(yield_per=self.chunk_size, stream_results=True)
        )
        for row in self.session.execute(statement).mappings():
            yield Member(row["email"], contact_row(row))

    def count(self, rules: dict[str, Any] | None) -> int:
        statement = select(func.count()).where(
            Contact.workspace_id == self.workspace_id, self._where(rules)
        )
        return int(self.session.execute(statement.select_from(Contact)).scalar_one())


def _same_column(column: ColumnElement[Any], _wanted: FieldType) -> ColumnElement[Any]:
    return column


def _json_field(key: str, wanted: FieldType) -> ColumnElement[Any]:
    element = Contact.properties[key]
    if wanted == "number":
        return element.as_float()
    if wanted == "boolean":
        return element.as_boolean()
    return element.as_string()


def contact_row(contact: Mapping[Any, Any]) -> dict[str, Any]:
    """A contact as rules and field mappings see it: columns plus ``metadata.<key>``."""
    row: dict[str, Any] = {name: contact[name] for name in ContactStoreSource.COLUMNS}
    for key, value in (contact["properties"] or {}).items():
        row[f"metadata.{key}"] = value
    return row


def source_for(session: Session, audience: Audience) -> MemberSource:
    """The source an audience reads: its workspace's contact store unless it names another.

    The API only lets an audience name a source of a kind listed in ``SOURCE_KINDS``.
    """
    return ContactStoreSource(session, audience.workspace_id)


SOURCE_KINDS = ("contacts",)


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value

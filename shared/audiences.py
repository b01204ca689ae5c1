"""What the audience endpoints do beyond reading and writing one row: combining rules, static list
membership, the materialization status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.csv_import import EMAIL, LIMITS
from shared.db.audience_models import StaticMember
from shared.db.models import Audience
from shared.db.types import utcnow

AUDIENCE_KINDS = {"rules": "rules", "dynamic": "rules", "static": "static"}
MAX_MEMBERS_PER_CALL = 1000


class MemberInputError(ValueError):
    """A member given to a static list through the API is unusable; ``index`` says which."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"members[{index}]: {message}")
        self.index = index


def add_rules(existing: Mapping[str, Any] | None, added: Sequence[Any], combine: str) -> dict:
    """The audience's rules with ``added`` joined to them.

    ``combine`` ``all``: the new conditions must hold as well (appended to a top-level ``all``);
    ``any``: they are an alternative (appended to a top-level ``any``).
    """
    current = dict(existing or {})
    if not current:
        return {combine: list(added)}
    if list(current) == [combine]:
        return {combine: [*current[combine], *added]}
    return {combine: [current, *added]}


def set_status(audience: Audience, status: str, error: str = "") -> None:
    if audience.status != status or audience.status_error != error:
        audience.status = status
        audience.status_error = error
        audience.status_changed_at = utcnow()


def _member_row(index: int, item: Mapping[str, Any]) -> dict[str, Any]:
    email = str(item.get("email") or "").strip().lower()
    if not EMAIL.match(email):
        raise MemberInputError(index, f"not a valid email address: {item.get('email')!r}")
    row: dict[str, Any] = {"member_key": email, "email": email}
    for name in ("first_name", "last_name", "phone", "user_id"):
        value = item.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > LIMITS[name]):
            raise MemberInputError(index, f"{name} must be text of at most {LIMITS[name]} chars")
        row[name] = value
    active = item.get("last_active_at")
    if isinstance(active, str):
        try:
            when = datetime.fromisoformat(active.replace("Z", "+00:00"))
        except ValueError:
            raise MemberInputError(index, "last_active_at must be an ISO 8601 time") from None
        active = when if when.tzinfo else when.replace(tzinfo=UTC)
    elif active is not None:
        raise MemberInputError(index, "last_active_at must be an ISO 8601 time")
    row["last_active_at"] = active
    properties = item.get("metadata") or item.get("properties") or {}
    if not isinstance(properties, dict):
        raise MemberInputError(index, "metadata must be an object")
    row["properties"] = properties
    return row


def add_static_members(
    session: Session, audience: Audience, members: Iterable[Mapping[str, Any]]
) -> int:
    """Add (or update) members of a static list; all are checked before any is written."""
    rows: dict[str, dict[str, Any]] = {}
    for index, item in enumerate(members):
        row = _member_row(index, item)
        rows[row["member_key"]] = {**row, "audience_id": audience.id, "added_at": utcnow()}
    if not rows:
        return 0
    builder = (
        postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    )
    statement = builder(StaticMember)
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=["audience_id", "member_key"],
        set_={
            name: excluded[name]
            for name in ("first_name", "last_name", "phone", "user_id", "last_active_at")
        }
        | {"properties": excluded.properties},
    )
    session.execute(statement, list(rows.values()))
    return len(rows)


def remove_static_members(session: Session, audience: Audience, keys: Sequence[str]) -> int:
    result: Any = session.execute(
        delete(StaticMember).where(
            StaticMember.audience_id == audience.id,
            StaticMember.member_key.in_([key.strip().lower() for key in keys]),
        )
    )
    return int(result.rowcount or 0)

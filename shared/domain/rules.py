"""Audience rules: JSON groups of conditions, validated and compiled to SQL.

A rule set is ``{"all": [...]}`` or ``{"any": [...]}`` whose items are conditions
``{"field", "op", "value"}`` or nested groups. Filtering happens in the database; this module only
builds the SQLAlchemy expression, given the columns a source exposes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, false, or_, true

FieldType = Literal["string", "number", "boolean", "datetime", "json"]
MAX_DEPTH = 20

OPERATORS: dict[str, frozenset[FieldType]] = {
    "eq": frozenset({"string", "number", "boolean", "datetime"}),
    "neq": frozenset({"string", "number", "boolean", "datetime"}),
    "in": frozenset({"string", "number"}),
    "not_in": frozenset({"string", "number"}),
    "contains": frozenset({"string"}),
    "starts_with": frozenset({"string"}),
    "gt": frozenset({"number", "datetime"}),
    "gte": frozenset({"number", "datetime"}),
    "lt": frozenset({"number", "datetime"}),
    "lte": frozenset({"number", "datetime"}),
    "between": frozenset({"number", "datetime"}),
    "is_null": frozenset({"string", "number", "boolean", "datetime"}),
    "is_not_null": frozenset({"string", "number", "boolean", "datetime"}),
    "within_last_days": frozenset({"datetime"}),
    "more_than_days_ago": frozenset({"datetime"}),
}


class RuleError(ValueError):
    """A rule that cannot be compiled; ``path`` points at it (e.g. ``rules.all[1].any[0]``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class FieldRef:
    """How a source exposes one field to rules: its type and a builder of its SQL expression.

    ``metadata.*`` fields are typed by the value they are compared with, so the builder takes
    the type wanted.
    """

    type: FieldType
    build: Callable[[FieldType], ColumnElement[Any]]


FieldResolver = Callable[[str], FieldRef | None]


def compile_rules(
    rules: Mapping[str, Any] | None, resolve: FieldResolver, now: datetime | None = None
) -> ColumnElement[bool]:
    """Validate ``rules`` and return a WHERE clause. Empty rules match everyone."""
    if not rules:
        return true()
    return _compile_node(rules, resolve, now or datetime.now(UTC), "rules", 0)


def validate_rules(rules: Mapping[str, Any] | None, resolve: FieldResolver) -> None:
    compile_rules(rules, resolve)


def _compile_node(
    node: Any, resolve: FieldResolver, now: datetime, path: str, depth: int
) -> ColumnElement[bool]:
    if depth > MAX_DEPTH:
        raise RuleError(path, f"rules may nest at most {MAX_DEPTH} groups deep")
    if not isinstance(node, Mapping):
        raise RuleError(path, "must be an object: a group {all|any: [...]} or a condition")
    groups = [key for key in ("all", "any") if key in node]
    if groups:
        if len(groups) > 1 or len(node) > 1:
            raise RuleError(path, "a group has exactly one key, 'all' or 'any'")
        kind = groups[0]
        items = node[kind]
        if not isinstance(items, list):
            raise RuleError(f"{path}.{kind}", "must be a list")
        parts = [
            _compile_node(item, resolve, now, f"{path}.{kind}[{index}]", depth + 1)
            for index, item in enumerate(items)
        ]
        if kind == "all":
            return and_(true(), *parts)
        return or_(false(), *parts)
    return _compile_condition(node, resolve, now, path)


def _compile_condition(
    node: Mapping[str, Any], resolve: FieldResolver, now: datetime, path: str
) -> ColumnElement[bool]:
    unknown = set(node) - {"field", "op", "value"}
    if unknown:
        raise RuleError(path, f"unknown keys {sorted(unknown)}; a condition has field, op, value")
    name, op, value = node.get("field"), node.get("op"), node.get("value")
    if not isinstance(name, str) or not name:
        raise RuleError(path, "'field' must be a non-empty string")
    if op not in OPERATORS:
        raise RuleError(path, f"unknown operator {op!r}; one of {sorted(OPERATORS)}")
    ref = resolve(name)
    if ref is None:
        raise RuleError(path, f"unknown field {name!r}")
    field_type = _effective_type(ref, op, value, path)
    if field_type not in OPERATORS[op]:
        raise RuleError(path, f"operator {op!r} does not apply to {field_type} field {name!r}")
    column = ref.build(field_type)
    return _apply(column, op, value, field_type, now, f"{path} ({name} {op})")


def _effective_type(ref: FieldRef, op: str, value: Any, path: str) -> FieldType:
    if ref.type != "json":
        return ref.type
    if op in {"within_last_days", "more_than_days_ago"}:
        return "datetime"
    sample = value[0] if isinstance(value, list) and value else value
    if isinstance(sample, bool):
        return "boolean"
    if isinstance(sample, int | float):
        return "number"
    return "string"


def _apply(
    column: ColumnElement[Any], op: str, value: Any, field_type: FieldType, now: datetime, path: str
) -> ColumnElement[bool]:
    if op == "is_null":
        _expect_no_value(value, path)
        return column.is_(None)
    if op == "is_not_null":
        _expect_no_value(value, path)
        return column.is_not(None)
    if op in {"within_last_days", "more_than_days_ago"}:
        days = _coerce(value, "number", path)
        if days < 0:
            raise RuleError(path, "the number of days must be zero or more")
        cutoff = now - timedelta(days=days)
        return column >= cutoff if op == "within_last_days" else column < cutoff
    if op in {"in", "not_in"}:
        if not isinstance(value, list) or not value:
            raise RuleError(path, "value must be a non-empty list")
        values = [_coerce(item, field_type, path) for item in value]
        return column.in_(values) if op == "in" else or_(column.not_in(values), column.is_(None))
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise RuleError(path, "value must be a list of two bounds [low, high]")
        low, high = (_coerce(item, field_type, path) for item in value)
        return column.between(low, high)
    coerced = _coerce(value, field_type, path)
    if op == "contains":
        return column.contains(coerced, autoescape=True)
    if op == "starts_with":
        return column.startswith(coerced, autoescape=True)
    comparisons: dict[str, Callable[[], ColumnElement[bool]]] = {
        "eq": lambda: column == coerced,
        "neq": lambda: or_(column != coerced, column.is_(None)),
        "gt": lambda: column > coerced,
        "gte": lambda: column >= coerced,
        "lt": lambda: column < coerced,
        "lte": lambda: column <= coerced,
    }
    return comparisons[op]()


def _expect_no_value(value: Any, path: str) -> None:
    if value is not None:
        raise RuleError(path, "this operator takes no value")


def _coerce(value: Any, field_type: FieldType, path: str) -> Any:
    if field_type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RuleError(path, f"value must be a number, got {value!r}")
        return value
    if field_type == "boolean":
        if not isinstance(value, bool):
            raise RuleError(path, f"value must be true or false, got {value!r}")
        return value
    if field_type == "datetime":
        return _parse_datetime(value, path)
    if not isinstance(value, str):
        raise RuleError(path, f"value must be a string, got {value!r}")
    return value


def _parse_datetime(value: Any, path: str) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            try:
                parsed = datetime.combine(date.fromisoformat(value), datetime.min.time())
            except ValueError:
                raise RuleError(
                    path, f"value must be an ISO 8601 date or time: {value!r}"
                ) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise RuleError(path, f"value must be an ISO 8601 date or time, got {value!r}")

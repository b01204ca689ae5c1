"""Audience rules: JSON groups of conditions, validated and compiled to SQL.

A rule set is ``{"all": [...]}`` or ``{"any": [...]}`` whose items are conditions
``{"field", "op", "value"}`` or nested groups. Filtering happens in the database; this module only
builds the SQLAlchemy expression, given the columns a source exposes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Boolean, ColumnElement, Float, Integer, String, and_, false, or_, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeEngine

FieldType = Literal["string", "number", "boolean", "datetime", "json", "any"]
MAX_DEPTH = 20
JSON_KEY = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")

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
    if ref.type == "json" and op in {"is_null", "is_not_null"}:
        # Present means any JSON value but null, whatever its type.
        _expect_no_value(value, f"{path} ({name} {op})")
        present = ref.build("any")
        return present.is_(None) if op == "is_null" else present.is_not(None)
    field_type = _effective_type(ref, op, value, path)
    if field_type not in OPERATORS[op]:
        raise RuleError(path, f"operator {op!r} does not apply to {field_type} field {name!r}")
    column = ref.build(field_type)
    return _apply(column, op, value, field_type, now, f"{path} ({name} {op})")


def _effective_type(ref: FieldRef, op: str, value: Any, path: str) -> FieldType:
    if ref.type != "json":
        return ref.type
    if op in {"within_last_days", "more_than_days_ago"}:
        raise RuleError(path, "relative dates need a datetime column, not a JSON value")
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
        return TextContains(column, coerced) == true()
    if op == "starts_with":
        return TextStartsWith(column, coerced) == true()
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
        # Always a float: PostgreSQL types an IN list by its first value, so [-3, 2.5] would
        # compare 2.5 as an integer.
        return float(value)
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


# Dialect-neutral text and JSON operations. ``LIKE`` ignores case for ASCII on SQLite and not on
# PostgreSQL, and the JSON operators differ; these constructs compile to SQL that gives the same
# answer on both (case-sensitive substring tests; JSON values of the wrong type read as NULL).


class TextContains(FunctionElement[bool]):
    """``haystack`` contains ``needle``, case-sensitively; NULL when ``haystack`` is NULL."""

    type = Boolean()
    inherit_cache = True


class TextStartsWith(FunctionElement[bool]):
    type = Boolean()
    inherit_cache = True


@compiles(TextContains)
def _contains_default(element: TextContains, compiler: SQLCompiler, **kw: Any) -> str:
    haystack, needle = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(strpos({haystack}, {needle}) > 0)"


@compiles(TextContains, "sqlite")
def _contains_sqlite(element: TextContains, compiler: SQLCompiler, **kw: Any) -> str:
    haystack, needle = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(instr({haystack}, {needle}) > 0)"


@compiles(TextStartsWith)
def _starts_with(element: TextStartsWith, compiler: SQLCompiler, **kw: Any) -> str:
    haystack, needle = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(substr({haystack}, 1, length({needle})) = {needle})"


JSON_TYPES: dict[FieldType, tuple[str, ...]] = {
    "any": ("string", "number", "boolean", "object", "array"),
    "number": ("number",),
    "string": ("string",),
    "boolean": ("boolean",),
}
SQLITE_JSON_TYPES: dict[FieldType, tuple[str, ...]] = {
    "any": ("text", "integer", "real", "true", "false", "object", "array"),
    "number": ("integer", "real"),
    "string": ("text",),
    "boolean": ("true", "false"),
}
VALUE_TYPES: dict[FieldType, TypeEngine[Any]] = {
    "any": Integer(),
    "number": Float(),
    "string": String(),
    "boolean": Boolean(),
}


class JsonValue(FunctionElement[Any]):
    """The value at ``key`` of a JSON column when it has the JSON type wanted, else NULL.

    A key holding ``"5"`` in one row and ``5`` in another then compares the same way on both
    databases, and a cast never fails on a value of another type.
    """

    inherit_cache = True
    # The key, the type wanted and the JSON flavour change the SQL: they belong in the statement
    # cache key, or a statement compiled for one key would be reused for another.
    _traverse_internals = [  # noqa: RUF012
        *FunctionElement._traverse_internals,
        ("json_key", InternalTraversal.dp_string),
        ("wanted", InternalTraversal.dp_string),
        ("jsonb", InternalTraversal.dp_boolean),
    ]

    def __init__(self, column: ColumnElement[Any], key: str, wanted: FieldType, jsonb: bool):
        if not JSON_KEY.match(key):
            raise ValueError(f"invalid JSON key {key!r}")
        self.json_key = key
        self.wanted = wanted
        self.jsonb = jsonb
        self.type = VALUE_TYPES[wanted]
        super().__init__(column)


@compiles(JsonValue)
def _json_value_postgresql(element: JsonValue, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    target = compiler.process(column, **kw)
    key = "'" + element.json_key + "'"  # JSON_KEY allows no quote: safe to inline
    typeof = "jsonb_typeof" if element.jsonb else "json_typeof"
    kinds = ", ".join(f"'{kind}'" for kind in JSON_TYPES[element.wanted])
    if element.wanted == "any":
        return f"(CASE WHEN {typeof}({target} -> {key}) IN ({kinds}) THEN 1 END)"
    cast = {"number": "float8", "string": "text", "boolean": "boolean"}[element.wanted]
    return (
        f"(CASE WHEN {typeof}({target} -> {key}) IN ({kinds}) "
        f"THEN CAST({target} ->> {key} AS {cast}) END)"
    )


@compiles(JsonValue, "sqlite")
def _json_value_sqlite(element: JsonValue, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    target = compiler.process(column, **kw)
    path = "'$.\"" + element.json_key + "\"'"
    kinds = ", ".join(f"'{kind}'" for kind in SQLITE_JSON_TYPES[element.wanted])
    if element.wanted == "any":
        return f"(CASE WHEN json_type({target}, {path}) IN ({kinds}) THEN 1 END)"
    return (
        f"(CASE WHEN json_type({target}, {path}) IN ({kinds}) "
        f"THEN json_extract({target}, {path}) END)"
    )


def json_field(column: ColumnElement[Any], key: str, wanted: FieldType) -> ColumnElement[Any]:
    """A ``<json column>.<key>`` field as rules compare it; see ``JsonValue``."""
    from sqlalchemy.dialects.postgresql import JSONB

    return JsonValue(column, key, wanted, isinstance(column.type, JSONB) or _is_jsonb(column))


def _is_jsonb(column: ColumnElement[Any]) -> bool:
    """``JSONType`` is JSON with a JSONB variant on PostgreSQL."""
    variants = getattr(column.type, "_variant_mapping", {}) or {}
    impl = variants.get("postgresql")
    return impl is not None and type(impl).__name__ == "JSONB"

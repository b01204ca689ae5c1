"""Rules compile to SQL that gives the same members on SQLite and PostgreSQL as a plain-Python
reading of the same rules (hypothesis draws the rules; the data mixes NULLs, case, Unicode,
LIKE wildcards and JSON values of several types)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.members import SqlSource
from shared.domain.rules import RuleError
from shared.sources import Relation, SqlSourceConfig
from tests.audiences.conftest import NOW, make_app_database

STRINGS = ["Alice", "alice", "ALICE", "bob", "", "Zoë", "zoë", "a%b", "a_b", "100%", "ün", None]
NEEDLES = ["a", "A", "%", "_", "ë", "", "li", "Al", "b", "ü", "zz"]
NUMBERS = [-3, 0, 1, 2.5, 10, 99.75, 1000]
TIMES = [NOW - timedelta(days=d, hours=h) for d in (0, 1, 5, 29, 31, 90, 400) for h in (3, 9)]
JSON_VALUES = ["pro", "free", "Pro", 1, 2.5, 0, True, False, None, "1", "true"]


def make_rows(count: int = 160) -> list[dict[str, Any]]:
    rng = random.Random(20261126)
    rows = []
    for index in range(count):
        metadata: dict[str, Any] | None = {}
        for key in ("plan", "score"):
            choice = rng.randrange(len(JSON_VALUES) + 1)
            if choice < len(JSON_VALUES):
                metadata[key] = JSON_VALUES[choice]
        if rng.random() < 0.1:
            metadata = None
        rows.append(
            {
                "id": index + 1,
                "email": f"u{index}@example.com",
                "name": rng.choice(STRINGS),
                "phone": None,
                "score": rng.choice([*NUMBERS, None]),
                "active": rng.choice([True, False, None]),
                "last_active_at": rng.choice([*TIMES, None]),
                "metadata": metadata,
            }
        )
    return rows


ROWS = make_rows()


@pytest.fixture(scope="module")
def sources() -> Iterator[list[SqlSource]]:
    made = []
    cleanups = []
    for kind in ("sqlite", "postgresql"):
        url, cleanup = make_app_database(kind, ROWS)
        cleanups.append(cleanup)
        relation = Relation(f"{kind} users", SqlSourceConfig(url, "users", None, "id"))
        made.append(SqlSource(None, relation))  # type: ignore[arg-type]
    yield made
    for cleanup in cleanups:
        cleanup()


# The plain-Python reading -----------------------------------------------------------------------
def json_typed(value: Any, wanted: str) -> Any:
    if wanted == "number":
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if wanted == "boolean":
        return value if isinstance(value, bool) else None
    return value if isinstance(value, str) else None


def field_value(row: dict[str, Any], field: str, op: str, value: Any) -> Any:
    if not field.startswith("metadata."):
        return row[field]
    raw = (row["metadata"] or {}).get(field.split(".", 1)[1])
    if op in ("is_null", "is_not_null"):
        return raw
    sample = value[0] if isinstance(value, list) else value
    wanted = (
        "boolean"
        if isinstance(sample, bool)
        else "number"
        if isinstance(sample, int | float)
        else "string"
    )
    return json_typed(raw, wanted)


def as_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def evaluate(rules: dict[str, Any], row: dict[str, Any]) -> bool:
    if "all" in rules:
        return all(evaluate(item, row) for item in rules["all"])
    if "any" in rules:
        return any(evaluate(item, row) for item in rules["any"])
    field, op, value = rules["field"], rules["op"], rules.get("value")
    v = field_value(row, field, op, value)
    if field == "last_active_at" and op not in ("within_last_days", "more_than_days_ago"):
        value = (
            [as_time(x) for x in value]
            if isinstance(value, list)
            else (as_time(value) if value is not None else None)
        )
    if op == "is_null":
        return v is None
    if op == "is_not_null":
        return v is not None
    if op == "neq":
        return v is None or v != value
    if op == "not_in":
        return v is None or v not in value
    if v is None:
        return False
    if op == "eq":
        return bool(v == value)
    if op == "in":
        return v in value
    if op == "contains":
        return value in v
    if op == "starts_with":
        return bool(v.startswith(value))
    if op == "gt":
        return bool(v > value)
    if op == "gte":
        return bool(v >= value)
    if op == "lt":
        return bool(v < value)
    if op == "lte":
        return bool(v <= value)
    if op == "between":
        return bool(value[0] <= v <= value[1])
    cutoff = datetime.now(UTC) - timedelta(days=value)
    return bool(v >= cutoff) if op == "within_last_days" else bool(v < cutoff)


# Rules hypothesis draws -------------------------------------------------------------------------
def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


strings = st.sampled_from([s for s in STRINGS if s is not None])
numbers = st.sampled_from(NUMBERS)
times = st.sampled_from(TIMES).map(iso)
json_scalars = st.sampled_from([v for v in JSON_VALUES if v is not None])


def conditions() -> st.SearchStrategy[dict[str, Any]]:
    def cond(field: str, op: str, value: Any = None) -> dict[str, Any]:
        item = {"field": field, "op": op}
        if value is not None:
            item["value"] = value
        return item

    null_ops = st.sampled_from(["is_null", "is_not_null"])
    name = st.one_of(
        st.builds(cond, st.just("name"), st.sampled_from(["eq", "neq"]), strings),
        st.builds(
            cond,
            st.just("name"),
            st.sampled_from(["in", "not_in"]),
            st.lists(strings, min_size=1, max_size=3),
        ),
        st.builds(
            cond,
            st.just("name"),
            st.sampled_from(["contains", "starts_with"]),
            st.sampled_from(NEEDLES),
        ),
        st.builds(cond, st.just("name"), null_ops),
    )
    score = st.one_of(
        st.builds(
            cond,
            st.just("score"),
            st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte"]),
            numbers,
        ),
        st.builds(
            cond,
            st.just("score"),
            st.sampled_from(["in", "not_in"]),
            st.lists(numbers, min_size=1, max_size=3),
        ),
        st.builds(
            cond, st.just("score"), st.just("between"), st.lists(numbers, min_size=2, max_size=2)
        ),
        st.builds(cond, st.just("score"), null_ops),
    )
    active = st.one_of(
        st.builds(cond, st.just("active"), st.sampled_from(["eq", "neq"]), st.booleans()),
        st.builds(cond, st.just("active"), null_ops),
    )
    seen = st.one_of(
        st.builds(
            cond,
            st.just("last_active_at"),
            st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte"]),
            times,
        ),
        st.builds(
            cond,
            st.just("last_active_at"),
            st.just("between"),
            st.lists(times, min_size=2, max_size=2),
        ),
        st.builds(
            cond,
            st.just("last_active_at"),
            st.sampled_from(["within_last_days", "more_than_days_ago"]),
            st.sampled_from([0, 1, 2, 30, 100, 1000]),
        ),
        st.builds(cond, st.just("last_active_at"), null_ops),
    )
    meta_field = st.sampled_from(["metadata.plan", "metadata.score", "metadata.missing"])
    meta = st.one_of(
        st.builds(cond, meta_field, st.sampled_from(["eq", "neq"]), json_scalars),
        st.builds(cond, meta_field, st.sampled_from(["gt", "lte"]), numbers),
        st.builds(
            cond,
            meta_field,
            st.sampled_from(["in", "not_in"]),
            st.lists(st.sampled_from(["pro", "free", "Pro", "1"]), min_size=1, max_size=2),
        ),
        st.builds(
            cond, meta_field, st.sampled_from(["contains", "starts_with"]), st.sampled_from(NEEDLES)
        ),
        st.builds(cond, meta_field, null_ops),
    )
    return st.one_of(name, score, active, seen, meta)


rules_strategy = st.recursive(
    conditions(),
    lambda children: st.builds(
        lambda kind, items: {kind: items},
        st.sampled_from(["all", "any"]),
        st.lists(children, min_size=0, max_size=3),
    ),
    max_leaves=8,
).map(lambda node: node if ("all" in node or "any" in node) else {"all": [node]})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=rules_strategy)
def test_sql_matches_python_on_sqlite_and_postgresql(
    sources: list[SqlSource], rules: dict[str, Any]
) -> None:
    expected = sorted(str(row["id"]) for row in ROWS if evaluate(rules, row))
    for source in sources:
        keys = [member.key for member in source.iter_members(rules)]
        assert keys == expected, (source.relation.name, rules)
        assert source.count(rules) == len(expected)


def test_members_stream_in_code_point_order_of_the_key(sources: list[SqlSource]) -> None:
    for source in sources:
        keys = [member.key for member in source.iter_members(None)]
        assert keys == sorted(str(row["id"]) for row in ROWS)
        assert keys[:3] == ["1", "10", "100"], "integer keys sort as text, as the sync state"


def test_keys_restrict_the_members(sources: list[SqlSource]) -> None:
    for source in sources:
        members = list(source.iter_members({"all": []}, keys=["5", "17", "nope"]))
        assert [member.key for member in members] == ["17", "5"]
        assert members[0].row["metadata"] == ROWS[16]["metadata"]


@pytest.mark.parametrize(
    ("rules", "fragment"),
    [
        ({"all": [{"field": "name; DROP TABLE users", "op": "eq", "value": "x"}]}, "unknown field"),
        ({"all": [{"field": "metadata.a'b", "op": "eq", "value": "x"}]}, "unknown field"),
        ({"all": [{"field": "score", "op": "eq", "value": "1; DROP TABLE users"}]}, "number"),
        ({"all": [{"field": "active", "op": "contains", "value": "x"}]}, "does not apply"),
        ({"all": [{"field": "last_active_at", "op": "gt", "value": "yesterday"}]}, "ISO 8601"),
    ],
)
def test_bad_rules_are_refused_naming_the_rule(
    sources: list[SqlSource], rules: dict[str, Any], fragment: str
) -> None:
    for source in sources:
        with pytest.raises(RuleError) as caught:
            list(source.iter_members(rules))
        assert fragment in str(caught.value)
        assert caught.value.path.startswith("rules.all[0]")


def test_sql_in_a_value_is_only_a_value(sources: list[SqlSource]) -> None:
    rules = {
        "any": [
            {"field": "name", "op": "eq", "value": "x' OR '1'='1"},
            {"field": "metadata.plan", "op": "contains", "value": "'); DROP TABLE users;--"},
        ]
    }
    for source in sources:
        assert list(source.iter_members(rules)) == []
        assert source.count(None) == len(ROWS), "the table is still there"


def test_rules_nested_100_deep_are_refused() -> None:
    rules: dict[str, Any] = {"all": [{"field": "name", "op": "is_null"}]}
    for _ in range(100):
        rules = {"all": [rules]}
    from shared.domain.rules import compile_rules

    with pytest.raises(RuleError) as caught:
        compile_rules(rules, lambda name: None)
    assert "at most 20" in str(caught.value)

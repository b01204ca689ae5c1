"""External SQL sources: a read-only connection, the relation members come from, its fields.

A source of kind ``sql`` stores a SQLAlchemy URL (encrypted, never returned) and either a
``table`` or a ``query`` (one SELECT) plus a ``key_column``. Every connection is made read-only
by the database itself (PostgreSQL ``default_transaction_read_only``, SQLite ``query_only``), so
even a URL with write rights cannot change the user's data through us.

Errors name the source and say what went wrong in one line, never with the URL's password and
never with a stack trace: ``SourceUnavailable`` (cannot connect or query) and ``SourceInvalid``
(the table, query or key column is wrong).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    column,
    create_engine,
    event,
    make_url,
    text,
)
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    NoSuchModuleError,
    NoSuchTableError,
    SQLAlchemyError,
)
from sqlalchemy.types import TypeEngine

from shared.config import normalise_database_url
from shared.db.models import Source
from shared.domain.rules import FieldType
from shared.secrets import decrypt_json

SELECT_ONLY = re.compile(r"^\s*select\b", re.IGNORECASE)
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
STATEMENT_TIMEOUT_MS = 60_000

# PostgreSQL type OIDs of a SELECT's result columns (cursor.description) to rule types.
PG_OIDS: dict[int, FieldType] = {
    16: "boolean",
    20: "number",
    21: "number",
    23: "number",
    700: "number",
    701: "number",
    1700: "number",
    1082: "datetime",
    1114: "datetime",
    1184: "datetime",
    25: "string",
    1042: "string",
    1043: "string",
    2950: "string",
    114: "json",
    3802: "json",
}
SQL_TYPES: dict[FieldType, TypeEngine[Any]] = {
    "boolean": Boolean(),
    "number": Float(),
    "datetime": DateTime(timezone=True),
    "string": Text(),
    "json": JSON(),
}


class SourceError(Exception):
    """A source that cannot be used; the message names it and is safe to show."""


class SourceUnavailable(SourceError):
    """The database cannot be reached or refused the query."""


class SourceInvalid(SourceError):
    """The source's settings are wrong: unknown table or column, a query that is not a SELECT."""


@dataclass(frozen=True)
class SqlSourceConfig:
    url: str
    table: str | None
    query: str | None
    key_column: str


def check_config(config: Mapping[str, Any], url: str) -> None:
    """Refuse settings that cannot work before anything connects."""
    table, query = config.get("table"), config.get("query")
    if bool(table) == bool(query):
        raise SourceInvalid("give exactly one of config.table or config.query")
    if table is not None and (not isinstance(table, str) or not IDENTIFIER.match(table)):
        raise SourceInvalid("config.table must be a table name, optionally schema.table")
    if query is not None:
        check_select(query)
    key = config.get("key_column")
    if not isinstance(key, str) or not key:
        raise SourceInvalid("config.key_column is required: the column that identifies a member")
    try:
        parsed = make_url(normalise_database_url(url))
        parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise SourceInvalid("url is not a SQLAlchemy database URL this server can use") from None


def check_select(query: Any) -> str:
    """One SELECT statement, nothing else (the connection is read-only as well)."""
    if not isinstance(query, str) or not query.strip():
        raise SourceInvalid("config.query must be a SELECT statement")
    body = query.strip().rstrip(";").strip()
    if ";" in body:
        raise SourceInvalid("config.query must be a single SELECT statement")
    if not SELECT_ONLY.match(body):
        raise SourceInvalid("config.query must be a SELECT statement")
    return body


def source_config(source: Source) -> SqlSourceConfig:
    secret = decrypt_json(source.secret_encrypted or "")
    return SqlSourceConfig(
        url=normalise_database_url(secret["url"]),
        table=source.config.get("table"),
        query=source.config.get("query"),
        key_column=source.config["key_column"],
    )


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def engine_for(url: str) -> Engine:
    """One pooled, read-only engine per URL for the life of the process."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _read_only_engine(url)
            _engines[url] = engine
        return engine


def _read_only_engine(url: str) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        options = (
            "-c default_transaction_read_only=on -c TimeZone=UTC "
            f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"
        )
        return create_engine(
            url, pool_pre_ping=True, connect_args={"options": options, "connect_timeout": 10}
        )
    if backend == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _query_only(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA query_only=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def dispose_engines() -> None:
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _describe(exc: BaseException, name: str, url: str) -> str:
    """One line about what failed, without the password."""
    original = getattr(exc, "orig", None) or exc
    line = (str(original).strip().splitlines() or [type(original).__name__])[0]
    password = make_url(url).password
    if password:
        line = line.replace(str(password), "***")
    return f"source {name!r}: {line}"


def field_type_of(sql_type: Any) -> FieldType | None:
    """The rule type of a reflected column type; None for types rules cannot use (binary...)."""
    if isinstance(sql_type, Boolean):
        return "boolean"
    if isinstance(sql_type, Integer | Numeric | Float):
        return "number"
    if isinstance(sql_type, DateTime | Date):
        return "datetime"
    if isinstance(sql_type, JSON):
        return "json"
    if isinstance(sql_type, String):
        return "string"
    try:
        python_type = sql_type.python_type
    except NotImplementedError:
        return None
    if python_type is str:
        return "string"
    return None


class Relation:
    """The rows one SQL source exposes: a reflected table or a SELECT as a subquery."""

    def __init__(self, name: str, config: SqlSourceConfig) -> None:
        self.name = name
        self.config = config
        self.engine = engine_for(config.url)
        self.key_column = config.key_column
        self.columns: dict[str, str] = {}  # name -> database type, for GET .../fields
        self.field_types: dict[str, FieldType] = {}
        self.selectable: Any = None
        with self._errors():
            if config.table:
                self._reflect_table(config.table)
            else:
                self._describe_query(check_select(config.query))
        if self.key_column not in self.columns:
            raise SourceInvalid(
                f"source {name!r}: key_column {self.key_column!r} is not one of its columns: "
                f"{sorted(self.columns)}"
            )
        if self.key_column not in self.field_types:
            raise SourceInvalid(
                f"source {name!r}: key_column {self.key_column!r} has no usable type"
            )

    def _errors(self) -> Any:
        return _translate_errors(self.name, self.config.url)

    def _reflect_table(self, qualified: str) -> None:
        schema, _dot, table_name = qualified.rpartition(".")
        try:
            table = Table(table_name, MetaData(), schema=schema or None, autoload_with=self.engine)
        except NoSuchTableError:
            raise SourceInvalid(f"source {self.name!r}: table {qualified!r} not found") from None
        self.selectable = table
        for col in table.columns:
            self.columns[col.name] = str(col.type)
            kind = field_type_of(col.type)
            if kind is not None:
                self.field_types[col.name] = kind

    def _describe_query(self, query: str) -> None:
        probe = text(f"SELECT * FROM ({query}) AS audiencesync_probe")
        with self.engine.connect() as connection:
            result = connection.execute(probe.execution_options(stream_results=True))
            description = result.cursor.description if result.cursor else []
            sample = result.fetchmany(100)
            result.close()
        names = [item[0] for item in description]
        if len(set(names)) != len(names):
            raise SourceInvalid(f"source {self.name!r}: the query returns duplicate column names")
        for index, item in enumerate(description):
            kind = self._query_type(item[1], [row[index] for row in sample])
            self.columns[item[0]] = kind or "unknown"
            if kind is not None:
                self.field_types[item[0]] = kind
        columns = [column(name, SQL_TYPES[self.field_types.get(name, "string")]) for name in names]
        self.selectable = text(query).columns(*columns).subquery("source_rows")

    def _query_type(self, type_code: Any, values: list[Any]) -> FieldType | None:
        if self.engine.dialect.name == "postgresql" and isinstance(type_code, int):
            return PG_OIDS.get(type_code)
        # SQLite reports no types: go by the values of the first rows.
        for value in values:
            if value is None:
                continue
            if isinstance(value, bool):
                return "boolean"
            if isinstance(value, int | float):
                return "number"
            return "string"
        return "string"

    # Running statements, with errors that name the source ---------------------------------------
    def fetch(self, statement: Any) -> list[Any]:
        with self._errors(), self.engine.connect() as connection:
            return list(connection.execute(statement).mappings())

    def scalar(self, statement: Any) -> Any:
        with self._errors(), self.engine.connect() as connection:
            return connection.execute(statement).scalar_one()

    def stream(self, statement: Any) -> Iterator[Any]:
        with self._errors(), self.engine.connect() as connection:
            yield from connection.execute(statement).mappings()

    def fields(self) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "database_type": db_type,
                "type": self.field_types.get(name),
                "key": name == self.key_column,
            }
            for name, db_type in self.columns.items()
        ]


class _translate_errors:
    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, _tb: Any) -> None:
        if exc is None or isinstance(exc, SourceError):
            return
        if isinstance(exc, DBAPIError) and not exc.connection_invalidated:
            message = _describe(exc, self.name, self.url)
            if _is_connection_error(exc):
                raise SourceUnavailable(message) from None
            raise SourceInvalid(message) from None
        if isinstance(exc, SQLAlchemyError | OSError):
            raise SourceUnavailable(_describe(exc, self.name, self.url)) from None


def _is_connection_error(exc: DBAPIError) -> bool:
    from sqlalchemy.exc import InterfaceError, OperationalError

    if isinstance(exc, InterfaceError):
        return True
    if isinstance(exc, OperationalError):
        message = str(exc.orig).lower()
        return not any(
            word in message for word in ("no such table", "no such column", "syntax error")
        )
    return False


_relations: dict[tuple[str, str], Relation] = {}
_relations_lock = threading.Lock()


def relation_for(source: Source) -> Relation:
    """The source's relation, reflected once per version of its settings."""
    stamp = f"{source.updated_at.isoformat() if source.updated_at else ''}|{source.config}"
    cache_key = (source.id, stamp)
    with _relations_lock:
        cached = _relations.get(cache_key)
    if cached is not None:
        return cached
    relation = Relation(source.name, source_config(source))
    with _relations_lock:
        if len(_relations) > 256:
            _relations.clear()
        _relations[cache_key] = relation
    return relation


def forget_source(source_id: str) -> None:
    with _relations_lock:
        for key in [key for key in _relations if key[0] == source_id]:
            del _relations[key]

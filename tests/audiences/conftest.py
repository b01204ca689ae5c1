"""External databases standing in for a user's app database (a ``users`` table), on SQLite and
PostgreSQL, and helpers shared by the audience tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
)
from sqlalchemy.dialects.postgresql import JSONB

from tests.conftest import DATA_DIR, drop_postgres_database, fresh_postgres_database

NOW = datetime.now(UTC).replace(microsecond=0)


def users_table(metadata: MetaData) -> Table:
    return Table(
        "users",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("email", Text),
        Column("name", Text),
        Column("phone", Text),
        Column("score", Float),
        Column("active", Boolean),
        Column("last_active_at", DateTime(timezone=True)),
        Column("metadata", JSON().with_variant(JSONB(), "postgresql")),
    )


def make_app_database(kind: str, rows: list[dict[str, Any]]) -> tuple[str, Any]:
    """A database with a ``users`` table holding ``rows``; returns (url, cleanup)."""
    if kind == "sqlite":
        url = f"sqlite:///{DATA_DIR / f'app-{uuid.uuid4().hex[:8]}.db'}"

        def cleanup() -> None:
            return None
    else:
        url = fresh_postgres_database()

        def cleanup() -> None:
            from shared.sources import dispose_engines

            dispose_engines()
            drop_postgres_database(url)

    engine = create_engine(url)
    metadata = MetaData()
    table = users_table(metadata)
    metadata.create_all(engine)
    with engine.begin() as connection:
        if rows:
            stored = [
                {
                    **row,
                    "last_active_at": (
                        row["last_active_at"].replace(tzinfo=None)
                        if kind == "sqlite" and row["last_active_at"] is not None
                        else row["last_active_at"]
                    ),
                }
                for row in rows
            ]
            connection.execute(table.insert(), stored)
    engine.dispose()
    return url, cleanup


def sample_users(count: int = 30) -> list[dict[str, Any]]:
    names = ["Alice Smith", "bob jones", "Carol", None, "Zoë Ünal", "a%b_c", ""]
    rows = []
    for index in range(1, count + 1):
        rows.append(
            {
                "id": index,
                "email": f"user{index:03d}@example.com",
                "name": names[index % len(names)],
                "phone": f"+4479460{index:05d}" if index % 3 else None,
                "score": float(index * 10) if index % 4 else None,
                "active": index % 2 == 0,
                "last_active_at": NOW - timedelta(days=index),
                "metadata": {"plan": "pro" if index % 5 == 0 else "free", "orders": index % 7},
            }
        )
    return rows


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def app_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A user's app database with 30 users, of each kind."""
    url, cleanup = make_app_database(request.param, sample_users())
    yield url
    cleanup()

"""The same migrations run on SQLite and PostgreSQL, down and up again, and match the models."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect

from shared.db.migrate import alembic_config, upgrade
from shared.db.models import Base
from tests.conftest import drop_postgres_database, fresh_postgres_database, process_env


@pytest.fixture(params=["sqlite", "postgresql"])
def own_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own: going down to nothing must not pull the floor from under the
    session's shared database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    url = fresh_postgres_database()
    yield url
    drop_postgres_database(url)


def test_migrations_go_down_and_up_and_match_the_models(own_database: str) -> None:
    database_url = own_database
    upgrade(database_url)
    config = alembic_config(database_url)
    command.check(config)  # raises if the models and the migrations disagree
    command.downgrade(config, "base")
    engine = create_engine(database_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(database_url)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()
    command.check(config)


def test_processes_starting_together_take_turns_to_migrate(tmp_path: Path) -> None:
    """Every process migrates on start; four at once on a new database must all succeed."""
    for url in (f"sqlite:///{tmp_path / 'fresh.db'}", fresh_postgres_database()):
        env = {**process_env(), "DATABASE_URL": url}
        started = [
            subprocess.Popen(
                [sys.executable, "-m", "cli.main", "db", "upgrade"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(4)
        ]
        outputs = [process.communicate(timeout=120)[0].decode() for process in started]
        assert [process.returncode for process in started] == [0] * 4, outputs
        if url.startswith("postgresql"):
            drop_postgres_database(url)

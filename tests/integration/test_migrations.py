"""The same migrations run on SQLite and PostgreSQL, down and up again, and match the models."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect

from shared.db.migrate import alembic_config, upgrade
from shared.db.models import Base


def test_migrations_go_down_and_up_and_match_the_models(database_url: str) -> None:
    config = alembic_config(database_url)
    command.check(config)  # raises if the models and the migrations disagree
    command.downgrade(config, "base")
    engine = create_engine(database_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(database_url)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()
    command.check(config)

"""Run Alembic migrations from code (``audiencesync db upgrade``) without an alembic.ini.

Every audiencesync process migrates on start, so several may do it at once (``honcho start``,
a rolling deploy). A lock makes them take turns: a PostgreSQL advisory lock, or a file lock
beside a SQLite database. Whoever comes second finds the schema current and does nothing.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from filelock import FileLock
from sqlalchemy import make_url, text

from shared.db.session import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
ADVISORY_LOCK_ID = 0x61756469  # "audi"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "heads") -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        with FileLock(f"{url.database}.migrate.lock", timeout=120):
            command.upgrade(alembic_config(database_url), revision)
        return
    if url.get_backend_name() == "postgresql":
        engine = make_engine(database_url)
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": ADVISORY_LOCK_ID})
            connection.commit()
            try:
                command.upgrade(alembic_config(database_url), revision)
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": ADVISORY_LOCK_ID})
                connection.commit()
        engine.dispose()
        return
    command.upgrade(alembic_config(database_url), revision)

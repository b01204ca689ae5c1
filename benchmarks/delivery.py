"""Benchmark: delivery through the real connectors to each emulator, at the service's limits.

Run from the repository root (see ``benchmarks/README.md``)::

    python benchmarks/delivery.py                       # everything (about 7 minutes)
    python benchmarks/delivery.py --quick               # small sizes, a smoke run
    python benchmarks/delivery.py --only resend,mailchimp

Every scenario runs the production delivery path: ``shared.execution.execute_run`` with the
default connector factory (``shared.delivery.registry.build_connector``), so the connectors
use the shared Redis rate limiter, against an emulator started in-process on a real port.

1. Throughput: records/s and requests/s per destination at its documented limit, compared
   with what that limit allows (target: at least 90%).
2. Bulk: 100,000 contacts into Resend through contact imports, the emulator at 2 requests/s
   (target: under 60 s).
3. Faults (Resend per-record, Mailchimp batch): 5% of requests answered 500 and bursts of
   429 injected during the run. Every record must end delivered or failed with a reason,
   nothing lost, nothing sent twice after the service confirmed it.

Every request an emulator receives is recorded by an ASGI wrapper around the emulator app
(method, path, status, and the request/response bodies of the routes the checks read), so the
figures and the duplicate check come from the wire, not from the client's own counters.

The script exits 1 when a correctness check fails; a speed target missed is printed as MISS
but does not change the exit status. Figures go to ``benchmarks/results/delivery.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from cryptography.fernet import Fernet

# Settings are read from the environment once: set everything before any project import.
REDIS_URL = "redis://127.0.0.1:6379/14"
os.environ["AUDIENCESYNC_SECRET_KEY"] = Fernet.generate_key().decode()
os.environ["AUDIENCESYNC_DATA_DIR"] = tempfile.mkdtemp(prefix="audiencesync-delivery-")
os.environ["REDIS_URL"] = REDIS_URL
os.environ["DATABASE_URL"] = f"sqlite:///{Path(os.environ['AUDIENCESYNC_DATA_DIR']) / 'bench.db'}"

import httpx  # noqa: E402
import redis  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from emulators.klaviyo import create_app as klaviyo_app  # noqa: E402
from emulators.mailchimp import create_app as mailchimp_app  # noqa: E402
from emulators.resend import create_app as resend_app  # noqa: E402
from emulators.sendex import create_app as sendex_app  # noqa: E402
from emulators.server import EmulatorServer  # noqa: E402
from emulators.webhook import create_app as webhook_app  # noqa: E402
from shared.config import Settings, get_settings  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.db.models import (  # noqa: E402
    Audience,
    AudienceSync,
    Contact,
    Destination,
    RunError,
    SyncRun,
    SyncState,
    Workspace,
)
from shared.db.session import make_engine  # noqa: E402
from shared.execution import execute_run  # noqa: E402
from shared.runs import create_run  # noqa: E402
from shared.secrets import encrypt_json  # noqa: E402

RESULTS_FILE = Path(__file__).resolve().parent / "results" / "delivery.json"
TARGET_SHARE = 0.90
BULK_TARGET_SECONDS = 60.0
INSERT_CHUNK = 5000
RULES = {"all": [{"field": "last_active_at", "op": "within_last_days", "value": 30}]}
MAPPING = [
    {"source_column": "email", "destination_field": "email"},
    {"source_column": "first_name", "destination_field": "first_name"},
    {"source_column": "last_name", "destination_field": "last_name"},
]
RESEND_KEY = "re_bench_key"
MAILCHIMP_KEY = "0123456789abcdef0123456789abcdef-us6"
KLAVIYO_KEY = "pk_bench_key"
SENDEX_KEY = "sk_test_bench"
WEBHOOK_SECRET = "whsec_bench"
KLAVIYO_HEADERS = {
    "Authorization": f"Klaviyo-API-Key {KLAVIYO_KEY}",
    "revision": "2026-07-15",
    "Accept": "application/vnd.api+json",
}


# --------------------------------------------------------------------------------------------
# What the emulator saw: an ASGI wrapper recording every API exchange
# --------------------------------------------------------------------------------------------


@dataclass
class Exchange:
    started: float
    ended: float
    method: str
    path: str
    status: int
    request_body: bytes | None = None
    response_body: bytes | None = None


@dataclass
class Recorder:
    """Wraps an emulator app; records each API request (admin routes excluded).

    Bodies are kept only for the routes ``keep_body(method, path)`` names, so a 100,000-row
    import does not sit in memory twice.
    """

    app: Any
    keep_body: Callable[[str, str], bool] = lambda method, path: False
    exchanges: list[Exchange] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_emulator"):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        keep = self.keep_body(method, path)
        request_chunks: list[bytes] = []
        response_chunks: list[bytes] = []
        status = 0

        async def receive_recorded() -> Any:
            message = await receive()
            if keep and message["type"] == "http.request":
                request_chunks.append(message.get("body", b""))
            return message

        async def send_recorded(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif keep and message["type"] == "http.response.body":
                response_chunks.append(message.get("body", b""))
            await send(message)

        started = time.monotonic()
        try:
            await self.app(scope, receive_recorded, send_recorded)
        finally:
            self.exchanges.append(
                Exchange(
                    started,
                    time.monotonic(),
                    method,
                    path,
                    status,
                    b"".join(request_chunks) if keep else None,
                    b"".join(response_chunks) if keep else None,
                )
            )

    @property
    def state(self) -> Any:
        return self.app.state


class Emulator:
    """An emulator app served on a free port, with its recorder and admin helpers."""

    def __init__(self, app: Any, keep_body: Callable[[str, str], bool] | None = None) -> None:
        self.recorder = Recorder(app, keep_body or (lambda method, path: False))
        self.server = EmulatorServer(self.recorder)

    def __enter__(self) -> Emulator:
        self.server.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, f"{self.url}/_emulator{path}", timeout=30, **kwargs)
        if response.status_code >= 300:
            raise RuntimeError(f"emulator admin {method} {path}: {response.text}")
        return response.json()

    def since(self, mark: int) -> list[Exchange]:
        return list(self.recorder.exchanges[mark:])


def get_json(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    """A read through the service's own endpoints, waiting out its 429s as it asks."""
    while True:
        response = client.request(method, path, **kwargs)
        if response.status_code == 429:
            time.sleep(float(response.headers.get("retry-after", "1")))
            continue
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()


# --------------------------------------------------------------------------------------------
# The database: one migrated SQLite file; a workspace per scenario
# --------------------------------------------------------------------------------------------


def contact_rows(workspace_id: str, count: int, prefix: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "id": str(uuid.uuid4()),
            "workspace_id": workspace_id,
            "email": f"{prefix}.{i:06d}@example.com",
            "first_name": f"First{i}",
            "last_name": f"Last{i}",
            "phone": None,
            "user_id": f"{prefix}-{i}",
            "last_active_at": now - timedelta(hours=1 + i % 500),
            "properties": {},
            "created_at": now,
            "updated_at": now,
        }
        for i in range(count)
    ]


def make_sync(
    sessions: sessionmaker[Session],
    name: str,
    destination_type: str,
    config: dict[str, Any],
    credentials: dict[str, Any],
    records: int,
) -> tuple[str, list[str]]:
    """Workspace, ``records`` contacts (all in the audience), destination and a mirror sync."""
    with sessions.begin() as session:
        workspace = Workspace(name=f"delivery benchmark: {name}")
        session.add(workspace)
        session.flush()
        audience = Audience(workspace_id=workspace.id, name="active", rules=RULES)
        destination = Destination(
            workspace_id=workspace.id,
            name=name,
            type=destination_type,
            config=config,
            credentials_encrypted=encrypt_json(credentials),
        )
        session.add_all([audience, destination])
        session.flush()
        sync = AudienceSync(
            workspace_id=workspace.id,
            audience_id=audience.id,
            destination_id=destination.id,
            name=name,
            field_mapping=MAPPING,
            sync_mode="mirror",
            status="active",
        )
        session.add(sync)
        session.flush()
        sync_id, workspace_id = sync.id, workspace.id
    rows = contact_rows(workspace_id, records, name.replace(" ", "-"))
    with sessions.begin() as session:
        for start in range(0, len(rows), INSERT_CHUNK):
            session.execute(insert(Contact), rows[start : start + INSERT_CHUNK])
    return sync_id, [row["email"] for row in rows]


RUN_COUNTERS = (
    "planned_total",
    "processed",
    "added",
    "updated",
    "removed",
    "unchanged",
    "failed",
    "destination_requests",
)


def run_sync(sessions: sessionmaker[Session], sync_id: str, settings: Settings) -> dict[str, Any]:
    """Create a run and execute it with the default connector factory; what the run says."""
    with sessions.begin() as session:
        run_id = create_run(session, session.get_one(AudienceSync, sync_id), "manual").id
    started = time.monotonic()
    status = execute_run(run_id, settings, sessions)
    ended = time.monotonic()
    with sessions() as session:
        run = session.get_one(SyncRun, run_id)
        errors = session.execute(
            select(RunError.member_key, RunError.message, RunError.status_code).where(
                RunError.run_id == run_id
            )
        ).all()
        states = session.execute(
            select(SyncState.member_key, SyncState.status, SyncState.delivered).where(
                SyncState.sync_id == sync_id
            )
        ).all()
        return {
            "run_id": run_id,
            "status": status,
            "error": run.error,
            "started": started,
            "ended": ended,
            "wall_seconds": round(ended - started, 3),
            "counters": {name: getattr(run, name) for name in RUN_COUNTERS},
            "delivery_paths": dict(run.delivery_paths or {}),
            "errors": [(key, message, code) for key, message, code in errors],
            "synced": {key for key, st, delivered in states if st == "synced" and delivered},
            "failed_state": {key for key, st, _ in states if st == "failed"},
        }


def public_run(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": run["status"],
        "error": run["error"],
        "wall_seconds": run["wall_seconds"],
        "counters": run["counters"],
        "delivery_paths": run["delivery_paths"],
        "run_errors": len(run["errors"]),
        "run_error_samples": [
            {"member_key": k, "message": m, "status_code": c} for k, m, c in run["errors"][:3]
        ],
    }


# --------------------------------------------------------------------------------------------
# Figures from the wire
# --------------------------------------------------------------------------------------------


def wire_figures(exchanges: Sequence[Exchange], records: int) -> dict[str, Any]:
    """Request and record rates over the delivery window (first request to last answer).

    ``accepted`` are the requests the service did not refuse with 429: those are what its
    limit counts. The request rate is the spacing of their starts, (n - 1) / (last - first).
    """
    if not exchanges:
        return {"requests": 0}
    accepted = [e for e in exchanges if e.status != 429]
    first, last_end = exchanges[0].started, max(e.ended for e in exchanges)
    span = max(last_end - first, 1e-9)
    starts = [e.started for e in accepted]
    start_span = max(starts[-1] - starts[0], 1e-9) if len(starts) > 1 else span
    by_route = Counter(f"{e.method} {route_template(e.path)}" for e in exchanges)
    return {
        "requests": len(exchanges),
        "requests_accepted": len(accepted),
        "answered_429": len(exchanges) - len(accepted),
        "by_status": dict(sorted(Counter(str(e.status) for e in exchanges).items())),
        "by_route": dict(sorted(by_route.items())),
        "delivery_seconds": round(span, 3),
        "requests_per_second": round((len(accepted) - 1) / start_span, 3)
        if len(accepted) > 1
        else None,
        "records_per_second": round(records / span, 2),
        # Connections busy on average over the window (a connection cap's utilisation).
        "mean_in_flight": round(sum(e.ended - e.started for e in exchanges) / span, 2),
        "peak_in_flight": peak_in_flight(exchanges),
    }


def peak_in_flight(exchanges: Sequence[Exchange]) -> int:
    events = sorted(
        [(e.started, 1) for e in exchanges] + [(e.ended, -1) for e in exchanges],
        key=lambda item: (item[0], item[1]),
    )
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def route_template(path: str) -> str:
    """Collapse ids in a path so routes can be counted (``/contacts/<id>``)."""
    parts = []
    for part in path.split("/"):
        looks_like_id = len(part) >= 16 and any(c.isdigit() for c in part)
        parts.append("{id}" if looks_like_id or "@" in part else part)
    return "/".join(parts)


def verdict(achieved: float | None, allowed: float) -> dict[str, Any]:
    share = (achieved or 0.0) / allowed if allowed else 0.0
    return {
        "allowed": allowed,
        "achieved": achieved,
        "share": round(share, 3),
        "target_share": TARGET_SHARE,
        "met": share >= TARGET_SHARE,
    }


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------


@dataclass
class Bench:
    sessions: sessionmaker[Session]
    settings: Settings
    quick: bool
    results: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks[name] = bool(ok)
        mark = "ok" if ok else "FAILED"
        print(f"    [{mark}] {name}{': ' + detail if detail and not ok else ''}", flush=True)
        return ok

    def settings_with(self, **changes: Any) -> Settings:
        """The process's settings with a different batch cap (what AUDIENCESYNC_BATCH_SIZE
        sets), for paths the connector picks by batch size."""
        return self.settings.model_copy(update=changes)

    def delivery_checks(
        self, name: str, run: dict[str, Any], emails: Sequence[str], held: set[str]
    ) -> None:
        """Every record delivered or failed with a reason; the destination holds exactly the
        delivered set."""
        c = run["counters"]
        self.check(
            f"{name}: added+updated+failed == records",
            c["added"] + c["updated"] + c["failed"] == len(emails),
            f"{c['added']}+{c['updated']}+{c['failed']} != {len(emails)}",
        )
        error_keys = {key for key, message, _ in run["errors"] if message}
        self.check(
            f"{name}: every failed record has a run_errors row with a message",
            len(run["errors"]) == c["failed"]
            and error_keys == run["failed_state"]
            and all(message for _, message, _ in run["errors"]),
            f"{len(run['errors'])} errors rows, {c['failed']} failed, "
            f"{len(run['failed_state'])} failed in sync state",
        )
        self.check(
            f"{name}: none lost (delivered + failed cover every record)",
            run["synced"] | run["failed_state"] == set(emails),
            f"{len(set(emails) - run['synced'] - run['failed_state'])} records unaccounted",
        )
        self.check(
            f"{name}: the destination holds exactly the delivered set",
            held == run["synced"],
            f"held {len(held)}, delivered {len(run['synced'])}, "
            f"held-not-delivered {len(held - run['synced'])}, "
            f"delivered-not-held {len(run['synced'] - held)}",
        )


# -- Resend ----------------------------------------------------------------------------------


def resend_contacts(url: str) -> set[str]:
    """Every contact's email, through ``GET /contacts`` (Resend's older list endpoint returns
    everything when no ``limit`` is given)."""
    headers = {"Authorization": f"Bearer {RESEND_KEY}", "User-Agent": "delivery-benchmark"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        body = get_json(client, "GET", "/contacts")
    return {item["email"] for item in body["data"]}


def resend_throughput(bench: Bench) -> dict[str, Any]:
    records = bench.size(60, 10)
    rate = 2.0
    with Emulator(resend_app(rate=rate)) as emu:
        sync_id, emails = make_sync(
            bench.sessions,
            "resend per-record",
            "resend",
            {"base_url": emu.url, "rate_limit": rate},
            {"api_key": RESEND_KEY},
            records,
        )
        mark = len(emu.recorder.exchanges)
        run = run_sync(bench.sessions, sync_id, bench.settings)
        wire = wire_figures(emu.since(mark), records)
        held = resend_contacts(emu.url)
    bench.delivery_checks("resend throughput", run, emails, held)
    bench.check(
        "resend throughput: per-record path taken",
        run["delivery_paths"].get("per_record") == records and "bulk" not in run["delivery_paths"],
        str(run["delivery_paths"]),
    )
    return {
        "records": records,
        "limit": {
            "basis": "Resend: 2 requests/s per API key (emulator default); one record per "
            "POST /contacts on the per-record path (a call brings fewer than 100 records)",
            "requests_per_second": rate,
            "records_per_second": rate,
        },
        "run": public_run(run),
        "wire": wire,
        "records_per_second": verdict(wire.get("records_per_second"), rate),
        "requests_per_second": verdict(wire.get("requests_per_second"), rate),
    }


def resend_bulk(bench: Bench) -> dict[str, Any]:
    records = bench.size(100_000, 5_000)
    with Emulator(resend_app()) as emu:  # its default: 2 requests/s
        started = time.monotonic()
        sync_id, emails = make_sync(
            bench.sessions,
            "resend bulk",
            "resend",
            {"base_url": emu.url},
            {"api_key": RESEND_KEY},
            records,
        )
        setup = time.monotonic() - started
        mark = len(emu.recorder.exchanges)
        run = run_sync(bench.sessions, sync_id, bench.settings)
        wire = wire_figures(emu.since(mark), records)
        held = resend_contacts(emu.url)
    bench.delivery_checks("resend bulk", run, emails, held)
    bench.check(
        "resend bulk: every record went through contact imports",
        run["delivery_paths"].get("bulk") == records,
        str(run["delivery_paths"]),
    )
    met = run["wall_seconds"] < BULK_TARGET_SECONDS
    return {
        "records": records,
        "emulator_rate": 2.0,
        "setup_seconds_not_timed": round(setup, 2),
        "run": public_run(run),
        "wire": wire,
        "target": {
            "what": "execute_run wall time (plan, count pass, imports, polling, bookkeeping)",
            "seconds": BULK_TARGET_SECONDS,
            "achieved_seconds": run["wall_seconds"],
            "met": met,
            "applies": records == 100_000,
        },
        "per_record_path_would_take_hours": round(records / 2.0 / 3600, 1),
    }


def resend_faults(bench: Bench) -> dict[str, Any]:
    records = bench.size(60, 20)
    rate = 2.0

    def keep(method: str, path: str) -> bool:
        return path.startswith("/contacts") and method in ("POST", "PATCH")

    with Emulator(resend_app(rate=rate), keep) as emu:
        sync_id, emails = make_sync(
            bench.sessions,
            "resend faults",
            "resend",
            {"base_url": emu.url, "rate_limit": rate},
            {"api_key": RESEND_KEY},
            records,
        )
        emu.admin("POST", "/faults", json={"status": 500, "fail_probability": 0.05})
        mark = len(emu.recorder.exchanges)
        with BurstInjector(emu, every=4.0) as bursts:
            run = run_sync(bench.sessions, sync_id, bench.settings)
        emu.admin("DELETE", "/faults")
        stats = emu.admin("GET", "/stats")
        first_exchanges = emu.since(mark)
        held = resend_contacts(emu.url)

        # Who was confirmed how often: 2xx answers to POST /contacts, per email in the body.
        confirmed = Counter(
            json.loads(e.request_body or b"{}").get("email")
            for e in first_exchanges
            if e.method == "POST" and e.path == "/contacts" and 200 <= e.status < 300
        )
        # A request the emulator failed at its gate (an injected 500 or 429) is answered
        # before its body is read, so attempts are counted per email only where it was read.
        attempts = Counter(
            json.loads(e.request_body).get("email")
            for e in first_exchanges
            if e.method == "POST" and e.path == "/contacts" and e.request_body
        )
        # A second run without faults: only what failed may travel again.
        mark = len(emu.recorder.exchanges)
        second = run_sync(bench.sessions, sync_id, bench.settings)
        resent = {
            json.loads(e.request_body or b"{}").get("email")
            for e in emu.since(mark)
            if e.request_body
        }
        held_after = resend_contacts(emu.url)

    return fault_report(
        bench,
        Faults(
            name="resend faults",
            what="email created",
            where="destination",
            method="request bodies recorded at the emulator: 2xx answers to POST /contacts "
            "counted per email (the service's confirmation); more than one is a duplicate",
        ),
        records=records,
        emails=emails,
        run=run,
        held=held,
        stats=stats,
        bursts=bursts,
        first_exchanges=first_exchanges,
        confirmed=confirmed,
        attempts=attempts,
        second=second,
        resent=resent,
        held_after=held_after,
    )


@dataclass(frozen=True)
class Faults:
    """How one fault scenario names things in its checks and report."""

    name: str
    what: str  # "email created", "member written"
    where: str  # "destination", "list"
    method: str  # how confirmations were counted


def fault_report(
    bench: Bench,
    faults: Faults,
    *,
    records: int,
    emails: list[str],
    run: dict[str, Any],
    held: set[str],
    stats: dict[str, Any],
    bursts: BurstInjector,
    first_exchanges: list[Exchange],
    confirmed: Counter[str],
    attempts: Counter[str],
    second: dict[str, Any],
    resent: set[str],
    held_after: set[str],
    **extra: Any,
) -> dict[str, Any]:
    """The checks every fault scenario makes, and its figures: nothing lost, nothing confirmed
    twice, faults really on the wire, and a second run that re-sends nothing confirmed."""
    name = faults.name
    bench.delivery_checks(name, run, emails, held)
    twice = {email: n for email, n in confirmed.items() if n > 1}
    bench.check(
        f"{name}: no {faults.what} twice after the service confirmed it",
        not twice and sum(confirmed.values()) == run["counters"]["added"],
        f"confirmed more than once: {dict(list(twice.items())[:5])}; "
        f"confirmed {sum(confirmed.values())} vs added {run['counters']['added']}",
    )
    bench.check(
        f"{name}: faults really happened (500s and 429s on the wire)",
        stats["faulted"] > 0 and bursts.injected > 0,
        f"faulted={stats['faulted']} bursts={bursts.injected}",
    )
    bench.check(
        f"{name}: the next run re-sends nothing that was confirmed",
        not (resent & run["synced"]) and second["status"] == "succeeded",
        f"re-sent confirmed: {sorted(resent & run['synced'])[:5]}; status {second['status']}",
    )
    bench.check(
        f"{name}: after the next run the {faults.where} holds every record",
        held_after == set(emails),
        f"{len(set(emails) - held_after)} missing",
    )
    return {
        "records": records,
        **extra,
        "faults": {
            "random_500": 0.05,
            "bursts_of_429": bursts.injected,
            "burst": BurstInjector.FAULT,
            "emulator_stats": stats,
        },
        "run": public_run(run),
        "wire": wire_figures(first_exchanges, records),
        "duplicates": {
            "method": faults.method,
            "emails_confirmed_more_than_once": len(twice),
            "max_attempts_for_one_email": max(attempts.values()) if attempts else 0,
            "emails_retried": sum(1 for n in attempts.values() if n > 1),
            "note": "attempts count requests whose body the emulator read; requests failed at "
            "its gate (injected 500/429) are answered unread and appear only in the wire figures",
        },
        "second_run": public_run(second),
        "second_run_resent_confirmed": len(resent & run["synced"]),
    }


class BurstInjector:
    """Injects ``bursts`` bursts of 429s: the first as the run starts (a run with parallel
    batches may be over within seconds), the others from a thread, each ``every`` seconds after
    the previous one was used up (injecting on a fixed clock instead would pile bursts up faster
    than a client obeying ``Retry-After: 1`` can drain them: a permanent wall of 429s)."""

    FAULT: ClassVar[dict[str, Any]] = {"status": 429, "count": 5, "retry_after": 1}

    def __init__(self, emu: Emulator, every: float, bursts: int = 4) -> None:
        self.emu = emu
        self.every = every
        self.bursts = bursts
        self.injected = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="burst-429", daemon=True)

    def __enter__(self) -> BurstInjector:
        self.emu.admin("POST", "/faults", json=self.FAULT)
        self.injected += 1
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while self.injected < self.bursts and not self._stop.wait(self.every):
            active = self.emu.admin("GET", "/faults")["faults"]
            if any(rule["status"] == 429 for rule in active):
                continue  # the last burst is still being answered
            self.emu.admin("POST", "/faults", json=self.FAULT)
            self.injected += 1


# -- Mailchimp -------------------------------------------------------------------------------


def mailchimp_list(url: str) -> str:
    body = {
        "name": "Benchmark",
        "contact": {"company": "Acme", "address1": "1 Main", "city": "Atlanta", "country": "US"},
        "permission_reminder": "You signed up.",
        "email_type_option": False,
        "campaign_defaults": {
            "from_name": "Acme",
            "from_email": "news@acme.io",
            "subject": "News",
            "language": "en",
        },
    }
    with httpx.Client(base_url=f"{url}/3.0", auth=("bench", MAILCHIMP_KEY), timeout=30) as c:
        return str(get_json(c, "POST", "/lists", json=body)["id"])


def mailchimp_members(url: str, list_id: str) -> set[str]:
    """Subscribed members, 1000 a page through Mailchimp's own pagination."""
    held: set[str] = set()
    with httpx.Client(base_url=f"{url}/3.0", auth=("bench", MAILCHIMP_KEY), timeout=60) as c:
        offset = 0
        while True:
            page = get_json(
                c,
                "GET",
                f"/lists/{list_id}/members",
                params={"count": 1000, "offset": offset, "status": "subscribed"},
            )
            held.update(m["email_address"] for m in page["members"])
            offset += len(page["members"])
            if not page["members"] or offset >= page["total_items"]:
                return held


MAILCHIMP_LATENCY = 1.0
MAILCHIMP_CONNECTIONS = 10
MAILCHIMP_BATCH = 500


def mailchimp_throughput(bench: Bench) -> dict[str, Any]:
    """Mailchimp limits connections, not requests per second: what the limit allows is all 10
    connections busy. The emulator holds each request ``MAILCHIMP_LATENCY`` seconds (its
    ``latency`` option: the time Mailchimp takes to write a batch of 500 members, an assumption
    stated in the README). Measured over the batch-subscribe phase (the first batch's start to
    the last one's answer): connections in use on average, against the 10 allowed."""
    records = bench.size(100_000, 2_000)
    with Emulator(mailchimp_app()) as emu:  # default: 100 requests/s, 10 connections
        emu.admin("POST", "/config", json={"latency": MAILCHIMP_LATENCY})
        list_id = mailchimp_list(emu.url)
        sync_id, emails = make_sync(
            bench.sessions,
            "mailchimp batch",
            "mailchimp",
            {"base_url": emu.url, "list_id": list_id},
            {"api_key": MAILCHIMP_KEY},
            records,
        )
        mark = len(emu.recorder.exchanges)
        run = run_sync(bench.sessions, sync_id, bench.settings)
        exchanges = emu.since(mark)
        wire = wire_figures(exchanges, records)
        emu.admin("POST", "/config", json={"latency": 0})
        held = mailchimp_members(emu.url, list_id)
    bench.delivery_checks("mailchimp throughput", run, emails, held)
    bench.check(
        "mailchimp throughput: batch path taken",
        run["delivery_paths"].get("bulk") == records,
        str(run["delivery_paths"]),
    )
    batches = [e for e in exchanges if e.method == "POST" and e.path.count("/") == 3]
    window = max(e.ended for e in batches) - min(e.started for e in batches)
    busy = sum(e.ended - e.started for e in batches)
    mean_batch_seconds = busy / len(batches)
    allowed = MAILCHIMP_CONNECTIONS / mean_batch_seconds * MAILCHIMP_BATCH
    return {
        "records": records,
        "limit": {
            "basis": f"Mailchimp publishes one limit: {MAILCHIMP_CONNECTIONS} simultaneous "
            f"connections per account. The emulator answers each request after "
            f"{MAILCHIMP_LATENCY}s (its `latency` option), so the limit allows "
            f"{MAILCHIMP_CONNECTIONS} batches of {MAILCHIMP_BATCH} per observed batch time",
            "connections": MAILCHIMP_CONNECTIONS,
            "latency_seconds": MAILCHIMP_LATENCY,
            "mean_batch_seconds": round(mean_batch_seconds, 3),
            "records_per_second": round(allowed, 1),
        },
        "run": public_run(run),
        "wire": wire,
        "batch_phase": {
            "batches": len(batches),
            "seconds": round(window, 3),
            "records_per_second": round(len(batches) * MAILCHIMP_BATCH / window, 1)
            if records % MAILCHIMP_BATCH == 0
            else None,
        },
        "connections_in_use": verdict(round(busy / window, 2), MAILCHIMP_CONNECTIONS),
    }


def mailchimp_faults(bench: Bench) -> dict[str, Any]:
    records = bench.size(5_000, 1_000)
    batch = 50  # more requests, so that 5% of them fail

    def keep(method: str, path: str) -> bool:
        return method == "POST" and path.startswith("/3.0/lists/") and path.count("/") == 3

    with Emulator(mailchimp_app(), keep) as emu:
        list_id = mailchimp_list(emu.url)
        sync_id, emails = make_sync(
            bench.sessions,
            "mailchimp faults",
            "mailchimp",
            {"base_url": emu.url, "list_id": list_id},
            {"api_key": MAILCHIMP_KEY},
            records,
        )
        emu.admin("POST", "/faults", json={"status": 500, "fail_probability": 0.05})
        mark = len(emu.recorder.exchanges)
        settings = bench.settings_with(batch_size=batch)
        with BurstInjector(emu, every=2.0) as bursts:
            run = run_sync(bench.sessions, sync_id, settings)
        emu.admin("DELETE", "/faults")
        stats = emu.admin("GET", "/stats")
        first_exchanges = emu.since(mark)
        held = mailchimp_members(emu.url, list_id)

        confirmed: Counter[str] = Counter()
        attempts: Counter[str] = Counter()
        for e in first_exchanges:
            if not e.request_body:
                continue
            sent = [m["email_address"] for m in json.loads(e.request_body)["members"]]
            attempts.update(sent)
            if 200 <= e.status < 300:
                answer = json.loads(e.response_body or b"{}")
                refused = {item["email_address"] for item in answer.get("errors", [])}
                confirmed.update(email for email in sent if email not in refused)
        mark = len(emu.recorder.exchanges)
        second = run_sync(bench.sessions, sync_id, settings)
        resent = {
            m["email_address"]
            for e in emu.since(mark)
            if e.request_body
            for m in json.loads(e.request_body)["members"]
        }
        held_after = mailchimp_members(emu.url, list_id)

    return fault_report(
        bench,
        Faults(
            name="mailchimp faults",
            what="member written",
            where="list",
            method="request and response bodies recorded at the emulator: each member of a "
            "2xx batch-subscribe answer that is not in its `errors` counts as confirmed, per "
            "email; more than one confirmation is a duplicate",
        ),
        records=records,
        emails=emails,
        run=run,
        held=held,
        stats=stats,
        bursts=bursts,
        first_exchanges=first_exchanges,
        confirmed=confirmed,
        attempts=attempts,
        second=second,
        resent=resent,
        held_after=held_after,
        batch_size=batch,
    )


# -- Klaviyo ---------------------------------------------------------------------------------

KLAVIYO_STEADY = 750 / 60  # POST /api/profile-import: 75/s burst, 750/min steady (spec)


def klaviyo_list(url: str) -> str:
    with httpx.Client(base_url=url, headers=KLAVIYO_HEADERS, timeout=30) as c:
        body = {"data": {"type": "list", "attributes": {"name": "benchmark"}}}
        answer = get_json(
            c,
            "POST",
            "/api/lists",
            content=json.dumps(body),
            headers={"Content-Type": "application/vnd.api+json"},
        )
    return str(answer["data"]["id"])


def klaviyo_members(url: str, list_id: str) -> set[str]:
    held: set[str] = set()
    with httpx.Client(base_url=url, headers=KLAVIYO_HEADERS, timeout=60) as c:
        next_url: str | None = f"/api/lists/{list_id}/profiles?page[size]=100"
        while next_url:
            page = get_json(c, "GET", next_url)
            held.update(item["attributes"]["email"] for item in page["data"])
            next_url = page["links"].get("next")
    return held


def klaviyo_throughput(bench: Bench) -> dict[str, Any]:
    records = bench.size(495, 45)
    batch = 9  # fewer than 10 records a call: the per-record path (profile-import)
    with Emulator(klaviyo_app()) as emu:  # spec per-endpoint limits on
        list_id = klaviyo_list(emu.url)
        sync_id, emails = make_sync(
            bench.sessions,
            "klaviyo per-record",
            "klaviyo",
            {"base_url": emu.url, "list_id": list_id},  # the connector paces each endpoint
            {"api_key": KLAVIYO_KEY},
            records,
        )
        mark = len(emu.recorder.exchanges)
        run = run_sync(bench.sessions, sync_id, bench.settings_with(batch_size=batch))
        exchanges = emu.since(mark)
        wire = wire_figures(exchanges, records)
        imports = [e for e in exchanges if e.path == "/api/profile-import" and e.status != 429]
        wire["profile_import"] = wire_figures(imports, records)
        held = klaviyo_members(emu.url, list_id)
    bench.delivery_checks("klaviyo throughput", run, emails, held)
    bench.check(
        "klaviyo throughput: per-record path taken",
        run["delivery_paths"].get("per_record") == records,
        str(run["delivery_paths"]),
    )
    return {
        "records": records,
        "batch_size": batch,
        "limit": {
            "basis": "Klaviyo spec: POST /api/profile-import 75/s burst, 750/min steady; the "
            "per-record path spends one profile-import per record plus one POST "
            "/api/lists/{id}/relationships/profiles (10/s, 150/min) per call of 9; the "
            "connector paces each endpoint at its own steady rate (route limits)",
            "requests_per_second": round(KLAVIYO_STEADY, 3),
            "records_per_second": round(KLAVIYO_STEADY, 3),
        },
        "run": public_run(run),
        "wire": wire,
        "records_per_second": verdict(wire.get("records_per_second"), KLAVIYO_STEADY),
        "requests_per_second": verdict(
            wire["profile_import"].get("requests_per_second"), KLAVIYO_STEADY
        ),
    }


# -- Sendex ----------------------------------------------------------------------------------


def sendex_audience(url: str) -> str:
    headers = {"Authorization": f"Bearer {SENDEX_KEY}"}
    with httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=30) as c:
        body = {"name": "Benchmark", "domain": "example.com"}
        return str(get_json(c, "POST", "/audiences", json=body)["id"])


def sendex_contacts(url: str, audience: str) -> set[str]:
    headers = {"Authorization": f"Bearer {SENDEX_KEY}"}
    held: set[str] = set()
    with httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=60) as c:
        offset = 0
        while True:
            page = get_json(
                c,
                "GET",
                f"/audiences/{audience}/contacts",
                params={"limit": 200, "offset": offset},
            )
            held.update(item["email"] for item in page["data"] if item.get("subscribed", True))
            offset += len(page["data"])
            if not page["data"] or offset >= page["total"]:
                return held


def sendex_throughput(bench: Bench) -> dict[str, Any]:
    records = bench.size(300, 30)
    with Emulator(sendex_app()) as emu:  # its default rate
        rate = float(emu.admin("GET", "/config")["rate"])
        audience = sendex_audience(emu.url)
        sync_id, emails = make_sync(
            bench.sessions,
            "sendex",
            "sendex",
            {"base_url": emu.url, "audience_id": audience},
            {"api_key": SENDEX_KEY},
            records,
        )
        mark = len(emu.recorder.exchanges)
        run = run_sync(bench.sessions, sync_id, bench.settings)
        wire = wire_figures(emu.since(mark), records)
        held = sendex_contacts(emu.url, audience)
    bench.delivery_checks("sendex throughput", run, emails, held)
    return {
        "records": records,
        "limit": {
            "basis": f"Sendex emulator default: {rate:g} requests/s per key; one contact "
            "upsert per request",
            "requests_per_second": rate,
            "records_per_second": rate,
        },
        "run": public_run(run),
        "wire": wire,
        "records_per_second": verdict(wire.get("records_per_second"), rate),
        "requests_per_second": verdict(wire.get("requests_per_second"), rate),
    }


# -- Webhook ---------------------------------------------------------------------------------


def webhook_records(url: str) -> set[str]:
    with httpx.Client(base_url=url, timeout=120) as c:
        body = get_json(c, "GET", "/batches", params={"operation": "upsert"})
    return {record["key"] for batch in body["data"] for record in batch["records"]}


def webhook_throughput(bench: Bench) -> dict[str, Any]:
    records = bench.size(30_000, 1_000)
    rate, chunk = 10.0, 100
    with Emulator(webhook_app(secret=WEBHOOK_SECRET)) as emu:
        sync_id, emails = make_sync(
            bench.sessions,
            "webhook",
            "webhook",
            {"url": f"{emu.url}/webhook", "batch_size": chunk, "rate_limit": rate},
            {"secret": WEBHOOK_SECRET},
            records,
        )
        mark = len(emu.recorder.exchanges)
        run = run_sync(bench.sessions, sync_id, bench.settings)
        wire = wire_figures(emu.since(mark), records)
        held = webhook_records(emu.url)
    bench.delivery_checks("webhook throughput", run, emails, held)
    return {
        "records": records,
        "limit": {
            "basis": f"configured rate_limit {rate:g} POSTs/s, batch_size {chunk} records a POST",
            "requests_per_second": rate,
            "records_per_second": rate * chunk,
        },
        "run": public_run(run),
        "wire": wire,
        "records_per_second": verdict(wire.get("records_per_second"), rate * chunk),
        "requests_per_second": verdict(wire.get("requests_per_second"), rate),
    }


SCENARIOS: dict[str, list[tuple[str, Callable[[Bench], dict[str, Any]]]]] = {
    "resend": [
        ("resend_per_record_throughput", resend_throughput),
        ("resend_bulk_100k", resend_bulk),
        ("resend_faults", resend_faults),
    ],
    "mailchimp": [
        ("mailchimp_batch_throughput", mailchimp_throughput),
        ("mailchimp_faults", mailchimp_faults),
    ],
    "klaviyo": [("klaviyo_per_record_throughput", klaviyo_throughput)],
    "sendex": [("sendex_throughput", sendex_throughput)],
    "webhook": [("webhook_throughput", webhook_throughput)],
}


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
    }


def summary_line(name: str, result: dict[str, Any]) -> str:
    run = result["run"]
    c = run["counters"]
    counts = f"added={c['added']} failed={c['failed']} requests={c['destination_requests']}"
    if "target" in result:
        t = result["target"]
        mark = "ok" if t["met"] else "MISS"
        return (
            f"{name}: {result['records']:,} records in {t['achieved_seconds']:.1f} s "
            f"(target < {t['seconds']:.0f} s) [{mark}]; {counts}"
        )
    if "connections_in_use" in result:
        u = result["connections_in_use"]
        mark = "ok" if u["met"] else "MISS"
        return (
            f"{name}: {u['achieved']} of {u['allowed']} connections in use ({u['share']:.0%}) "
            f"[{mark}]; {result['batch_phase']['records_per_second']} records/s while batching, "
            f"{result['limit']['records_per_second']} allowed at "
            f"{result['limit']['mean_batch_seconds']} s a batch; {counts}"
        )
    if "records_per_second" in result and isinstance(result["records_per_second"], dict):
        r = result["records_per_second"]
        mark = "ok" if r["met"] else "MISS"
        line = (
            f"{name}: {r['achieved']} records/s of {r['allowed']:g} allowed "
            f"({r['share']:.0%}) [{mark}]"
        )
        q = result.get("requests_per_second")
        if isinstance(q, dict):
            line += f"; {q['achieved']} requests/s of {q['allowed']:g} ({q['share']:.0%})"
        return f"{line}; {counts}"
    d = result["duplicates"]
    return (
        f"{name}: {result['records']:,} records, {result['faults']['emulator_stats']['faulted']} "
        f"faulted answers, {result['faults']['bursts_of_429']} bursts of 429; {counts}; "
        f"duplicates after confirmation: {d['emails_confirmed_more_than_once']}; "
        f"second run re-sent confirmed: {result['second_run_resent_confirmed']}"
    )


def write_results(key: str, result: dict[str, Any]) -> None:
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {"benchmark": "delivery", "runs": {}}
    if RESULTS_FILE.exists():
        with contextlib.suppress(json.JSONDecodeError):
            document = json.loads(RESULTS_FILE.read_text())
    document.setdefault("runs", {})[key] = result
    RESULTS_FILE.write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated destinations to run (of {', '.join(SCENARIOS)}); default all",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown destination(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    args.destinations = wanted or list(SCENARIOS)
    return args


def prepare_database() -> sessionmaker[Session]:
    url = get_settings().resolved_database_url
    upgrade(url, "heads")
    return sessionmaker(bind=make_engine(url), expire_on_commit=False)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = Path(os.environ["AUDIENCESYNC_DATA_DIR"])
    machine = machine_info()
    redis.Redis.from_url(REDIS_URL).flushdb()
    started = time.monotonic()
    try:
        sessions = prepare_database()
        bench = Bench(sessions, get_settings(), args.quick)
        for destination in args.destinations:
            for name, scenario in SCENARIOS[destination]:
                print(f"== {name}", flush=True)
                result = scenario(bench)
                bench.results[name] = result
                print("   " + summary_line(name, result), flush=True)
        sessions.kw["bind"].dispose()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "quick": args.quick,
        "database": "sqlite (temporary file)",
        "redis": "127.0.0.1:6379 db 14 (flushed first)",
        "scenarios": bench.results,
        "checks": bench.checks,
        "total_seconds": round(time.monotonic() - started, 1),
    }
    print()
    for name, scenario_result in bench.results.items():
        print("  " + summary_line(name, scenario_result))
    print()
    failed = [name for name, ok in bench.checks.items() if not ok]
    print(f"  checks: {len(bench.checks) - len(failed)} of {len(bench.checks)} passed")
    if not args.no_write:
        key = ("quick-" if args.quick else "full-") + "+".join(args.destinations)
        write_results(key, result)
        print(f"  Wrote benchmarks/results/{RESULTS_FILE.name} [{key}]")
    if failed:
        print(f"FAILED: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

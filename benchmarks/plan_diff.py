"""Benchmark: planning a mirror diff, and a no-change re-run through the real executor.

Run from the repository root (see ``benchmarks/README.md``)::

    python benchmarks/plan_diff.py                      # temporary SQLite file
    python benchmarks/plan_diff.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

What it does:

1. Builds a throw-away database (a temporary SQLite file, or a fresh database created on the
   PostgreSQL server of ``--database-url`` and dropped afterwards) with one workspace, the
   audience's contacts plus a pool of non-members, an audience ("active in the last 30 days"),
   a destination and a mirror sync. Sync state is filled as if a first run had delivered every
   member, with the payload hashes the real mapping produces. Then churn is applied; with
   ``--churn c`` and ``k = round(members * c / 2)``: k members leave (their ``last_active_at``
   moves out of the rule's window), k non-members join (it moves back in) and k staying members
   change a mapped field (``plan``). The default is 500 + 500 + 500 out of 100,000.
2. Times planning the diff exactly the way the executor builds its plan (members streamed from
   the contact store, mapped and hashed, merged with the streamed sync state), in a child
   process so that its peak memory is not hidden by the set-up's.
3. Runs the real ``shared.execution.execute_run`` twice with a counting fake connector: once to
   deliver the churn, then again with nothing changed, which must make no destination call
   (the script exits non-zero otherwise, or when any other check fails).

Figures are printed and merged into ``benchmarks/results/plan_diff.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import random
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, cast

from cryptography.fernet import Fernet

# The project reads its settings from the environment (once, cached): give it a generated Fernet
# key and a temporary data directory before any project module is imported. A child process
# started by this script inherits the parent's values.
_CHILD_FLAG = "AUDIENCESYNC_BENCH_CHILD"
if _CHILD_FLAG not in os.environ:
    os.environ["AUDIENCESYNC_SECRET_KEY"] = Fernet.generate_key().decode()
    os.environ["AUDIENCESYNC_DATA_DIR"] = tempfile.mkdtemp(prefix="audiencesync-bench-")

import sqlalchemy  # noqa: E402
from sqlalchemy import Table, bindparam, select, text, update  # noqa: E402
from sqlalchemy.engine import Engine, make_url  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from shared.config import get_settings, normalise_database_url  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.db.models import (  # noqa: E402
    Audience,
    AudienceSync,
    Contact,
    Destination,
    SyncRun,
    SyncState,
    Workspace,
)
from shared.db.session import make_engine  # noqa: E402
from shared.delivery.connector import Outcome, Record  # noqa: E402
from shared.domain.diff import (  # noqa: E402
    CALLS_DESTINATION,
    Current,
    Delivered,
    Op,
    SyncMode,
    plan_diff,
)
from shared.domain.mapping import FieldMapping, map_row, payload_hash  # noqa: E402
from shared.domain.members import (  # noqa: E402
    ContactStoreSource,
    contact_row,
    ordered_key,
    source_for,
)
from shared.execution import execute_run  # noqa: E402
from shared.secrets import encrypt_json  # noqa: E402

RESULTS_FILE = Path(__file__).resolve().parent / "results" / "plan_diff.json"
INSERT_CHUNK = 5000
NON_MEMBER_SHARE = 0.10  # the contact store also holds inactive contacts the rules filter out

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Linus", "Margaret", "Guido", "Radia"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton", "Perlman"]
PLANS = ["free", "trial", "pro", "enterprise"]
RULES = {"all": [{"field": "last_active_at", "op": "within_last_days", "value": 30}]}
FIELD_MAPPING = [
    {"source_column": "email", "destination_field": "email"},
    {"source_column": "first_name", "destination_field": "first_name"},
    {"source_column": "last_name", "destination_field": "last_name"},
    {"source_column": "metadata.plan", "destination_field": "plan"},
]


# --------------------------------------------------------------------------------------------
# The counting connector (a fake destination: it accepts everything and counts the calls)
# --------------------------------------------------------------------------------------------


class CountingConnector:
    type: ClassVar[str] = "bench-counting"
    batch_size: ClassVar[int] = 100

    def __init__(self) -> None:
        self.upsert_calls = 0
        self.remove_calls = 0
        self.upserted = 0
        self.removed = 0
        self.closed = False

    @property
    def request_count(self) -> int:
        return self.upsert_calls + self.remove_calls

    @staticmethod
    def validate_mapping(destination_fields: Sequence[str]) -> None:
        return None

    def prepare(self, destination_fields: Sequence[str]) -> None:
        return None

    def check(self) -> None:
        return None

    def upsert(self, records: Sequence[Record]) -> list[Outcome]:
        self.upsert_calls += 1
        self.upserted += len(records)
        return [
            Outcome(r.key, True, destination_ref=r.destination_ref or f"ref-{r.key}")
            for r in records
        ]

    def remove(self, records: Sequence[Record]) -> list[Outcome]:
        self.remove_calls += 1
        self.removed += len(records)
        return [Outcome(r.key, True) for r in records]

    def close(self) -> None:
        self.closed = True

    def summary(self) -> dict[str, int]:
        return {
            "upsert_calls": self.upsert_calls,
            "remove_calls": self.remove_calls,
            "records_upserted": self.upserted,
            "records_removed": self.removed,
        }


# --------------------------------------------------------------------------------------------
# Database lifecycle
# --------------------------------------------------------------------------------------------


class Database:
    """A throw-away database: a temporary SQLite file, or a fresh PostgreSQL database."""

    def __init__(self, server_url: str | None) -> None:
        self.server_url = normalise_database_url(server_url) if server_url else None
        self.name: str | None = None
        self.url = ""
        self._admin: Engine | None = None

    def __enter__(self) -> Database:
        if self.server_url is None:
            path = Path(os.environ["AUDIENCESYNC_DATA_DIR"]) / "bench.db"
            self.url = f"sqlite:///{path}"
            return self
        server = make_url(self.server_url)
        if server.get_backend_name() != "postgresql":
            raise SystemExit("--database-url must point at a PostgreSQL server")
        self.name = f"audiencesync_bench_{secrets.token_hex(4)}"
        self._admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = server.set(database=self.name).render_as_string(hide_password=False)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._admin is not None and self.name is not None:
            with self._admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self._admin.dispose()


EMPTY_CONTACT = {**dict.fromkeys(ContactStoreSource.COLUMNS), "properties": {}}


def database_info(engine: Engine) -> dict[str, Any]:
    kind = engine.dialect.name
    with engine.connect() as connection:
        if kind == "sqlite":
            version = connection.execute(text("select sqlite_version()")).scalar_one()
        else:
            version = connection.execute(text("show server_version")).scalar_one()
    return {"kind": kind, "version": str(version), "driver": engine.dialect.driver}


# --------------------------------------------------------------------------------------------
# Set-up: workspace, contacts, audience, destination, sync, delivered state, churn
# --------------------------------------------------------------------------------------------


def build_contacts(
    workspace_id: str, members: int, non_members: int, now: datetime, rng: random.Random
) -> list[dict[str, Any]]:
    """Contact rows: ``members`` active in the last 20 days, then inactive non-members."""
    rows = []
    for index in range(members + non_members):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        if index < members:
            active = now - timedelta(seconds=rng.randint(0, 20 * 86400))
        else:
            active = now - timedelta(days=rng.randint(60, 365))
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "workspace_id": workspace_id,
                "email": f"{first}.{last}.{index}@example.com".lower(),
                "first_name": first,
                "last_name": last,
                "phone": None,
                "user_id": f"u{index}",
                "last_active_at": active,
                "properties": {"plan": rng.choice(PLANS)},
                "created_at": now,
                "updated_at": now,
            }
        )
    return rows


def insert_chunks(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """SQLAlchemy core executemany, a chunk at a time."""
    for start in range(0, len(rows), INSERT_CHUNK):
        session.execute(table.insert(), rows[start : start + INSERT_CHUNK])


def set_up(
    sessions: sessionmaker[Session], members: int, churn: float, seed: int
) -> tuple[dict[str, Any], dict[str, float], dict[str, int]]:
    """Create everything; returns ids, set-up timings and the churn actually applied."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    timings: dict[str, float] = {}
    per_kind = round(members * churn / 2)
    non_members = max(per_kind, round(members * NON_MEMBER_SHARE))

    with sessions.begin() as session:
        workspace = Workspace(name="plan_diff benchmark")
        session.add(workspace)
        session.flush()
        audience = Audience(
            workspace_id=workspace.id, name="Active in the last 30 days", rules=RULES
        )
        destination = Destination(
            workspace_id=workspace.id,
            name="Counting fake",
            type="resend",
            config={"base_url": "http://127.0.0.1:9"},  # never called: the connector is a fake
            credentials_encrypted=encrypt_json({"api_key": "re_benchmark_not_a_key"}),
        )
        session.add_all([audience, destination])
        session.flush()
        sync = AudienceSync(
            workspace_id=workspace.id,
            audience_id=audience.id,
            destination_id=destination.id,
            name="Active users, mirrored",
            field_mapping=FIELD_MAPPING,
            sync_mode=SyncMode.MIRROR.value,
            status="active",
        )
        session.add(sync)
        session.flush()
        first_run = SyncRun(
            sync_id=sync.id,
            workspace_id=workspace.id,
            trigger="manual",
            sync_mode=SyncMode.MIRROR.value,
            status="succeeded",
            started_at=now,
            finished_at=now,
            planned_total=members,
            processed=members,
            added=members,
        )
        session.add(first_run)
        session.flush()
        sync.last_run_id = first_run.id
        ids = {"workspace": workspace.id, "sync": sync.id, "first_run": first_run.id}

    started = time.perf_counter()
    contacts = build_contacts(ids["workspace"], members, non_members, now, rng)
    with sessions.begin() as session:
        insert_chunks(session, Contact.__table__, contacts)
    timings["insert_contacts"] = time.perf_counter() - started

    # The state a first run leaves behind: every member delivered, with its payload's hash.
    started = time.perf_counter()
    mapping = FieldMapping.parse(FIELD_MAPPING)
    state_rows = []
    for index, row in enumerate(contacts[:members]):
        payload = map_row(contact_row({**EMPTY_CONTACT, **row}), mapping)
        state_rows.append(
            {
                "sync_id": ids["sync"],
                "member_key": row["email"],
                "payload_hash": payload_hash(payload),
                "destination_ref": f"contact-{index}",
                "delivered": True,
                "status": "synced",
                "last_error": "",
                "last_run_id": ids["first_run"],
                "updated_at": now,
            }
        )
    with sessions.begin() as session:
        insert_chunks(session, SyncState.__table__, state_rows)
    timings["insert_state"] = time.perf_counter() - started
    del state_rows

    # Churn: leavers go quiet (rule field), joiners come back (rule field), and some staying
    # members change a mapped field (their plan), so their payload hash changes.
    started = time.perf_counter()
    member_rows = contacts[:members]
    leaving = rng.sample(member_rows, per_kind)
    leaving_ids = {row["id"] for row in leaving}
    staying = [row for row in member_rows if row["id"] not in leaving_ids]
    changing = rng.sample(staying, per_kind)
    joining = rng.sample(contacts[members:], per_kind)
    table = cast(Table, Contact.__table__)
    set_active = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(last_active_at=bindparam("b_active"), updated_at=now)
    )
    set_plan = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(properties=bindparam("b_properties"), updated_at=now)
    )
    with sessions.begin() as session:
        quiet = now - timedelta(days=90)
        back = now - timedelta(hours=1)
        for rows, when in ((leaving, quiet), (joining, back)):
            if rows:
                session.execute(set_active, [{"b_id": r["id"], "b_active": when} for r in rows])
        if changing:
            session.execute(
                set_plan,
                [
                    {"b_id": r["id"], "b_properties": {"plan": _other_plan(r, rng)}}
                    for r in changing
                ],
            )
    timings["apply_churn"] = time.perf_counter() - started

    engine: Engine = sessions.kw["bind"]
    if engine.dialect.name == "postgresql":
        # A real database has planner statistics; fresh bulk-loaded tables have none yet.
        started = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE"))
        timings["analyze"] = time.perf_counter() - started

    mix = {
        "members_before": members,
        "non_member_contacts": non_members,
        "contacts": members + non_members,
        "leave": len(leaving),
        "join": len(joining),
        "change": len(changing),
        "members_after": members - len(leaving) + len(joining),
    }
    return ids, timings, mix


def _other_plan(row: dict[str, Any], rng: random.Random) -> str:
    return rng.choice([plan for plan in PLANS if plan != row["properties"]["plan"]])


# --------------------------------------------------------------------------------------------
# Planning, the executor's way (shared.execution._Delivery._plan / _state)
# --------------------------------------------------------------------------------------------


def plan_stream(session: Session, sync: AudienceSync) -> Iterator[Any]:
    mapping = FieldMapping.parse(sync.field_mapping)
    audience = sync.audience
    source = source_for(session, audience)
    current = (
        Current(member.key, payload, payload_hash(payload))
        for member in source.iter_members(audience.rules)
        for payload in (map_row(member.row, mapping),)
    )
    yield from plan_diff(current, state_stream(session, sync.id), SyncMode(sync.sync_mode))


def state_stream(session: Session, sync_id: str) -> Iterator[Delivered]:
    dialect = session.get_bind().dialect.name
    statement = (
        select(
            SyncState.member_key,
            SyncState.payload_hash,
            SyncState.delivered,
            SyncState.status,
            SyncState.destination_ref,
        )
        .where(SyncState.sync_id == sync_id)
        .order_by(ordered_key(SyncState.member_key, dialect))
        .execution_options(yield_per=2000, stream_results=True)
    )
    for key, hash_, delivered, status, ref in session.execute(statement):
        yield Delivered(key, hash_, delivered, status == "failed", ref)


def count_plan(sessions: sessionmaker[Session], sync: AudienceSync) -> Counter[str]:
    counts: Counter[str] = Counter()
    with sessions() as session:
        for change in plan_stream(session, sync):
            counts[str(change.op)] += 1
    return counts


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = action()
    return time.perf_counter() - started, value


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def measure_plan(url: str, sync_id: str, repeat: int) -> dict[str, Any]:
    """Runs in a fresh child process: time the plan, then measure its memory."""
    engine = make_engine(url)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    with sessions() as session:
        sync = session.get_one(AudienceSync, sync_id)  # its audience is loaded (joined)
    gc.collect()
    rss_before = _maxrss_bytes()
    walls = []
    counts: Counter[str] = Counter()
    for _ in range(repeat):
        wall, counts = _timed(lambda: count_plan(sessions, sync))
        walls.append(wall)
    rss_after = _maxrss_bytes()

    # Where the time goes: each input stream on its own, best of ``repeat`` passes too (the rest
    # is mapping, hashing and merging).
    def members_only() -> int:
        with sessions() as session:
            source = source_for(session, sync.audience)
            return sum(1 for _ in source.iter_members(sync.audience.rules))

    def state_only() -> int:
        with sessions() as session:
            return sum(1 for _ in state_stream(session, sync.id))

    members_wall = min(_timed(members_only)[0] for _ in range(repeat))
    state_wall = min(_timed(state_only)[0] for _ in range(repeat))
    state_rows = state_only()

    gc.collect()
    tracemalloc.start()
    traced_wall, _ = _timed(lambda: count_plan(sessions, sync))
    _current, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    engine.dispose()

    members = sum(counts[str(op)] for op in (Op.ADD, Op.UPDATE, Op.UNCHANGED, Op.TRACK))
    best = min(walls)
    return {
        "wall_seconds": round(best, 3),
        "wall_seconds_all": [round(w, 3) for w in walls],
        "members": members,
        "state_rows": state_rows,
        "members_per_second": round(members / best),
        "ops": dict(sorted(counts.items())),
        "destination_ops": sum(counts[str(op)] for op in CALLS_DESTINATION),
        "breakdown_seconds": {
            "read_members_only": round(members_wall, 3),
            "read_state_only": round(state_wall, 3),
            "map_hash_merge_rest": round(max(0.0, best - members_wall - state_wall), 3),
        },
        "memory": {
            "tracemalloc_peak_mib": round(traced_peak / 2**20, 2),
            "tracemalloc_pass_wall_seconds": round(traced_wall, 3),
            "ru_maxrss_delta_mib": round((rss_after - rss_before) / 2**20, 2),
            "ru_maxrss_before_mib": round(rss_before / 2**20, 2),
        },
    }


class PlanChild:
    """The plan is measured in a child process, started before the set-up allocates anything.

    On Linux ``ru_maxrss`` survives ``exec``: a child started after the set-up would inherit the
    parent's high-water mark and show no growth at all. This one is started early, imports the
    project, then waits on its stdin for the database and sync to measure.
    """

    def __init__(self) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "--measure-plan"]
        self.process = subprocess.Popen(
            command,
            env={**os.environ, _CHILD_FLAG: "1"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def measure(self, url: str, sync_id: str, repeat: int) -> dict[str, Any]:
        job = json.dumps({"url": url, "sync_id": sync_id, "repeat": repeat})
        out, err = self.process.communicate(job + "\n")
        if self.process.returncode != 0:
            sys.stderr.write(err)
            raise SystemExit(f"the plan measurement failed (exit {self.process.returncode})")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def child_main() -> int:
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the parent gave up before asking
    job = json.loads(line)
    print(json.dumps(measure_plan(job["url"], job["sync_id"], job["repeat"])))
    return 0


# --------------------------------------------------------------------------------------------
# The real executor, with the counting connector
# --------------------------------------------------------------------------------------------


def executor_run(sessions: sessionmaker[Session], sync_id: str) -> dict[str, Any]:
    with sessions.begin() as session:
        sync = session.get_one(AudienceSync, sync_id)
        run = SyncRun(
            sync_id=sync.id,
            workspace_id=sync.workspace_id,
            trigger="manual",
            sync_mode=sync.sync_mode,
            status="pending",
        )
        session.add(run)
        session.flush()
        sync.last_run_id = run.id
        run_id = run.id

    connectors: list[CountingConnector] = []

    def factory(_destination: Destination, _settings: Any) -> CountingConnector:
        connector = CountingConnector()
        connectors.append(connector)
        return connector

    wall, status = _timed(
        lambda: execute_run(run_id, get_settings(), sessions, connector_factory=factory)
    )
    with sessions() as session:
        run = session.get_one(SyncRun, run_id)
        counters = {
            name: getattr(run, name)
            for name in (
                "planned_total",
                "processed",
                "added",
                "updated",
                "removed",
                "unchanged",
                "failed",
                "destination_requests",
            )
        }
    calls = Counter[str]()
    for connector in connectors:
        calls.update(connector.summary())
    return {
        "status": status,
        "wall_seconds": round(wall, 3),
        "run_counters": counters,
        "connector": {name: calls[name] for name in sorted(CountingConnector().summary())},
        "connectors_built": len(connectors),
    }


# --------------------------------------------------------------------------------------------
# Checks, reporting
# --------------------------------------------------------------------------------------------


def checks(
    mix: dict[str, int], plan: dict[str, Any], churn_run: dict[str, Any], quiet_run: dict[str, Any]
) -> dict[str, bool]:
    ops = plan["ops"]
    expected_ops = {
        "add": mix["join"],
        "update": mix["change"],
        "remove": mix["leave"],
        "unchanged": mix["members_before"] - mix["leave"] - mix["change"],
    }
    counters = churn_run["run_counters"]
    quiet = quiet_run["connector"]
    return {
        "plan_ops_match_churn": all(ops.get(k, 0) == v for k, v in expected_ops.items())
        and set(ops) <= set(expected_ops),
        "churn_run_succeeded": churn_run["status"] == "succeeded",
        "churn_run_delivered_the_churn": counters["added"] == mix["join"]
        and counters["updated"] == mix["change"]
        and counters["removed"] == mix["leave"]
        and counters["failed"] == 0,
        "no_change_run_succeeded": quiet_run["status"] == "succeeded",
        "no_change_run_made_zero_destination_calls": quiet["upsert_calls"] == 0
        and quiet["remove_calls"] == 0
        and quiet_run["run_counters"]["destination_requests"] == 0,
        "no_change_run_counted_everyone_unchanged": quiet_run["run_counters"]["unchanged"]
        == mix["members_after"],
    }


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu_model = platform.processor()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_model": cpu_model,
        "sqlalchemy": sqlalchemy.__version__,
    }


def print_table(result: dict[str, Any]) -> None:
    plan, memory = result["plan"], result["plan"]["memory"]
    breakdown = plan["breakdown_seconds"]
    churn_run, quiet_run = result["executor"]["churn_run"], result["executor"]["no_change_run"]
    mix = result["churn"]
    database = result["database"]
    lines = [
        ("database", f"{database['kind']} {database['version']}"),
        ("members (before -> after)", f"{mix['members_before']:,} -> {mix['members_after']:,}"),
        ("churn: leave / join / change", f"{mix['leave']} / {mix['join']} / {mix['change']}"),
        ("plan: wall time", f"{plan['wall_seconds']:.2f} s (runs: {plan['wall_seconds_all']})"),
        ("plan: members/s", f"{plan['members_per_second']:,}"),
        ("plan: ops", ", ".join(f"{k}={v}" for k, v in plan["ops"].items())),
        ("plan: read members only", f"{breakdown['read_members_only']:.2f} s"),
        ("plan: read state only", f"{breakdown['read_state_only']:.2f} s"),
        ("plan: map+hash+merge (rest)", f"{breakdown['map_hash_merge_rest']:.2f} s"),
        ("plan: tracemalloc peak", f"{memory['tracemalloc_peak_mib']:.2f} MiB (Python heap)"),
        ("plan: ru_maxrss delta", f"{memory['ru_maxrss_delta_mib']:.2f} MiB (process RSS)"),
        ("execute_run, churn", _run_line(churn_run)),
        ("execute_run, no change", _run_line(quiet_run)),
    ]
    width = max(len(name) for name, _ in lines)
    print()
    for name, value in lines:
        print(f"  {name:<{width}}  {value}")
    print()
    for name, ok in result["checks"].items():
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")
    print()


def _run_line(run: dict[str, Any]) -> str:
    c, k = run["run_counters"], run["connector"]
    return (
        f"{run['wall_seconds']:.2f} s, {run['status']}; added={c['added']} updated={c['updated']} "
        f"removed={c['removed']} unchanged={c['unchanged']}; "
        f"connector upsert calls={k['upsert_calls']} remove calls={k['remove_calls']}"
    )


def write_results(key: str, result: dict[str, Any]) -> None:
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {"benchmark": "plan_diff", "runs": {}}
    if RESULTS_FILE.exists():
        with contextlib.suppress(json.JSONDecodeError):
            document = json.loads(RESULTS_FILE.read_text())
    document.setdefault("runs", {})[key] = result
    RESULTS_FILE.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000, help="audience size (100000)")
    parser.add_argument(
        "--churn",
        type=float,
        default=0.01,
        help="membership churn (0.01): half leave, half join; as many again change a field",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server URL; a fresh database is created on it and dropped afterwards "
        "(default: a temporary SQLite file)",
    )
    parser.add_argument("--repeat", type=int, default=2, help="timed plan passes; best is kept (2)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--no-write", action="store_true", help="print only; do not update the results file"
    )
    parser.add_argument("--measure-plan", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.members < 1 or not 0 <= args.churn <= 1 or args.repeat < 1:
        parser.error("--members must be positive, --churn in [0, 1], --repeat at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure_plan:
        return child_main()

    data_dir = Path(os.environ["AUDIENCESYNC_DATA_DIR"])
    load_at_start = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    total_started = time.perf_counter()
    child = PlanChild()
    try:
        with Database(args.database_url) as database:
            os.environ["DATABASE_URL"] = database.url  # before get_settings() is first called
            started = time.perf_counter()
            upgrade(database.url)
            migrate_wall = time.perf_counter() - started
            engine = make_engine(database.url)
            sessions = sessionmaker(bind=engine, expire_on_commit=False)
            try:
                info = database_info(engine)
                print(f"Setting up {args.members:,} members on {info['kind']} ...", flush=True)
                ids, timings, mix = set_up(sessions, args.members, args.churn, args.seed)
                timings = {"migrate": migrate_wall, **timings}
                print("Timing the plan (child process) ...", flush=True)
                plan = child.measure(database.url, ids["sync"], args.repeat)
                print("execute_run: delivering the churn ...", flush=True)
                churn_run = executor_run(sessions, ids["sync"])
                print("execute_run: no change ...", flush=True)
                quiet_run = executor_run(sessions, ids["sync"])
            finally:
                engine.dispose()
    finally:
        child.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine_info(), "load_average_at_start": load_at_start},
        "database": info,
        "parameters": {"members": args.members, "churn": args.churn, "seed": args.seed},
        "churn": mix,
        "setup_seconds": {name: round(value, 3) for name, value in timings.items()},
        "plan": plan,
        "executor": {"churn_run": churn_run, "no_change_run": quiet_run},
        "total_seconds": round(time.perf_counter() - total_started, 1),
    }
    result["checks"] = checks(mix, plan, churn_run, quiet_run)
    print_table(result)
    if not args.no_write:
        key = f"{info['kind']}-{args.members}-churn{args.churn:g}"
        write_results(key, result)
        print(f"Wrote benchmarks/results/{RESULTS_FILE.name} [{key}]")
    failed = [name for name, ok in result["checks"].items() if not ok]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

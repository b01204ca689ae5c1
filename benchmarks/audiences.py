"""Benchmark: audiences over an app's ``users`` table of 1,000,000 rows on PostgreSQL, and a CSV
import of 100,000 rows, all through the real API.

Run from the repository root::

    python benchmarks/audiences.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

What it does:

1. Creates two throw-away databases on that server: the "app" database with a ``users`` table
   (``--users`` rows, default 1,000,000, filled with ``generate_series``) and the indexes the
   README tells users to create, and audiencesync's own database (migrated).
2. Through the API: creates a SQL source on ``users`` (key column ``id``) and an audience of three
   rules (active in the last 30 days, plan ``pro``, at least 3 orders); times its count, its
   preview, and a members page (20) at the start, the middle and the end of the key order (keyset
   pagination: a cursor at any depth costs the same).
3. Imports a CSV of ``--csv-rows`` rows (default 100,000; 1% bad emails, 1% duplicates) into a
   static list, streamed from a file, and reports its time and the process's peak memory growth.

Each timing is the median of ``--repeat`` runs (default 5). Figures are printed and written to
``benchmarks/results/audiences.json``. Exits non-zero when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

os.environ.setdefault("AUDIENCESYNC_SECRET_KEY", Fernet.generate_key().decode())
os.environ.setdefault("AUDIENCESYNC_DATA_DIR", tempfile.mkdtemp(prefix="audiencesync-bench-"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, make_url, text

RESULTS = Path(__file__).resolve().parent / "results" / "audiences.json"
TARGETS = {"count_s": 1.0, "members_page_s": 0.05, "preview_s": 1.0, "csv_import_s": 15.0}

# The indexes the README recommends for a users table read by rules on last_active_at and paged
# by its integer id (the member key is the id as text, in code-point order).
INDEXES = (
    "CREATE INDEX users_last_active_at ON users (last_active_at)",
    'CREATE INDEX users_key_c ON users ((CAST(id AS VARCHAR)) COLLATE "C")',
)
FILL = """
INSERT INTO users (id, email, first_name, last_name, phone, plan, total_orders,
                   total_order_value, last_active_at, created_at, metadata)
SELECT g, 'user' || g || '@example.com', 'First' || (g % 1000), 'Last' || (g % 5000),
       '+1555' || lpad((g % 10000000)::text, 7, '0'),
       (ARRAY['free', 'pro', 'team'])[1 + g % 3], g % 11, (g % 997) * 1.5,
       now() - make_interval(secs => (g * 7919) % (365 * 86400)),
       now() - make_interval(days => (400 + g % 400)::int),
       jsonb_build_object('source', (ARRAY['ads', 'seo', 'referral'])[1 + g % 3], 'score', g % 100)
FROM generate_series(1::bigint, :count) AS g
"""


def new_database(admin_url: str) -> str:
    name = f"audiencesync_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    name = make_url(url).database
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def fill_users(url: str, count: int) -> float:
    started = time.perf_counter()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, first_name text,"
                " last_name text, phone text, plan text, total_orders integer,"
                " total_order_value numeric(12, 2), last_active_at timestamptz,"
                " created_at timestamptz, metadata jsonb)"
            )
        )
        connection.execute(text(FILL), {"count": count})
        for statement in INDEXES:
            connection.execute(text(statement))
        connection.execute(text("ANALYZE users"))
    engine.dispose()
    return time.perf_counter() - started


def timed(call: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    durations = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations), result


def write_csv(path: Path, rows: int) -> None:
    with path.open("w") as handle:
        handle.write("email,first_name,last_name,plan\n")
        for index in range(rows):
            if index % 100 == 17:
                handle.write(f"broken-{index},B,C,free\n")
            elif index % 100 == 42:
                handle.write(f"csv{index - 1}@example.com,Dup,Row,pro\n")
            else:
                handle.write(f"csv{index}@example.com,F{index},L{index},pro\n")


def expect(response: Any, status: int) -> Any:
    if response.status_code != status:
        raise SystemExit(f"{response.request.method} {response.request.url}: {response.text}")
    return response.json()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--csv-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    app_url = new_database(args.database_url)
    own_url = new_database(args.database_url)
    os.environ["DATABASE_URL"] = own_url
    figures: dict[str, Any] = {
        "users": args.users,
        "csv_rows": args.csv_rows,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    try:
        from fastapi.testclient import TestClient

        from api.app import create_app
        from shared.db.migrate import upgrade
        from shared.db.session import session_scope
        from shared.domain.members import encode_cursor
        from shared.workspaces import create_workspace

        upgrade(own_url)
        figures["fill_users_s"] = round(fill_users(app_url, args.users), 1)
        with session_scope() as session:
            workspace, token = create_workspace(session, "bench")
            workspace_id = workspace.id
        client = TestClient(create_app(), raise_server_exceptions=True)
        headers = {"Authorization": f"Bearer {token}"}
        base = f"/api/v1/workspaces/{workspace_id}"

        # CSV import first, so that its peak memory is not hidden by what comes later.
        static = expect(
            client.post(
                f"{base}/audiences", json={"name": "csv", "kind": "static"}, headers=headers
            ),
            201,
        )
        csv_path = Path(tempfile.mkdtemp()) / "people.csv"
        write_csv(csv_path, args.csv_rows)
        figures["csv_bytes"] = csv_path.stat().st_size
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        with csv_path.open("rb") as handle:
            report = expect(
                client.post(
                    f"{base}/audiences/{static['id']}/import",
                    files={"file": ("people.csv", handle, "text/csv")},
                    headers=headers,
                ),
                201,
            )
        figures["csv_import_s"] = round(time.perf_counter() - started, 2)
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        figures["csv_import_peak_rss_growth_mb"] = round((rss_after - rss_before) / 1024, 1)
        figures["csv_accepted"] = report["accepted"]
        figures["csv_rejected"] = report["rejected"]

        source = expect(
            client.post(
                f"{base}/sources",
                json={
                    "name": "app users",
                    "kind": "sql",
                    "url": app_url,
                    "config": {"table": "users", "key_column": "id"},
                },
                headers=headers,
            ),
            201,
        )
        rules = {
            "all": [
                {"field": "last_active_at", "op": "within_last_days", "value": 30},
                {"field": "plan", "op": "eq", "value": "pro"},
                {"field": "total_orders", "op": "gte", "value": 3},
            ]
        }
        audience = expect(
            client.post(
                f"{base}/audiences",
                json={"name": "active pro buyers", "source_id": source["id"], "rules": rules},
                headers=headers,
            ),
            201,
        )
        url = f"{base}/audiences/{audience['id']}"
        figures["count_s"], counted = timed(
            lambda: expect(client.get(f"{url}/count", headers=headers), 200), args.repeat
        )
        figures["audience_members"] = counted["count"]
        figures["preview_s"], _ = timed(
            lambda: expect(client.get(f"{url}/preview", headers=headers), 200), args.repeat
        )
        everyone = expect(
            client.post(
                f"{base}/audiences",
                json={"name": "all users", "source_id": source["id"]},
                headers=headers,
            ),
            201,
        )
        pages: dict[str, float] = {}
        for label, key in (
            ("first", None),
            # keys are ids as text, in code-point order: "5" is about the middle, "98" ~2% from
            # the end
            ("middle", "5"),
            ("end", "98"),
        ):
            params = {"first": 20} | ({"after": encode_cursor(key)} if key else {})
            for name, target in (("all_users", everyone["id"]), ("rules", audience["id"])):
                pages[f"{name}_{label}"], page = timed(
                    lambda target=target, params=params: expect(
                        client.get(
                            f"{base}/audiences/{target}/members", params=params, headers=headers
                        ),
                        200,
                    ),
                    args.repeat,
                )
                if not page["data"]:
                    raise SystemExit(f"empty page {name} {label}")
        figures["members_page_s_by_depth"] = {k: round(v, 4) for k, v in pages.items()}
        figures["members_page_s"] = max(pages.values())
    finally:
        from shared.db.session import reset_engine_cache
        from shared.sources import dispose_engines

        dispose_engines()
        reset_engine_cache()
        drop_database(args.database_url, app_url)
        drop_database(args.database_url, own_url)

    for key in ("count_s", "preview_s", "members_page_s"):
        figures[key] = round(figures[key], 4)
    figures["targets"] = TARGETS
    missed = [key for key, limit in TARGETS.items() if figures[key] > limit]
    figures["missed"] = missed
    print(json.dumps(figures, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())

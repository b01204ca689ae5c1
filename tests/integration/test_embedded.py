"""The embedded default: no DATABASE_URL, no REDIS_URL, one command runs the whole path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def embedded_env(data_dir: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL"} and not key.startswith("AUDIENCESYNC_")
    }
    env["AUDIENCESYNC_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = str(ROOT)
    return env


def audiencesync(
    *args: str, data_dir: Path, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=embedded_env(data_dir),
        cwd=data_dir,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_demo_runs_end_to_end_on_sqlite_and_the_embedded_broker(tmp_path: Path) -> None:
    result = audiencesync("demo", "--users", "40", "--rate", "50", data_dir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "First run" in out and "Second run" in out
    assert "in sync" in out and "NOT in sync" not in out
    assert (tmp_path / "audiencesync.db").exists()
    assert (tmp_path / "valkey" / "appendonlydir").is_dir(), "the broker persists to the data dir"
    assert not (tmp_path / "broker.url").exists(), "the embedded broker stopped with the CLI"
    assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0, "key file is owner-only"


def test_workspaces_create_prints_json_and_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    for _ in range(2):
        upgraded = audiencesync("db", "upgrade", data_dir=tmp_path)
        assert upgraded.returncode == 0, upgraded.stderr
    created = audiencesync("workspaces", "create", "Acme", data_dir=tmp_path)
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout.strip().splitlines()[-1])
    assert set(body) == {"workspace_id", "token"}
    assert body["token"].startswith("as_")

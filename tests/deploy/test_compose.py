"""docker-compose.yml and the Procfile, checked by reading them (there is no Docker engine here).

Every command they run must parse as a real ``audiencesync`` command line (subcommand, options
and option types, checked by click itself), and the two files must run the same processes.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from cli.main import app

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("migrate", "api", "worker", "beat", "flower")
LONG_RUNNING = ("api", "worker", "beat", "flower")
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")  # honcho's own pattern
SHELL_DEFAULT = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-([^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = compose["services"]
    return result


def procfile() -> dict[str, str]:
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        match = PROCFILE_LINE.match(line)
        if match:
            processes[match.group(1)] = match.group(2)
    return processes


def resolve(argv: list[str]) -> tuple[list[str], Any]:
    """The subcommand path of an ``audiencesync ...`` argv, and click's parse of its options
    (raises if the subcommand, an option or an option's value is not accepted)."""
    assert argv[0] == "audiencesync", argv
    # Typer ships its own copy of click: duck-type groups rather than import click's classes.
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    args = argv[1:]
    while hasattr(command, "commands"):
        assert args, f"{argv}: names a group, not a command"
        name, args = args[0], args[1:]
        assert name in command.commands, f"{argv}: no subcommand {name!r} in {path or 'the app'}"
        command = command.commands[name]
        path.append(name)
    context = command.make_context(" ".join(["audiencesync", *path]), list(args))
    return path, context


def command_of(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def procfile_argv(command: str) -> list[str]:
    """A Procfile command as the shell runs it with nothing set: ``${VAR:-x}`` becomes ``x``.
    It must be ``exec audiencesync ...``: runners start it with ``sh -c``, and without the
    ``exec`` the shell dies of the runner's SIGTERM at once, so the runner stops waiting while
    the process itself is still shutting down (an orphan, killed with its container)."""
    assert "$" not in SHELL_DEFAULT.sub("", command), f"only ${{VAR:-default}} forms: {command}"
    argv = shlex.split(SHELL_DEFAULT.sub(lambda m: m.group(2), command))
    assert argv[0] == "exec", command
    return argv[1:]


def test_all_services_exist(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", "redis", *APP_SERVICES}
    assert services["postgres"]["image"].split(":")[0] == "postgres"
    assert services["postgres"]["image"].split(":")[1].startswith("16")
    assert services["redis"]["image"].split(":")[0] == "redis"
    assert services["redis"]["image"].split(":")[1].startswith("7")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]


def test_app_services_share_one_image_and_environment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    first = services[APP_SERVICES[0]]
    assert first["build"] in (".", {"context": "."})
    assert (ROOT / "Dockerfile").is_file()
    for name in APP_SERVICES:
        service = services[name]
        assert service["build"] == first["build"], name
        assert service["image"] == first["image"], name
        assert service["environment"] == compose["x-audiencesync-env"], name
        assert "entrypoint" not in service, name
    # The anchor is used by reference, not copied: one place to change the settings.
    text = (ROOT / "docker-compose.yml").read_text()
    assert text.count("&audiencesync-env") == 1


def test_environment_points_at_the_compose_services(compose: dict[str, Any]) -> None:
    env = compose["x-audiencesync-env"]
    assert env["DATABASE_URL"] == (
        "postgresql://audiencesync:audiencesync@postgres:5432/audiencesync"
    )
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    postgres = compose["services"]["postgres"]["environment"]
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]) == (
        "audiencesync",
        "audiencesync",
        "audiencesync",
    )
    # Compose refuses to start without a key: processes must share one, and it must survive
    # restarts, so a generated per-container key (the default without it) would be wrong.
    assert env["AUDIENCESYNC_SECRET_KEY"].startswith("${AUDIENCESYNC_SECRET_KEY:?")
    assert "Fernet.generate_key()" in (ROOT / "docker-compose.yml").read_text()


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_app_command_is_a_real_audiencesync_command(
    services: dict[str, Any], name: str
) -> None:
    path, _ = resolve(command_of(services[name]))
    expected = ["db", "upgrade"] if name == "migrate" else [name]
    assert path == expected


def test_the_dockerfile_default_command_is_the_api() -> None:
    text = (ROOT / "Dockerfile").read_text()
    cmd = [line for line in text.splitlines() if line.startswith("CMD ")]
    assert len(cmd) == 1
    argv = yaml.safe_load(cmd[0].removeprefix("CMD "))  # the JSON (exec) form
    path, context = resolve(argv)
    assert path == ["api"]
    assert (context.params["host"], context.params["port"]) == ("0.0.0.0", 8000)
    assert re.search(r"^FROM python:3\.11-slim\s*$", text, re.MULTILINE)
    assert re.search(r"^USER (?!root\b)\S+", text, re.MULTILINE), "must not run as root"


def test_the_dockerfile_copies_every_package() -> None:
    """The image is built from explicit COPYs (no local data or caches in the build context):
    they must follow pyproject.toml's package list, or the image lacks a package."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = sorted(pattern.removesuffix("*") for pattern in patterns)
    text = (ROOT / "Dockerfile").read_text()
    copied = re.findall(r"^COPY (\S+) \./\1\s*$", text, re.MULTILINE)
    assert sorted(copied) == packages
    for package in packages:
        assert (ROOT / package / "__init__.py").is_file(), package
    readme = pyproject["project"]["readme"]
    assert re.search(rf"^COPY pyproject\.toml {re.escape(readme)} \./\s*$", text, re.MULTILINE)


def test_published_ports_match_the_commands(services: dict[str, Any]) -> None:
    _, api = resolve(command_of(services["api"]))
    assert api.params["host"] == "0.0.0.0"
    assert services["api"]["ports"] == [f"{api.params['port']}:{api.params['port']}"]
    assert f":{api.params['port']}/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    # Flower has no login: published on the host's loopback only, but it must listen on all of
    # its container's interfaces (the default 127.0.0.1 is unreachable from outside it).
    _, flower = resolve(command_of(services["flower"]))
    assert flower.params["host"] == "0.0.0.0"
    port = flower.params["port"]
    assert services["flower"]["ports"] == [f"127.0.0.1:{port}:{port}"]


def test_migrations_complete_before_the_app_starts(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert resolve(command_of(migrate))[0] == ["db", "upgrade"]
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert migrate.get("restart", "no") == "no", "a one-shot job must not be restarted"
    for name in LONG_RUNNING:
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert services[name].get("restart") in ("unless-stopped", "always"), name
    assert "healthcheck" in services["api"]


def test_every_dependency_is_a_defined_service(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = service["depends_on"][dependency]["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"


def test_procfile_runs_the_same_processes_as_compose(services: dict[str, Any]) -> None:
    processes = procfile()
    assert list(processes) == list(LONG_RUNNING)
    for name, command in processes.items():
        procfile_path, procfile_context = resolve(procfile_argv(command))
        compose_path, _ = resolve(command_of(services[name]))
        assert procfile_path == compose_path == [name]
        if name == "api":
            assert procfile_context.params["host"] == "0.0.0.0"
            assert "${PORT" in command, "the API must listen on the runner's PORT"

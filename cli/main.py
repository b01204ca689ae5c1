"""``audiencesync``: migrate, create workspaces, run the API, workers, beat, Flower, the demo."""

from __future__ import annotations

import json
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="Keep audiences in sync with marketing tools.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
workspaces_app = typer.Typer(no_args_is_help=True, help="Workspaces and their tokens.")
emulate_app = typer.Typer(no_args_is_help=True, help="Local emulators of destination services.")
app.add_typer(db_app, name="db")
app.add_typer(workspaces_app, name="workspaces")
app.add_typer(emulate_app, name="emulate")


def _prepare(with_broker: bool) -> None:
    """Logging, the schema, and the embedded broker when REDIS_URL is unset."""
    from shared.config import get_settings
    from shared.db.migrate import upgrade
    from shared.embedded import use_embedded_broker_if_needed
    from shared.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    if with_broker:
        broker = use_embedded_broker_if_needed(settings)
        if broker is not None:
            import atexit

            atexit.register(broker.stop)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations to DATABASE_URL (default: the SQLite file in the data directory)."""
    from shared.config import get_settings
    from shared.db.migrate import upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    typer.echo("database is up to date")


@workspaces_app.command("create")
def workspaces_create(name: str) -> None:
    """Create a workspace; prints its id and its API token (shown only this once) as JSON."""
    from shared.db.session import session_scope
    from shared.workspaces import create_workspace

    _prepare(with_broker=False)
    with session_scope() as session:
        workspace, token = create_workspace(session, name)
        workspace_id = workspace.id
    typer.echo(json.dumps({"workspace_id": workspace_id, "token": token}))


@app.command()
def api(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="API_WORKERS",
            help="API processes sharing the port. One process answers a few hundred events/s; "
            "more use more cores.",
        ),
    ] = 1,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    _prepare(with_broker=True)
    uvicorn.run("api.app:app", host=host, port=port, workers=workers, log_config=None)


@app.command()
def worker(concurrency: Annotated[int, typer.Option()] = 2) -> None:
    """Run a Celery worker that executes sync runs."""
    _prepare(with_broker=True)
    from worker.app import celery_app

    celery_app.worker_main(
        ["worker", f"--concurrency={concurrency}", "--loglevel=INFO", "-E", "-n", "audiencesync@%h"]
    )


@app.command()
def beat() -> None:
    """Run the scheduler (Celery beat): cron-scheduled syncs and housekeeping."""
    _prepare(with_broker=True)
    from worker.app import celery_app

    celery_app.start(["beat", "--loglevel=INFO"])


@app.command()
def flower(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 5555,
) -> None:
    """Run Flower, the live view of workers and tasks."""
    _prepare(with_broker=True)
    from worker.app import celery_app

    celery_app.start(["flower", f"--port={port}", f"--address={host}"])


@app.command()
def up(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    concurrency: Annotated[int, typer.Option()] = 2,
) -> None:
    """API + worker + beat together, on the embedded defaults unless configured otherwise."""
    from cli.processes import ProcessGroup

    _prepare(with_broker=True)
    commands = {
        "api": ["api", "--host", host, "--port", str(port)],
        "worker": ["worker", "--concurrency", str(concurrency)],
        "beat": ["beat"],
    }
    with ProcessGroup(commands) as group:
        typer.echo(f"audiencesync is up: API on http://{host}:{port} (docs at /docs); Ctrl-C stops")
        try:
            stopped = group.wait_any()
            typer.echo(f"{stopped} exited; stopping the others", err=True)
            raise typer.Exit(1)
        except KeyboardInterrupt:
            pass


@app.command()
def demo(
    users: Annotated[int, typer.Option(help="sample users to load")] = 120,
    rate: Annotated[float, typer.Option(help="the Resend emulator's requests per second")] = 20.0,
) -> None:
    """Run the whole sync path once, end to end, on the embedded defaults."""
    from cli.demo import run_demo

    _prepare(with_broker=True)
    run_demo(users=users, rate=rate)


@emulate_app.command("resend")
def emulate_resend(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8025,
    rate: Annotated[float, typer.Option(help="requests per second per API key")] = 2.0,
) -> None:
    """Serve the Resend emulator in the foreground."""
    from emulators.resend import serve

    serve(host=host, port=port, rate=rate)


if __name__ == "__main__":
    app()

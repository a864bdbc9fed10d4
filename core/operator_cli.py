"""Operator commands of ``distillery``: run the service (``up``, ``api``, ``worker``), ``migrate``, ``keys``.

They are registered into the user CLI (``client.cli``) through the ``distillery.commands`` entry
point, so a client-only install has just the user commands and a service install has both.
The API and the worker are started as their own processes by module name: this module imports
neither of them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import migrations
from core.key_commands import add_key_commands

API_METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def migrate() -> None:
    """Bring the database to the newest schema; the scripts ship inside the package (``migrations``)."""
    from alembic import command
    from alembic.config import Config

    from core.config import get_settings

    settings = get_settings()
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["url"] = settings.resolved_database_url
    command.upgrade(config, "head")


def api_command() -> list[str]:
    """uvicorn with ``DISTILLERY_API_PROCESSES`` worker processes sharing the port.

    One Python process spends its one interpreter lock on routing, database rows and JSON, so it
    serves one request at a time whatever the threads; several processes use every core. Each has
    its own API-key cache (``DISTILLERY_AUTH_CACHE_S``) and database threads.
    """
    from core.config import get_settings

    settings = get_settings()
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "api.main:app",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--workers",
        str(settings.resolved_api_processes),
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "5",
    ]


def api_metrics_dir() -> Path:
    """The folder for the API processes' Prometheus files (``PROMETHEUS_MULTIPROC_DIR``, else one per port under the data folder).

    prometheus_client's multiprocess mode needs the files of a previous run removed before the
    processes start, or that run's counts would be added to this one's.
    """
    from core.config import get_settings

    settings = get_settings()
    folder = Path(os.environ.get(API_METRICS_DIR_ENV) or settings.resolved_data_dir / "api-metrics" / str(settings.port))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    return folder


def worker_command(concurrency: int | None = None) -> list[str]:
    from core.config import get_settings

    count = concurrency or get_settings().worker_concurrency
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.tasks",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(count),
        "--max-tasks-per-child",
        "1",
        "-Q",
        "distillery",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def add_operator_commands(commands: argparse._SubParsersAction) -> None:
    commands.add_parser("up", help="migrate, then run the API and one worker together").set_defaults(operator_command=_up)
    commands.add_parser("api", help="run the HTTP API").set_defaults(operator_command=_api)
    worker = commands.add_parser("worker", help="run a worker")
    worker.add_argument("--concurrency", type=int)
    worker.set_defaults(operator_command=_worker)
    commands.add_parser("migrate", help="apply database migrations").set_defaults(operator_command=_migrate)
    add_key_commands(commands)


def _up(args: argparse.Namespace) -> int:
    migrate()
    from core.supervisor import supervise

    return supervise([sys.executable, "-m", "client.cli", "api"], [worker_command()])


def _api(args: argparse.Namespace) -> int:
    """Become the API (exec, so signals reach uvicorn directly), its metrics folder in its environment only."""
    command = api_command()
    os.execve(command[0], command, {**os.environ, API_METRICS_DIR_ENV: str(api_metrics_dir())})


def _worker(args: argparse.Namespace) -> int:
    migrate()
    return subprocess.call(worker_command(args.concurrency))


def _migrate(args: argparse.Namespace) -> int:
    migrate()
    print("database is at the latest schema", file=sys.stderr)
    return 0

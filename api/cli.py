"""The ``distillery`` command: run the service (``up``, ``api``, ``worker``), ``migrate``, ``keys create``."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from api.cli_client import add_client_commands, run_client_command

ROOT = Path(__file__).resolve().parent.parent


def migrate() -> None:
    from alembic import command
    from alembic.config import Config

    from api.core.config import get_settings

    settings = get_settings()
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["url"] = settings.resolved_database_url
    command.upgrade(config, "head")


def api_command() -> list[str]:
    from api.core.config import get_settings

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
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "5",
    ]


def worker_command(concurrency: int | None = None) -> list[str]:
    from api.core.config import get_settings

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


def _run_together(commands: list[list[str]]) -> int:
    """Start the processes, stop all of them when one ends or on Ctrl-C/SIGTERM."""
    processes = [subprocess.Popen(cmd, cwd=ROOT) for cmd in commands]

    def stop(*_: object) -> None:
        for process in processes:
            if process.poll() is None:
                process.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
    finally:
        stop()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
    return max((p.returncode or 0) for p in processes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="distillery", description="Distillery: distillation as a service")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="migrate, then run the API and one worker together")
    commands.add_parser("api", help="run the HTTP API")
    worker = commands.add_parser("worker", help="run a worker")
    worker.add_argument("--concurrency", type=int)
    commands.add_parser("migrate", help="apply database migrations")
    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key for a tenant (printed once)")
    create.add_argument("--tenant", required=True)
    add_client_commands(commands)
    args = parser.parse_args(argv)
    if getattr(args, "client_command", None):
        return run_client_command(args)

    os.chdir(ROOT) if not os.environ.get("DISTILLERY_DATA_DIR") else None
    if args.command == "migrate":
        migrate()
        print("database is at the latest schema", file=sys.stderr)
        return 0
    if args.command == "keys":
        from api.auth import create_key
        from api.db import session_scope

        migrate()
        with session_scope() as session:
            key = create_key(session, args.tenant)
        print(key)
        return 0
    if args.command == "up":
        migrate()
        return _run_together([api_command(), worker_command()])
    if args.command == "api":
        return subprocess.call(api_command(), cwd=ROOT)
    migrate()
    return subprocess.call(worker_command(args.concurrency), cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())

"""Worker logging: Celery hands logging setup to :func:`core.logging_config.configure_logging`, and every
record written while a job's task runs (runner, callbacks, kdcore) carries that job's ID."""

from __future__ import annotations

from contextvars import Token

from celery.signals import setup_logging, task_postrun, task_prerun

from core.logging_config import configure_logging, job_id_var

_tokens: dict[str, Token[str | None]] = {}


@setup_logging.connect
def _configure(loglevel: str | int | None = None, **_: object) -> None:
    """Connecting here stops Celery from installing its own handlers (and from redirecting stdout)."""
    configure_logging("worker")


@task_prerun.connect
def _bind_job(task_id: str, args: tuple = (), **_: object) -> None:
    if args and isinstance(args[0], str) and args[0].startswith("job_"):
        _tokens[task_id] = job_id_var.set(args[0])


@task_postrun.connect
def _unbind_job(task_id: str, **_: object) -> None:
    token = _tokens.pop(task_id, None)
    if token is not None:
        job_id_var.reset(token)

"""One logging setup for the API and the worker: JSON lines (``DISTILLERY_LOG_FORMAT=json``) or text.

Every record carries the job it concerns when there is one — from ``extra={"job_id": …}``, or
from :data:`job_id_var`, which the worker binds for the whole of a task — so a log pipeline can
follow one job across the API, the worker and kdcore without parsing messages.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

job_id_var: ContextVar[str | None] = ContextVar("distillery_job_id", default=None)
EXTRA_FIELDS = ("method", "path", "route", "status", "duration_ms", "tenant", "attempt")


class JobIdFilter(logging.Filter):
    """Give every record a ``job_id`` attribute (possibly None) so both formats can print it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "service": self.service,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id:
            entry["job_id"] = job_id
        entry.update({key: getattr(record, key) for key in EXTRA_FIELDS if hasattr(record, key)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        job_id = getattr(record, "job_id", None)
        return f"{text} [{job_id}]" if job_id else text


def configure_logging(service: str, log_format: str | None = None, level: str | None = None) -> None:
    """Route every logger (ours, uvicorn's, celery's, kdcore's) through one stderr handler in the chosen format."""
    from core.config import get_settings

    settings = get_settings()
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(JobIdFilter())
    handler.setFormatter(JsonFormatter(service) if (log_format or settings.log_format) == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel((level or settings.log_level).upper())
    for name in ("uvicorn", "uvicorn.error", "celery"):  # uvicorn.access stays as uvicorn set it: our access log replaces it
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True

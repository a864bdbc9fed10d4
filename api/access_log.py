"""One access-log record per request, through the shared logging setup (``core.logging_config``)."""

from __future__ import annotations

import logging

from starlette.types import Scope

from api.response_observer import route_template

QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
access_log = logging.getLogger("distillery.api.access")


def log_access(scope: Scope, status: int, seconds: float) -> None:
    """``ResponseObserver`` hook: one record per request, with the route template, status, duration and the job ID when the path has one."""
    path = scope["path"]
    duration_ms = round(seconds * 1000, 2)
    job_id = scope.get("path_params", {}).get("job_id")
    access_log.log(
        logging.DEBUG if path in QUIET_PATHS else logging.INFO,
        "%s %s %d %.1fms",
        scope["method"],
        path,
        status,
        duration_ms,
        extra={"method": scope["method"], "path": path, "route": route_template(scope), "status": status, "duration_ms": duration_ms, "job_id": job_id},
    )

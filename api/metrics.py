"""Prometheus ``/metrics``: request counts and latencies, jobs by status, queue depth, heartbeats and throughput of running jobs."""

from __future__ import annotations

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from starlette.types import Scope

from api.response_observer import route_template

REGISTRY = CollectorRegistry()
REQUESTS = Counter("distillery_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram(
    "distillery_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
JOBS = Gauge("distillery_jobs", "Jobs by status", ["status"], registry=REGISTRY)
QUEUE = Gauge("distillery_queue_depth", "Messages waiting in the broker's job queue", registry=REGISTRY)
HEARTBEAT_AGE = Gauge(
    "distillery_worker_heartbeat_age_seconds", "Seconds since the worker running a job last wrote its heartbeat", ["worker", "job_id"], registry=REGISTRY
)
SAMPLES = Gauge(
    "distillery_training_samples_per_second", "Training samples per second of a running job over its last two minutes", ["job_id"], registry=REGISTRY
)


def _refresh_gauges() -> None:
    from core.celery_app import queue_depth
    from core.db import get_sessionmaker
    from core.models import JobRow
    from core.worker_activity import running_jobs

    with get_sessionmaker()() as session:
        counts = dict(session.execute(select(JobRow.status, func.count()).group_by(JobRow.status)).all())
        running = running_jobs(session)
    HEARTBEAT_AGE.clear()
    SAMPLES.clear()
    for job in running:
        if job.heartbeat_age_s is not None:
            HEARTBEAT_AGE.labels(job.worker, job.job_id).set(job.heartbeat_age_s)
        if job.samples_per_second is not None:
            SAMPLES.labels(job.job_id).set(job.samples_per_second)
    for status in ("queued", "running", "succeeded", "failed", "cancelled"):
        JOBS.labels(status).set(counts.get(status, 0))
    depth = queue_depth()
    if depth is not None:
        QUEUE.set(depth)


def record_request(scope: Scope, status: int, seconds: float) -> None:
    """``ResponseObserver`` hook: latency and count per method, route template and status."""
    route = route_template(scope)
    LATENCY.labels(scope["method"], route).observe(seconds)
    REQUESTS.labels(scope["method"], route, str(status)).inc()


def install_metrics(app: FastAPI) -> None:
    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        _refresh_gauges()
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

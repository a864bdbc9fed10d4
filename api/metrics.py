"""Prometheus ``/metrics``: request counts and latencies, jobs by status, queue depth, heartbeats and throughput of running jobs.

``distillery api`` runs several API processes (``DISTILLERY_API_PROCESSES``) and sets
``PROMETHEUS_MULTIPROC_DIR``: each process then keeps its request counters and histograms in files
there, and whichever process answers a scrape sums every process's files (prometheus_client's
multiprocess mode), so the counts are the service's, not one process's. The job gauges are not
per-process state at all: they are read from the database when scraped, so every process answers
with the same current values. Without ``PROMETHEUS_MULTIPROC_DIR`` (one process, in-process tests)
the same metrics come from this process's registry.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import get_args

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import Scope

from api.response_observer import route_template
from client.models import JobStatus

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
REGISTRY = CollectorRegistry()
REQUESTS = Counter("distillery_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram(
    "distillery_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class JobStateCollector(Collector):
    """Gauges read from the database at scrape time, the same whichever API process answers."""

    def collect(self) -> Iterator[Metric]:
        from core.celery_app import queue_depth
        from core.db import get_sessionmaker
        from core.models import JobRow
        from core.worker_activity import running_jobs

        with get_sessionmaker()() as session:
            counts = dict(session.execute(select(JobRow.status, func.count()).group_by(JobRow.status)).all())
            running = running_jobs(session)
        jobs = GaugeMetricFamily("distillery_jobs", "Jobs by status", labels=["status"])
        for status in get_args(JobStatus):
            jobs.add_metric([status], counts.get(status, 0))
        heartbeat_age = GaugeMetricFamily(
            "distillery_worker_heartbeat_age_seconds", "Seconds since the worker running a job last wrote its heartbeat", labels=["worker", "job_id"]
        )
        samples = GaugeMetricFamily(
            "distillery_training_samples_per_second", "Training samples per second of a running job over its last two minutes", labels=["job_id"]
        )
        for job in running:
            if job.heartbeat_age_s is not None:
                heartbeat_age.add_metric([job.worker, job.job_id], job.heartbeat_age_s)
            if job.samples_per_second is not None:
                samples.add_metric([job.job_id], job.samples_per_second)
        yield from (jobs, heartbeat_age, samples)
        depth = queue_depth()
        if depth is not None:
            yield GaugeMetricFamily("distillery_queue_depth", "Messages waiting in the broker's job queue", value=depth)


REGISTRY.register(JobStateCollector())


def scrape_registry() -> CollectorRegistry:
    """Every API process's request metrics plus the job gauges in multiprocess mode; this process's registry otherwise."""
    if not os.environ.get(MULTIPROCESS_DIR_ENV):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(JobStateCollector())
    return registry


def record_request(scope: Scope, status: int, seconds: float) -> None:
    """``ResponseObserver`` hook: latency and count per method, route template and status."""
    route = route_template(scope)
    LATENCY.labels(scope["method"], route).observe(seconds)
    REQUESTS.labels(scope["method"], route, str(status)).inc()


def install_metrics(app: FastAPI) -> None:
    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(scrape_registry()), media_type=CONTENT_TYPE_LATEST)

"""Several API processes behind one port still serve one correct ``/metrics``.

``distillery api`` starts ``DISTILLERY_API_PROCESSES`` uvicorn processes; each counts the requests
it serves in its own file (Prometheus multiprocess mode) and any of them answers a scrape with the
sum. Requests go out over fresh connections until both processes have served some, so the counts
really come from two processes.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from service import wait_until

from e2e.conftest import start_service, stop_service

pytestmark = [pytest.mark.e2e]
PROCESSES = 2
HEALTHZ_OK = r'distillery_http_requests_total\{method="GET",route="/healthz",status="200"\}'


def _sample(text: str, pattern: str) -> float:
    found = re.search(rf"^{pattern} (\S+)$", text, re.M)
    assert found, f"no {pattern} in /metrics:\n{text}"
    return float(found.group(1))


def test_counts_from_every_api_process_add_up_and_start_from_zero_after_a_restart(tmp_path):
    service = start_service("embedded", tmp_path, workers=0, DISTILLERY_API_PROCESSES=str(PROCESSES))
    try:
        metrics_dir = Path(service.env["DISTILLERY_DATA_DIR"]) / "api-metrics" / str(service.port)
        sent = 0

        def every_process_served() -> bool:
            nonlocal sent
            for _ in range(10):
                assert httpx.get(service.url + "/healthz", timeout=10).status_code == 200
                sent += 1
            return len(list(metrics_dir.glob("counter_*.db"))) == PROCESSES

        wait_until(every_process_served, 120, 0, what=f"{PROCESSES} API processes to serve /healthz")
        with service.client() as client:
            job = client.post(
                "/v1/jobs", json={"method": "supervised", "student": {"arch": "cifar_resnet8"}, "dataset": "builtin:digits", "training": {"epochs": 1}}
            )
            assert job.status_code == 201, job.text
        for _ in range(4):  # whichever process answers a scrape, the sums are the same
            text = httpx.get(service.url + "/metrics", timeout=30).text
            assert _sample(text, HEALTHZ_OK) == sent
            assert _sample(text, r'distillery_http_request_seconds_count\{method="GET",route="/healthz"\}') == sent
            assert _sample(text, r'distillery_http_requests_total\{method="POST",route="/v1/jobs",status="201"\}') == 1
            assert _sample(text, r'distillery_jobs\{status="queued"\}') == 1

        service.stop()
        service.start_api()
        assert httpx.get(service.url + "/healthz", timeout=10).status_code == 200
        assert _sample(httpx.get(service.url + "/metrics", timeout=30).text, HEALTHZ_OK) == 1  # the last run's files were removed at start
    finally:
        stop_service(service)

"""Limits on requests against a running API: the per-tenant rate limit, the JSON body cap, and an idle-connection timeout.

One API process (``DISTILLERY_API_PROCESSES=1``: each process keeps its own buckets) allowing 5
requests a second in bursts of 5. The keep-alive timeout is set the documented way, through
uvicorn's own environment variable, to show that ``distillery api`` honours it.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from service import Service

from e2e.conftest import running_service
from e2e.test_faults import tiny_job

pytestmark = [pytest.mark.e2e]
RATE, BURST, BODY_CAP = 5, 5, 65536
LIMITS = {
    "DISTILLERY_API_PROCESSES": "1",
    "DISTILLERY_RATE_LIMIT_RPS": str(RATE),
    "DISTILLERY_RATE_LIMIT_BURST": str(BURST),
    "DISTILLERY_MAX_JSON_BODY_BYTES": str(BODY_CAP),
    "UVICORN_TIMEOUT_KEEP_ALIVE": "1",
}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    with running_service("embedded", tmp_path_factory.mktemp("limits"), workers=0, **LIMITS) as service:
        yield service


def test_ten_times_the_rate_is_refused_and_another_tenant_is_not(deployment: Service):
    noisy, quiet = deployment.client(), deployment.client(deployment.cli("keys", "create", "--tenant", "quiet"))
    time.sleep(1.0)  # the quiet key's creation is not counted; let any earlier bucket refill
    sent, started = 10 * RATE, time.monotonic()
    answers = [noisy.get("/v1/jobs", params={"limit": 1}) for _ in range(sent)]
    quiet_answers = [quiet.get("/v1/jobs", params={"limit": 1}) for _ in range(BURST - 1)]
    elapsed = time.monotonic() - started
    refused = [a for a in answers if a.status_code == 429]
    allowed = len(answers) - len(refused)
    assert all(a.status_code in (200, 429) for a in answers), {a.status_code for a in answers}
    assert allowed <= BURST + RATE * elapsed + 1, (allowed, elapsed)
    assert len(refused) >= sent - BURST - RATE * elapsed - 1, (len(refused), elapsed)
    for answer in refused:
        assert int(answer.headers["Retry-After"]) >= 1 and "requests a second" in answer.json()["detail"], answer.text
    assert [a.status_code for a in quiet_answers] == [200] * (BURST - 1)
    time.sleep(int(refused[-1].headers["Retry-After"]))
    assert noisy.get("/v1/jobs", params={"limit": 1}).status_code == 200
    print(f"\n{sent} requests in {elapsed:.2f} s: {allowed} answered, {len(refused)} refused with 429")
    noisy.close()
    quiet.close()


def test_a_json_body_over_the_cap_is_refused_declared_or_streamed(deployment: Service):
    time.sleep(BURST / RATE)
    body = json.dumps({**tiny_job(), "hyperparams": {"padding": "x" * (2 * BODY_CAP)}}).encode()
    with deployment.client() as client:
        declared = client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
        streamed = client.post("/v1/jobs", content=(body[i : i + 8192] for i in range(0, len(body), 8192)), headers={"Content-Type": "application/json"})
        small = client.post("/v1/jobs", json={**tiny_job(), "hyperparams": {"padding": "x"}})
    for answer in (declared, streamed):
        assert answer.status_code == 413, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json") and "DISTILLERY_MAX_JSON_BODY_BYTES" in answer.json()["detail"]
    assert small.status_code == 422 and "padding" in small.text, small.text  # read and judged as usual


def test_an_idle_keep_alive_connection_is_closed(deployment: Service):
    with socket.create_connection(("127.0.0.1", deployment.port), timeout=10) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = b""
        while not response.endswith(b"}"):  # headers and body may come in separate packets
            chunk = connection.recv(4096)
            assert chunk, f"the server closed the connection before the whole response: {response!r}"
            response += chunk
        assert response.startswith(b"HTTP/1.1 200") and response.endswith(b'{"status":"ok"}'), response
        time.sleep(2.5)
        assert connection.recv(4096) == b"", "the server kept an idle connection past UVICORN_TIMEOUT_KEEP_ALIVE=1"

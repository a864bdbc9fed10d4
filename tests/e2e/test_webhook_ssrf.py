"""Webhooks never reach inside the network: refused at submit (422 naming the rule), and checked again at delivery.

The deployment's API and worker allow no network. A second API process on the same database allows
127.0.0.1/32: it stands for the moment a rebinding name still resolved to a public address, so a
job whose webhook leads to loopback gets in, and the worker must refuse it when it delivers. Every
check runs before a connection: the only listener is a receiver on 127.0.0.1, and it must hear
nothing; names come from the hosts file (``localhost``), so no DNS query leaves the machine.
A deployment of its own, allowing 127.0.0.1/32 throughout, shows that a receiver's redirect is
never followed, even to an address the guard would have let through.
"""

from __future__ import annotations

import socket

import pytest
from service import Service, free_port, wait_until
from webhook_receiver import Receiver

from e2e.conftest import running_service, start_service, stop_service
from e2e.test_faults import tiny_job

pytestmark = [pytest.mark.e2e]
ALLOW = "DISTILLERY_WEBHOOK_ALLOW_NETWORKS"


@pytest.fixture(scope="module")
def receiver() -> Receiver:
    return Receiver({})


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssrf")
    service = start_service("embedded", root, workers=1, DISTILLERY_WEBHOOK_SECRET="ssrf-test-secret", DISTILLERY_WEBHOOK_MAX_ATTEMPTS="3")
    (root / "lenient-logs").mkdir()
    port = free_port()
    lenient = Service(env={**service.env, "DISTILLERY_PORT": str(port), ALLOW: '["127.0.0.1/32"]'}, log_dir=root / "lenient-logs", port=port)
    lenient.key = service.key
    lenient.start_api()
    yield service, lenient
    lenient.stop()
    stop_service(service)


def _port(receiver: Receiver) -> int:
    return int(receiver.url.rsplit(":", 1)[1])


CASES = [
    ("http://127.0.0.1:{port}/hook", "loopback"),
    ("http://localhost:{port}/hook", "loopback"),
    ("http://2130706433:{port}/hook", "loopback"),
    ("http://[::1]:{port}/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]:{port}/hook", "loopback"),
    ("http://0.0.0.0:{port}/hook", "unspecified"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://10.0.0.7/hook", "private"),
    ("http://192.168.1.1/hook", "private"),
    ("http://[fc00::1]/hook", "private"),
    ("http://224.0.0.1/hook", "multicast"),
    ("http://240.0.0.1/hook", "reserved"),
    ("http://100.64.0.1/hook", "not globally routable"),
]


@pytest.mark.parametrize(("url", "rule"), CASES)
def test_submit_refuses_a_webhook_inside_the_network(deployment, receiver, url, rule):
    strict, _ = deployment
    with strict.client() as client:
        response = client.post("/v1/jobs", json={**tiny_job(), "webhook_url": url.format(port=_port(receiver))})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert f"refused ({rule})" in detail and "DISTILLERY_WEBHOOK_ALLOW_NETWORKS" in detail, detail
    assert receiver.requests == []


def test_an_allowed_range_is_accepted_and_nothing_beside_it(deployment, receiver):
    _, lenient = deployment
    with lenient.client() as client:
        outside = client.post("/v1/jobs", json={**tiny_job(), "webhook_url": f"http://127.0.0.2:{_port(receiver)}/hook"})
        assert outside.status_code == 422 and "refused (loopback)" in outside.json()["detail"], outside.text
        inside = client.post("/v1/jobs", json={**tiny_job(), "webhook_url": f"{receiver.url}/allowed"})
        assert inside.status_code == 201, inside.text
        assert client.post(f"/v1/jobs/{inside.json()['id']}/cancel").status_code == 202


def test_delivery_checks_the_address_again_and_never_connects(deployment, receiver):
    strict, lenient = deployment
    with lenient.client() as client:
        job = client.post("/v1/jobs", json={**tiny_job(), "webhook_url": f"{receiver.url}/rebound"}).json()
        assert client.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    with strict.client() as client:
        [delivery] = wait_until(lambda: [d for d in client.get(f"/v1/jobs/{job['id']}/webhooks").json()["items"] if d["status"] != "pending"], 60)
    assert delivery["status"] == "failed" and delivery["attempts"] == 1, delivery
    assert delivery["last_error"].startswith("refused before connecting (loopback)"), delivery
    assert receiver.received("/rebound") == []


def test_a_redirect_is_never_followed_and_counts_as_a_failed_attempt(tmp_path):
    """A 3xx could send the delivery to an address nobody checked: the worker records it as the attempt's
    answer and retries the URL it was given, and the Location's address never gets a connection."""
    with socket.create_server(("127.0.0.1", 0)) as target:  # inside the allowed range, so only not following keeps it silent
        target.setblocking(False)
        redirecting = Receiver({"/moved": [302, 307]}, redirects={"/moved": f"http://127.0.0.1:{target.getsockname()[1]}/elsewhere"})
        settings = {ALLOW: '["127.0.0.1/32"]', "DISTILLERY_WEBHOOK_BACKOFF_S": "3", "DISTILLERY_WEBHOOK_POLL_INTERVAL_S": "0.2"}
        with (
            running_service(
                "embedded", tmp_path, workers=1, DISTILLERY_WEBHOOK_SECRET="ssrf-test-secret", DISTILLERY_WEBHOOK_MAX_ATTEMPTS="2", **settings
            ) as service,
            service.client() as client,
        ):
            job = client.post("/v1/jobs", json={**tiny_job(), "webhook_url": f"{redirecting.url}/moved"}).json()
            assert client.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"

            def deliveries() -> list[dict]:
                return client.get(f"/v1/jobs/{job['id']}/webhooks").json()["items"]

            [first] = wait_until(lambda: [d for d in deliveries() if d["last_status_code"] is not None], 60, what="the first attempt")
            assert (first["status"], first["attempts"], first["last_status_code"]) == ("pending", 1, 302), first
            [last] = wait_until(lambda: [d for d in deliveries() if d["status"] != "pending"], 60, what="the second attempt")
        assert (last["status"], last["attempts"], last["last_status_code"]) == ("failed", 2, 307), last
        assert last["last_error"].startswith("the receiver answered HTTP 307"), last
        assert [r["path"] for r in redirecting.requests] == ["/moved", "/moved"]
        with pytest.raises(BlockingIOError):
            target.accept()  # nothing waits in the listen queue: no connection, of any method, reached the Location

"""Webhooks never reach inside the network: refused at submit (422 naming the rule), and checked again at delivery.

The deployment's API and worker allow no network. A second API process on the same database allows
127.0.0.1/32: it stands for the moment a rebinding name still resolved to a public address, so a
job whose webhook leads to loopback gets in, and the worker must refuse it when it delivers. Every
check runs before a connection: the only listener is a receiver on 127.0.0.1, and it must hear
nothing; names come from the hosts file (``localhost``), so no DNS query leaves the machine.
"""

from __future__ import annotations

import pytest
from service import Service, free_port, wait_until
from webhook_receiver import Receiver

from e2e.conftest import start_service, stop_service
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

"""API keys end to end: ``distillery keys create --expires-in | list | revoke`` against a running API.

A revoked or expired key is refused (401 saying which) by every API process no later than
``DISTILLERY_AUTH_CACHE_S`` after the revocation or the expiry, though every process had the key
cached: a thread sends requests all along, and each answer is judged by when it was sent against the
times the database recorded.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from service import Service
from sqlalchemy import create_engine, text

from e2e.conftest import start_service, stop_service
from e2e.test_faults import database_url

pytestmark = [pytest.mark.e2e]
CACHE_S = 3.0
CLOCK_SLACK_S = 0.3  # a request's send time vs. the database's stamp: same clock, a little scheduling between


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    service = start_service("embedded", tmp_path_factory.mktemp("keys"), workers=0, DISTILLERY_AUTH_CACHE_S=str(CACHE_S))
    yield service
    stop_service(service)


def _key_times(service: Service, key_id: str) -> tuple[datetime | None, datetime | None]:
    engine = create_engine(database_url(service))
    try:
        with engine.connect() as connection:
            revoked, expires = connection.execute(text("SELECT revoked_at, expires_at FROM api_keys WHERE id = :id"), {"id": key_id}).one()
    finally:
        engine.dispose()

    def moment(value) -> datetime | None:
        value = datetime.fromisoformat(value) if isinstance(value, str) else value
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    return moment(revoked), moment(expires)


def _key_id(service: Service, tenant: str) -> str:
    header, *rows = service.cli("keys", "list", "--tenant", tenant).splitlines()
    assert header.split()[:3] == ["ID", "TENANT", "PREFIX"] and len(rows) == 1, rows
    return rows[0].split()[0]


class Prober(threading.Thread):
    """GET /v1/jobs with one key, 20 times a second; records (wall-clock send time, status, detail)."""

    def __init__(self, service: Service, key: str) -> None:
        super().__init__(daemon=True)
        self.client = service.client(key)
        self.answers: list[tuple[float, int, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            sent = time.time()
            response = self.client.get("/v1/jobs", params={"limit": 1})
            self.answers.append((sent, response.status_code, response.json().get("detail", "") if response.status_code != 200 else ""))

    def finish(self) -> list[tuple[float, int, str]]:
        self.stop.set()
        self.join(timeout=10)
        self.client.close()
        return self.answers


def _judge(answers: list[tuple[float, int, str]], ended_at: datetime, word: str) -> None:
    """Nothing is refused before the key ended; everything sent CACHE_S after it is refused, saying ``word``."""
    end = ended_at.timestamp()
    before = [a for a in answers if a[0] < end - CLOCK_SLACK_S]
    after = [a for a in answers if a[0] > end + CACHE_S + CLOCK_SLACK_S]
    assert before and all(status == 200 for _, status, _ in before), before[-5:]
    assert len(after) >= 10, "too few requests after the bound to judge it"
    assert all(status == 401 and word in detail for _, status, detail in after), after[:5]
    first_refusal = min(sent for sent, status, _ in answers if status == 401)
    print(f"\nfirst {word} refusal {first_refusal - end:+.2f} s after the key ended (bound {CACHE_S} s)")


def test_a_revoked_key_is_refused_within_the_cache_time(deployment: Service):
    key = deployment.cli("keys", "create", "--tenant", "revoked-soon")
    key_id = _key_id(deployment, "revoked-soon")
    prober = Prober(deployment, key)
    prober.start()
    time.sleep(1.0)  # every API process answers (and caches) the key before it is revoked
    deployment.cli("keys", "revoke", key_id)
    revoked_at, _ = _key_times(deployment, key_id)
    time.sleep(CACHE_S + 2.0)
    answers = prober.finish()
    _judge(answers, revoked_at, "revoked")
    listing = deployment.cli("keys", "list", "--tenant", "revoked-soon")
    assert listing.splitlines()[1].split()[-1] == "revoked" and key not in listing


def test_an_expired_key_is_refused_from_its_expiry(deployment: Service):
    key = deployment.cli("keys", "create", "--tenant", "expires-soon", "--expires-in", str(12 / 86400))
    key_id = _key_id(deployment, "expires-soon")
    _, expires_at = _key_times(deployment, key_id)
    prober = Prober(deployment, key)
    prober.start()
    time.sleep(max(0.0, expires_at.timestamp() - time.time()) + CACHE_S + 2.0)
    answers = prober.finish()
    _judge(answers, expires_at, "expired")
    assert deployment.cli("keys", "list", "--tenant", "expires-soon").splitlines()[1].split()[-1] == "expired"


def test_unknown_keys_and_ids(deployment: Service):
    with deployment.client("dk_not-a-key") as client:
        response = client.get("/v1/jobs")
    assert response.status_code == 401 and "unknown" in response.json()["detail"]
    with pytest.raises(RuntimeError, match="no API key has the ID"):
        deployment.cli("keys", "revoke", "key_missing")

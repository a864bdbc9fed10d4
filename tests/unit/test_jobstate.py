"""Job status changes on a real database (SQLite and PostgreSQL): conditional, single-winner, terminal for good."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from backends import postgres_database
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine
from core.ids import new_id
from core.jobstate import heartbeat, reopen_failed, transition
from core.models import ArtifactRow, Base, JobEvent, JobRow, Tenant, WebhookDelivery


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url_context = None
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        url_context = postgres_database()
        url = url_context.__enter__()
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()
    if url_context is not None:
        url_context.__exit__(None, None, None)


@pytest.fixture
def sessions(engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _job(sessions: sessionmaker[Session], status: str = "queued", worker: str | None = None) -> str:
    with sessions() as session:
        tenant = session.scalar(select(Tenant.id))
        if tenant is None:
            tenant = new_id("ten")
            session.add(Tenant(id=tenant, name=tenant))
            session.flush()
        job = JobRow(id=new_id("job"), tenant_id=tenant, method="kd", status=status, spec={}, progress={}, metrics={}, worker=worker)
        session.add(job)
        session.commit()
        return job.id


def _statuses(sessions: sessionmaker[Session], job_id: str) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(JobEvent.name).where(JobEvent.job_id == job_id, JobEvent.kind == "status").order_by(JobEvent.seq)))


def test_a_transition_happens_once_from_the_expected_state(sessions):
    job_id = _job(sessions)
    with sessions() as session:
        assert transition(session, job_id, {"queued"}, "running", worker="w1", attempts=JobRow.attempts + 1)
        assert not transition(session, job_id, {"queued"}, "running", worker="w2", attempts=JobRow.attempts + 1)
        job = session.get(JobRow, job_id)
        session.refresh(job)
        assert (job.status, job.worker, job.attempts) == ("running", "w1", 1)
    assert _statuses(sessions, job_id) == ["running"]


def test_terminal_states_never_change(sessions):
    job_id = _job(sessions, "running", "w1")
    with sessions() as session:
        assert transition(session, job_id, {"running"}, "succeeded", where={"worker": "w1"})
        assert not transition(session, job_id, {"running", "queued"}, "failed", error_code="worker_lost")
        with pytest.raises(ValueError, match="terminal states never change"):
            transition(session, job_id, {"succeeded"}, "failed")
        job = session.get(JobRow, job_id)
        session.refresh(job)
        assert job.status == "succeeded" and job.error_code is None and job.finished_at is not None
    assert _statuses(sessions, job_id) == ["succeeded"]


def test_a_refused_transition_discards_what_the_caller_staged(sessions):
    """A worker that lost its job must not publish artifacts along with its (refused) success."""
    job_id = _job(sessions, "running", "w-new")
    with sessions() as session:
        tenant = session.get(JobRow, job_id).tenant_id
        session.add(
            ArtifactRow(id=new_id("art"), job_id=job_id, tenant_id=tenant, kind="report", filename="r.html", size_bytes=1, sha256="0" * 64, storage_key="k")
        )
        session.flush()
        assert not transition(session, job_id, {"running"}, "succeeded", where={"worker": "w-old"})
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(ArtifactRow)) == 0
        assert session.get(JobRow, job_id).status == "running"


def test_heartbeat_only_counts_for_the_worker_that_runs_the_job(sessions):
    job_id = _job(sessions, "running", "w1")
    with sessions() as session:
        assert heartbeat(session, job_id, "w1")
        assert not heartbeat(session, job_id, "w2")
        assert transition(session, job_id, {"running"}, "queued", where={"worker": "w1"}, worker=None)
        assert not heartbeat(session, job_id, "w1")


def test_racing_claims_have_exactly_one_winner(sessions):
    """Eight workers claim the same queued job at the same instant (a re-delivered message, a re-send by the sweep)."""
    for _ in range(3):
        job_id = _job(sessions)
        barrier, wins = threading.Barrier(8), []

        def claim(worker: str, job_id: str = job_id, barrier: threading.Barrier = barrier, wins: list = wins) -> None:
            with sessions() as session:
                barrier.wait()
                if transition(session, job_id, {"queued"}, "running", worker=worker, attempts=JobRow.attempts + 1):
                    wins.append(worker)

        threads = [threading.Thread(target=claim, args=(f"w{n}",)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(wins) == 1, wins
        with sessions() as session:
            job = session.get(JobRow, job_id)
            assert (job.worker, job.attempts) == (wins[0], 1)
        assert _statuses(sessions, job_id) == ["running"]


def test_a_pausing_job_keeps_its_worker_and_phase_until_paused(sessions):
    job_id = _job(sessions, "running", "w1")
    with sessions() as session:
        session.execute(JobRow.__table__.update().where(JobRow.id == job_id).values(phase="training"))
        session.commit()
        assert transition(session, job_id, {"running"}, "pausing")
        assert heartbeat(session, job_id, "w1")
        job = session.get(JobRow, job_id)
        session.refresh(job)
        assert (job.status, job.worker, job.phase) == ("pausing", "w1", "training")
        assert transition(session, job_id, {"pausing"}, "paused", where={"worker": "w1"}, worker=None)
        session.refresh(job)
        assert (job.status, job.worker, job.phase, job.finished_at) == ("paused", None, None, None)
        assert not heartbeat(session, job_id, "w1")
        assert transition(session, job_id, {"paused"}, "queued")
    assert _statuses(sessions, job_id) == ["pausing", "paused", "queued"]


def test_only_a_failed_job_reopens_and_it_drops_its_failure_notice(sessions):
    job_id = _job(sessions, "running", "w1")
    with sessions() as session:
        session.execute(JobRow.__table__.update().where(JobRow.id == job_id).values(spec={"webhook_url": "https://example.com/hook"}))
        session.commit()
        assert not reopen_failed(session, job_id)
        assert transition(session, job_id, {"running"}, "failed", where={"worker": "w1"}, error_code="nan_loss", error_message="NaN")
        assert session.scalar(select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.job_id == job_id)) == 1
        assert reopen_failed(session, job_id, max_attempts=JobRow.attempts + 3)
        job = session.get(JobRow, job_id)
        session.refresh(job)
        assert (job.status, job.error_code, job.error_message, job.finished_at, job.worker) == ("queued", None, None, None, None)
        assert session.scalar(select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.job_id == job_id)) == 0
        assert not reopen_failed(session, job_id)
        assert transition(session, job_id, {"queued"}, "running", worker="w2")
        assert transition(session, job_id, {"running"}, "failed", where={"worker": "w2"}, error_code="nan_loss", error_message="NaN again")
        assert session.scalar(select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.job_id == job_id)) == 1
    assert _statuses(sessions, job_id) == ["failed", "queued", "running", "failed"]
    succeeded = _job(sessions, "running", "w1")
    with sessions() as session:
        assert transition(session, succeeded, {"running"}, "succeeded", where={"worker": "w1"})
        assert not reopen_failed(session, succeeded)
        assert session.get(JobRow, succeeded).status == "succeeded"

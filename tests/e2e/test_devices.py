"""One job on two CPU ranks (``training.devices: 2``, gloo) through the real API and worker.

A rank SIGKILLed mid-job takes every rank with it, the attempt ends and the job resumes from its
checkpoint to ``succeeded``; a cancel ends every rank within seconds; ``training.nodes`` > 1 without
a Ray cluster is refused with the way to enable it.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from scale_jobs import assert_cancel_ends_every_rank, kd_body, upload_teacher, wait_for_ranks, wait_for_step, wait_for_success, wait_until_gone

from e2e.conftest import start_service, stop_service

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
GONE_WITHIN_S = 10.0


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    service = start_service("embedded", tmp_path_factory.mktemp("devices"))
    yield service
    stop_service(service)


@pytest.fixture(scope="module")
def teacher(embedded, tmp_path_factory):
    return upload_teacher(embedded.client(), tmp_path_factory.mktemp("teacher"))


def test_a_killed_rank_ends_the_attempt_and_the_job_resumes_to_succeeded(embedded, teacher):
    client = embedded.client()
    job = client.post("/v1/jobs", json=kd_body(teacher, devices=2)).json()
    pids = wait_for_ranks(embedded, job["id"], 2)
    wait_for_step(client, job["id"], 4)
    os.kill(pids[1], signal.SIGKILL)
    killed = time.monotonic()
    wait_until_gone(pids, GONE_WITHIN_S)
    assert time.monotonic() - killed < GONE_WITHIN_S
    done = wait_for_success(embedded, client, job["id"])
    assert done["attempts"] == 2
    assert done["metrics"]["job/world_size"] == 2.0
    assert done["metrics"]["job/resumed_from_step"] >= 3


def test_cancelling_a_two_rank_job_ends_every_rank(embedded, teacher):
    assert_cancel_ends_every_rank(embedded, kd_body(teacher, devices=2, epochs=20), 2, GONE_WITHIN_S)


def test_several_nodes_without_a_ray_cluster_are_refused(embedded, teacher):
    refused = embedded.client().post("/v1/jobs", json=kd_body(teacher, nodes=2))
    assert refused.status_code == 422
    assert "DISTILLERY_RAY_ADDRESS" in refused.json()["detail"]

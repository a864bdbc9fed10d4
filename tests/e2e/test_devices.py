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
from scale_jobs import assert_cancel_ends_every_rank, kd_body, wait_for_ranks, wait_for_step, wait_for_success, wait_until_gone

from e2e.conftest import running_service

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
GONE_WITHIN_S = 10.0


@pytest.fixture(scope="module")
def scale_service(tmp_path_factory):
    with running_service("embedded", tmp_path_factory.mktemp("devices")) as service:
        yield service


def test_a_killed_rank_ends_the_attempt_and_the_job_resumes_to_succeeded(scale_service, teacher):
    client = scale_service.client()
    job = client.post("/v1/jobs", json=kd_body(teacher, devices=2)).json()
    pids = wait_for_ranks(scale_service, job["id"], 2)
    wait_for_step(client, job["id"], 4)
    os.kill(pids[1], signal.SIGKILL)
    killed = time.monotonic()
    wait_until_gone(pids, GONE_WITHIN_S)
    assert time.monotonic() - killed < GONE_WITHIN_S
    done = wait_for_success(scale_service, client, job["id"])
    assert done["attempts"] == 2
    assert done["metrics"]["job/world_size"] == 2.0
    assert done["metrics"]["job/resumed_from_step"] >= 3


def test_cancelling_a_two_rank_job_ends_every_rank(scale_service, teacher):
    assert_cancel_ends_every_rank(scale_service, kd_body(teacher, devices=2, epochs=20), 2, GONE_WITHIN_S)


def test_several_nodes_without_a_ray_cluster_are_refused(scale_service, teacher):
    refused = scale_service.client().post("/v1/jobs", json=kd_body(teacher, nodes=2))
    assert refused.status_code == 422
    assert "DISTILLERY_RAY_ADDRESS" in refused.json()["detail"]

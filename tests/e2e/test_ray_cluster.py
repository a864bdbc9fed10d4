"""One job across two Ray nodes (``training.nodes: 2``) through the real API and worker, on a local CPU cluster.

The cluster is two ``ray start`` nodes of one CPU each on this machine; the worker submits the job
as a Ray Train ``TorchTrainer`` (gloo) and relays its reports. The job ends ``succeeded`` with a
world of two ranks, and a cancelled one ends its Ray workers within seconds.
"""

from __future__ import annotations

import pytest
from scale_jobs import assert_cancel_ends_every_rank, kd_body, wait_for_success

from e2e.conftest import running_service

pytest.importorskip("ray.train.torch")
pytestmark = [pytest.mark.e2e, pytest.mark.slow]
GONE_WITHIN_S = 20.0


@pytest.fixture(scope="module")
def scale_service(tmp_path_factory):
    from ray_cluster import two_node_cluster

    with (
        two_node_cluster(tmp_path_factory.mktemp("ray")) as address,
        running_service("embedded", tmp_path_factory.mktemp("ray-service"), DISTILLERY_RAY_ADDRESS=address) as service,
    ):
        yield service


def test_a_two_node_job_succeeds(scale_service, teacher):
    client = scale_service.client()
    job = client.post("/v1/jobs", json=kd_body(teacher, nodes=2, epochs=1, batch_size=256)).json()
    done = wait_for_success(scale_service, client, job["id"])
    assert done["metrics"]["job/world_size"] == 2.0
    assert done["metrics"]["val/top1"] > 0


def test_cancelling_a_two_node_job_ends_its_ray_workers(scale_service, teacher):
    assert_cancel_ends_every_rank(scale_service, kd_body(teacher, nodes=2, epochs=20), 2, GONE_WITHIN_S)

"""Datasets at real size, end to end on real processes.

* A job on a set ten times ``DISTILLERY_INMEMORY_MAX_BYTES`` (uploaded, so converted into shards) streams and
  peaks within 150 MiB (PSS of the worker's whole process tree, its loader worker included) of the same job
  on a set ten times smaller held in memory. The sets are 224 px JPEGs, so the large one decoded (316 MiB)
  would not fit that margin: the bound holds only if the data is really streamed. The bound is on the
  anonymous part of the PSS (what the processes allocated); the file-backed part (library code) is shared
  with every process on the machine that maps the same libraries, so it moves with unrelated load, and is
  printed alongside.
* On PostgreSQL + Redis + a real S3-compatible server: a WebDataset set registered by ``s3://`` URI trains
  streamed, the worker is SIGKILLed mid-epoch, and the resumed job ends with the weights of an uninterrupted
  run; a shard with an image that does not decode fails its job as ``bad_dataset`` naming shard and sample.
"""

from __future__ import annotations

import io

import psycopg
import pytest
import torch
from image_trees import digits_tree, zip_tree
from s3server import bucket_client, s3_server
from safetensors.torch import load
from service import wait_for_job, wait_until

from bench.memory import TreeMemorySampler
from client.client import DistilleryClient
from e2e.conftest import start_service, stop_service
from kdcore.data.shards import write_shards

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SIDE = 224
IMAGE_BYTES = 3 * SIDE * SIDE
SMALL_IMAGES = 220  # 20 train + 2 val per class
BUDGET = SMALL_IMAGES * IMAGE_BYTES  # the small set fits exactly; the large one (10x the images) is 10x the budget
PSS_MARGIN_MIB = 150


def _student(client, job_id: str) -> dict[str, torch.Tensor]:
    items = {a["kind"]: a for a in client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]}
    return load(client.get(f"/v1/artifacts/{items['student_safetensors']['id']}").content)


def _peaks_mib(service, client: DistilleryClient, body: dict) -> tuple[dict, float, float]:
    """The finished job, and the peak anonymous and total PSS of the worker's process tree while it ran."""
    sampler = TreeMemorySampler(service.workers[0].pid)
    sampler.start()
    try:
        job = wait_for_job(client.http, client.submit_job(body).id, timeout=900)
    finally:
        sampler.stop()
    return job, sampler.peak_anon_kib / 1024, sampler.peak_total_kib / 1024


def test_a_set_ten_times_the_memory_budget_streams_without_holding_it(tmp_path):
    small = zip_tree(digits_tree(tmp_path / "small", size=SIDE, per_class=20, val_per_class=2, image_format="JPEG"), tmp_path / "small.zip")
    big = zip_tree(digits_tree(tmp_path / "big", size=SIDE, per_class=100, copies=2, val_per_class=10, image_format="JPEG"), tmp_path / "big.zip")
    service = start_service("embedded", tmp_path, DISTILLERY_INMEMORY_MAX_BYTES=str(BUDGET), DISTILLERY_SHARD_BYTES=str(2 * 1024**2))
    try:
        with DistilleryClient(service.url, service.key) as client:
            fits, over = client.upload_dataset(small), client.upload_dataset(big)
            assert (fits.shards, fits.format) == (0, "imagefolder") and (over.format, over.splits) == ("webdataset", {"train": 2000, "val": 200})
            assert over.shards >= 5 and sum(over.splits.values()) * IMAGE_BYTES == 10 * BUDGET
            body = {
                "method": "supervised",
                "student": {"arch": "test_vit"},
                "training": {"epochs": 1, "batch_size": 64, "augment": "none", "input_size": [3, SIDE, SIDE], "loader_workers": 1},
                "export": ["safetensors"],
            }
            in_memory, memory_peak, memory_total = _peaks_mib(service, client, {**body, "dataset": fits.id})
            streamed, stream_peak, stream_total = _peaks_mib(service, client, {**body, "dataset": over.id})
    finally:
        stop_service(service)
    assert in_memory["status"] == streamed["status"] == "succeeded", (in_memory["error"], streamed["error"], service.logs())
    assert in_memory["metrics"]["data/streamed"] == 0.0 and streamed["metrics"]["data/streamed"] == 1.0
    print(
        f"peak PSS of the worker tree, anonymous (total): {memory_peak:.0f} ({memory_total:.0f}) MiB in memory {fits.splits}, "
        f"{stream_peak:.0f} ({stream_total:.0f}) MiB streamed {over.splits}"
    )
    assert stream_peak - memory_peak < PSS_MARGIN_MIB, (memory_peak, stream_peak)


@pytest.fixture
def s3_service(tmp_path):
    with s3_server(tmp_path) as s3_env:
        service = start_service(
            "postgres",
            tmp_path,
            DISTILLERY_STORAGE_URL="s3://distillery/deploy",
            DISTILLERY_DATASET_VERIFY_SAMPLES="2",
            DISTILLERY_HEARTBEAT_TIMEOUT_S="4",
            DISTILLERY_HEARTBEAT_INTERVAL_S="1",
            DISTILLERY_REAPER_INTERVAL_S="1",
            DISTILLERY_REQUEUE_AFTER_S="5",
            **s3_env,
        )
        yield service, s3_env
        stop_service(service)


def _upload_folder(s3_env: dict, folder, key_prefix: str) -> None:
    client = bucket_client(s3_env)
    for file in sorted(folder.rglob("*")):
        if file.is_file():
            client.upload_file(str(file), "distillery", f"{key_prefix}/{file.relative_to(folder).as_posix()}")


@pytest.mark.postgres
def test_an_s3_registered_set_resumes_after_sigkill_with_identical_weights_and_bad_images_fail_the_job(s3_service, tmp_path):
    service, s3_env = s3_service
    with psycopg.connect(service.env["DISTILLERY_DATABASE_URL"].replace("+psycopg", "")) as db:
        tenant = db.execute("SELECT id FROM tenants WHERE name = 'acme'").fetchone()[0]
    index = write_shards(digits_tree(tmp_path / "tree", size=16, per_class=40, val_per_class=8), tmp_path / "wds", shard_bytes=16_000)
    folder = f"deploy/tenants/{tenant}/datasets/digits-wds"
    _upload_folder(s3_env, tmp_path / "wds", folder)
    client = service.client()
    refused = client.post("/v1/datasets", json={"uri": "s3://distillery/deploy/tenants/someone-else/datasets/x/", "format": "webdataset"})
    assert refused.status_code == 422 and "DISTILLERY_DATASET_URI_PREFIXES" in refused.json()["detail"]
    registered = client.post("/v1/datasets", json={"name": "digits", "uri": f"s3://distillery/{folder}/", "format": "webdataset"})
    assert registered.status_code == 201, registered.text
    dataset = registered.json()
    assert dataset["shards"] == index.shard_count() >= 4 and dataset["verified"] == 2 and dataset["splits"] == {"train": 400, "val": 80}

    body = {
        "method": "supervised",
        "student": {"arch": "cifar_resnet8"},
        "dataset": dataset["id"],
        "training": {
            "epochs": 2,
            "batch_size": 32,
            "seed": 3,
            "augment": "cifar",
            "input_size": [3, 16, 16],
            "data_pipeline": "stream",
            "loader_workers": 1,
            "checkpoint_every_steps": 4,
        },
        "export": ["safetensors"],
    }
    killed = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "killed"}).json()

    def mid_epoch():
        job = client.get(f"/v1/jobs/{killed['id']}").json()
        return job if job["status"] == "running" and 6 <= job["progress"].get("step", 0) < 12 else None

    wait_until(mid_epoch, 300, 0.05, "the job to pass its first checkpoint mid-epoch")
    service.kill_worker(service.workers[0])
    service.start_worker()
    resumed = wait_for_job(client, killed["id"], timeout=600)
    assert resumed["status"] == "succeeded", (resumed["error"], service.logs())
    assert resumed["attempts"] == 2 and resumed["metrics"]["job/resumed_from_step"] >= 4 and resumed["metrics"]["data/streamed"] == 1.0

    control = wait_for_job(client, client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "control"}).json()["id"], timeout=600)
    assert control["status"] == "succeeded" and control["metrics"]["job/resumed_from_step"] == 0
    a, b = _student(client, resumed["id"]), _student(client, control["id"])
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)

    shard = index.splits["train"].shards[1]
    data = bytearray((tmp_path / "wds" / shard.name).read_bytes())
    data[shard.offsets[5] : shard.offsets[5] + shard.sizes[5]] = b"\0" * shard.sizes[5]
    broken = f"deploy/tenants/{tenant}/datasets/digits-broken"
    _upload_folder(s3_env, tmp_path / "wds", broken)
    bucket_client(s3_env).upload_fileobj(io.BytesIO(bytes(data)), "distillery", f"{broken}/{shard.name}")
    bad = client.post("/v1/datasets", json={"uri": f"s3://distillery/{broken}/", "format": "webdataset"}).json()
    failed = wait_for_job(client, client.post("/v1/jobs", json={**body, "dataset": bad["id"]}).json()["id"], timeout=600)
    assert failed["status"] == "failed" and failed["error"]["code"] == "bad_dataset", failed
    assert shard.name in failed["error"]["message"] and shard.keys[5] in failed["error"]["message"] and "does not decode" in failed["error"]["message"]
    assert service.workers[0].poll() is None, "the worker survives a bad dataset"

"""Storage faults under a running job: an object store that is full (a small tmpfs mount) or gone (the S3 server stopped).

A checkpoint or artifact write is retried with back-off for ``DISTILLERY_STORAGE_PATIENCE_S`` (6 s
here): space that comes back in time lets the job go on; a store that stays full or gone fails the job
with ``storage_unavailable`` naming the write, no partial artifact listed or left behind. A resumed
attempt that finds its newest stored checkpoint altered resumes from the one before it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from s3server import bucket_keys, s3_server
from service import Service, wait_for_job, wait_until

from e2e.conftest import start_service, stop_service
from e2e.test_faults import tiny_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PATIENCE = {"DISTILLERY_STORAGE_PATIENCE_S": "6"}
# a SIGKILLed worker's job is re-queued by the sweep once its heartbeat is this old
LOST_AFTER = {"DISTILLERY_HEARTBEAT_INTERVAL_S": "1", "DISTILLERY_HEARTBEAT_TIMEOUT_S": "15", "DISTILLERY_REAPER_INTERVAL_S": "1"}


class SmallDisk:
    """A tmpfs of a few MB as the object store's folder, filled and freed on demand."""

    def __init__(self, path: Path, size_mb: int) -> None:
        path.mkdir(parents=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        self.path, self.filler = path, path / "filler"

    def free_bytes(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Grow the filler file until only ``leave`` bytes are free (none by default)."""
        with open(self.filler, "ab") as handle:
            while (room := self.free_bytes() - leave) > 0:
                try:
                    handle.write(b"\0" * min(room, 1 << 20))
                    handle.flush()
                except OSError:
                    break

    def empty(self) -> None:
        self.filler.unlink(missing_ok=True)

    def files(self, job_id: str) -> list[Path]:
        return sorted(p for p in self.path.glob(f"tenants/*/jobs/{job_id}/**/*") if p.is_file())

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory):
    root = tmp_path_factory.mktemp("small-disk")
    disk = SmallDisk(root / "objects", size_mb=8)
    service = start_service("embedded", root, DISTILLERY_STORAGE_URL=f"file://{disk.path}", **PATIENCE, **LOST_AFTER)
    yield service, disk
    stop_service(service)
    disk.unmount()


def _worker_log(service: Service) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(service.log_dir.glob("worker*.log")))


def _sizes(client, job_id: str) -> tuple[int, int]:
    """The job's largest stored checkpoint and its student artifact (the first one published), in bytes."""
    checkpoint = max(c["size_bytes"] for c in client.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"])
    [student] = [a for a in client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"] if a["kind"] == "student_safetensors"]
    return checkpoint, student["size_bytes"]


def test_a_full_store_is_retried_until_space_comes_back(small_disk):
    service, disk = small_disk
    disk.fill()
    with service.client() as client:
        job_id = client.post("/v1/jobs", json=tiny_job(epochs=2)).json()["id"]
        wait_until(lambda: "storing checkpoint" in _worker_log(service) and "retrying in" in _worker_log(service), 180, what="a checkpoint write to be retried")
        disk.empty()
        job = wait_for_job(client, job_id, timeout=180)
        assert job["status"] == "succeeded" and job["attempts"] == 1, (job, service.logs())


def test_a_store_that_stays_full_fails_the_job_naming_the_checkpoint_write(small_disk):
    service, disk = small_disk
    disk.fill()
    try:
        with service.client() as client:
            job = wait_for_job(client, client.post("/v1/jobs", json=tiny_job(epochs=2)).json()["id"], timeout=180)
            assert client.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"] == []
    finally:
        disk.empty()
    assert (job["status"], job["error"]["code"]) == ("failed", "storage_unavailable"), job
    assert job["error"]["message"].startswith("storing checkpoint ckpt-") and "DISTILLERY_STORAGE_PATIENCE_S" in job["error"]["message"], job
    assert not [p for p in disk.files(job["id"]) if p.name.endswith(".part")]


def test_an_artifact_that_does_not_fit_is_never_published_in_part(small_disk):
    """Room for the job's one checkpoint and half its student: the student's write fails, and nothing of it stays."""
    service, disk = small_disk
    with service.client() as client:
        measured = wait_for_job(client, client.post("/v1/jobs", json=tiny_job(epochs=1)).json()["id"], timeout=180)
        assert measured["status"] == "succeeded", measured
        checkpoint, artifact = _sizes(client, measured["id"])
    page = os.statvfs(disk.path).f_frsize
    disk.fill(leave=(-(-checkpoint // page) + 4) * page + artifact // 2)
    try:
        with service.client() as client:
            job = wait_for_job(client, client.post("/v1/jobs", json=tiny_job(epochs=1)).json()["id"], timeout=180)
            listed = client.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"]
    finally:
        disk.empty()
    assert (job["status"], job["error"]["code"]) == ("failed", "storage_unavailable"), job
    assert job["error"]["message"].startswith("storing artifact "), job
    assert listed == [] and not [p for p in disk.files(job["id"]) if "/artifacts/" in str(p)], disk.files(job["id"])


def test_a_resumed_attempt_skips_a_checkpoint_whose_sha256_does_not_match(small_disk):
    """The worker dies after two checkpoints; the newest is altered in the store and the work folder is gone (a fresh machine)."""
    service, disk = small_disk
    with service.client() as client:
        job_id = client.post("/v1/jobs", json=tiny_job(epochs=8)).json()["id"]
        wait_until(lambda: len(client.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"]) >= 2, 300, 0.3, what="two checkpoints")
        [worker] = service.workers
        service.kill_worker(worker)
        *_, previous, newest = client.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"]
        [stored] = [p for p in disk.files(job_id) if p.parent.name == "checkpoints" and p.stem == f"ckpt-{newest['step']:09d}"]
        with open(stored, "r+b") as handle:  # same size, other bytes: only its sha256 can tell
            handle.seek(stored.stat().st_size // 2)
            handle.write(b"\xff" * 64)
        subprocess.run(["rm", "-rf", str(Path(service.env["DISTILLERY_DATA_DIR"]) / "work" / job_id)], check=True)
        service.start_worker()
        job = wait_for_job(client, job_id, timeout=300)
    assert job["status"] == "succeeded" and job["attempts"] == 2, (job, service.logs())
    assert "does not match its recorded sha256" in _worker_log(service)
    assert job["metrics"]["job/resumed_from_step"] == previous["step"] < newest["step"], (job["metrics"], previous, newest)


def _moto_pid(endpoint: str) -> int:
    port = endpoint.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"moto.server" in argv and port.encode() in argv:
                return int(entry.name)
    raise AssertionError(f"no moto_server process listens on port {port}")


def test_an_s3_store_stopped_mid_job_fails_it_naming_the_write(tmp_path):
    with s3_server(tmp_path) as s3_env:
        service = start_service("embedded", tmp_path, DISTILLERY_STORAGE_URL="s3://distillery/faults", **PATIENCE, **s3_env)
        try:
            with service.client() as client:
                job_id = client.post("/v1/jobs", json=tiny_job(epochs=40)).json()["id"]
                wait_until(lambda: client.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"], 300, 0.3, what="a checkpoint in the bucket")
                assert any(f"/jobs/{job_id}/checkpoints/" in key for key in bucket_keys(s3_env))
                moto = _moto_pid(s3_env["AWS_ENDPOINT_URL"])
                os.kill(moto, signal.SIGTERM)
                job = wait_for_job(client, job_id, timeout=240)
                listed = client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]
        finally:
            stop_service(service)
    assert (job["status"], job["error"]["code"]) == ("failed", "storage_unavailable"), (job, service.logs())
    assert job["error"]["message"].startswith("storing checkpoint ckpt-") and "unreachable or full" in job["error"]["message"], job
    assert listed == []

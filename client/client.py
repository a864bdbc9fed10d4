"""A typed Python client for the Distillery REST API (httpx; SSE through httpx-sse).

    from client.client import DistilleryClient

    with DistilleryClient() as client:  # DISTILLERY_URL, DISTILLERY_API_KEY
        teacher = client.upload_teacher("resnet32x4.safetensors", format="safetensors", arch="cifar_resnet32x4",
                                        num_classes=100, input_size=(3, 32, 32))
        job = client.submit_job({"method": "kd", "teachers": [teacher.id], ...})
        for event in client.events(job.id):
            print(event)
        paths = client.download(job.id, kind="student_onnx", dest="out/")

Refusals raise :class:`DistilleryError` carrying the server's problem+json sentence.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from client.models import (
    Artifact,
    ArtifactLink,
    Checkpoint,
    Dataset,
    Job,
    JobEvent,
    JobEventPage,
    MetricPoint,
    Teacher,
    WebhookDelivery,
)

DEFAULT_URL = "http://127.0.0.1:8000"
STREAM_RECONNECTS = 5


class DistilleryError(Exception):
    """The server refused a request; ``detail`` is its sentence, ``problem`` the whole problem+json body."""

    def __init__(self, status: int, detail: str, problem: dict[str, Any] | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.problem = problem or {}


def _csv(values: Sequence[float | int] | str | None) -> str | None:
    if values is None or isinstance(values, str):
        return values
    return ",".join(str(v) for v in values)


class DistilleryClient:
    def __init__(self, url: str | None = None, api_key: str | None = None, timeout: float = 60.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = (url or os.environ.get("DISTILLERY_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("DISTILLERY_API_KEY", "")
        headers = {"Authorization": f"Bearer {key}", "User-Agent": "distillery-client/1"} if key else {"User-Agent": "distillery-client/1"}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout, write=None), transport=transport)

    def __enter__(self) -> DistilleryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        _raise_for_problem(response)
        return response

    # Teachers and datasets
    def upload_teacher(
        self,
        path: str | Path,
        *,
        format: str,
        num_classes: int,
        input_size: Sequence[int] | str,
        arch: str | None = None,
        mean: Sequence[float] | str | None = None,
        std: Sequence[float] | str | None = None,
        name: str | None = None,
        arch_kwargs: dict[str, Any] | str | None = None,
    ) -> Teacher:
        """``arch_kwargs``: constructor arguments for ``arch`` (e.g. ``{"img_size": 32, "patch_size": 4}``), a dict or its JSON text."""
        form = {
            "format": format,
            "num_classes": str(num_classes),
            "input_size": _csv(input_size),
            "arch": arch,
            "mean": _csv(mean),
            "std": _csv(std),
            "name": name,
            "arch_kwargs": json.dumps(arch_kwargs) if isinstance(arch_kwargs, dict) else arch_kwargs,
        }
        with open(path, "rb") as handle:
            response = self._request("POST", "/v1/teachers", files={"file": (Path(path).name, handle)}, data={k: v for k, v in form.items() if v is not None})
        return Teacher.model_validate(response.json())

    def upload_dataset(self, path: str | Path, name: str | None = None) -> Dataset:
        with open(path, "rb") as handle:
            response = self._request("POST", "/v1/datasets", files={"file": (Path(path).name, handle)}, data={"name": name} if name else {})
        return Dataset.model_validate(response.json())

    def register_dataset(self, uri: str, format: str, name: str | None = None) -> Dataset:
        """A dataset already in object storage (a folder URI under a prefix the server allows), indexed where it lies."""
        body = {"uri": uri, "format": format, **({"name": name} if name else {})}
        return Dataset.model_validate(self._request("POST", "/v1/datasets", json=body).json())

    # Jobs
    def submit_job(self, spec: dict[str, Any], idempotency_key: str | None = None) -> Job:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Job.model_validate(self._request("POST", "/v1/jobs", json=spec, headers=headers).json())

    def get_job(self, job_id: str) -> Job:
        return Job.model_validate(self._request("GET", f"/v1/jobs/{job_id}").json())

    def list_jobs(self, status: str | None = None, limit: int = 50) -> Iterator[Job]:
        """Every job of this tenant (newest first), following ``next_cursor`` page by page."""
        params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
        while True:
            page = self._request("GET", "/v1/jobs", params=params).json()
            yield from (Job.model_validate(item) for item in page["items"])
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def cancel_job(self, job_id: str) -> Job:
        return Job.model_validate(self._request("POST", f"/v1/jobs/{job_id}/cancel").json())

    def delete_job(self, job_id: str) -> None:
        """Remove an ended job with its events, artifacts and checkpoints (409 while it is active: cancel it first)."""
        self._request("DELETE", f"/v1/jobs/{job_id}")

    def pause_job(self, job_id: str) -> Job:
        """A running job turns ``pausing``, then ``paused`` once its checkpoint is written; a queued one pauses at once."""
        return Job.model_validate(self._request("POST", f"/v1/jobs/{job_id}/pause").json())

    def resume_job(self, job_id: str) -> Job:
        """Queue a paused job again; it continues from the checkpoint it paused at."""
        return Job.model_validate(self._request("POST", f"/v1/jobs/{job_id}/resume").json())

    def retry_job(self, job_id: str) -> Job:
        """Queue a failed job again as a new attempt, from its newest checkpoint."""
        return Job.model_validate(self._request("POST", f"/v1/jobs/{job_id}/retry").json())

    def checkpoints(self, job_id: str) -> list[Checkpoint]:
        return [Checkpoint.model_validate(c) for c in self._request("GET", f"/v1/jobs/{job_id}/checkpoints").json()["items"]]

    def download_checkpoint_student(self, checkpoint_id: str, dest: str | Path) -> Path:
        """The student at that checkpoint's step, as safetensors, into the folder ``dest``."""
        folder = Path(dest)
        folder.mkdir(parents=True, exist_ok=True)
        with self.http.stream("GET", f"/v1/checkpoints/{checkpoint_id}/student", timeout=httpx.Timeout(60.0, read=600.0)) as response:
            _raise_for_problem(response)
            target = folder / f"student-{checkpoint_id}.safetensors"
            partial = target.with_name(target.name + ".part")
            with open(partial, "wb") as sink:
                for chunk in response.iter_bytes(1 << 20):
                    sink.write(chunk)
        partial.replace(target)
        return target

    def events(self, job_id: str, after: int = 0) -> Iterator[JobEvent]:
        """Server-Sent Events: history after ``after``, then live events; ends with an ``end`` event once the job has ended or paused.

        A dropped connection is resumed from the last ``seq`` seen, so no event is lost or repeated.
        """
        failures = 0
        while True:
            try:
                with connect_sse(self.http, "GET", f"/v1/jobs/{job_id}/events", params={"after": after}, timeout=httpx.Timeout(60.0, read=120.0)) as source:
                    _raise_for_problem(source.response)
                    for sse in source.iter_sse():
                        if not sse.data:  # a keep-alive comment (the server pings idle streams); every real event carries data
                            continue
                        event = JobEvent.model_validate({"type": sse.event, **json.loads(sse.data)})
                        failures = 0
                        if event.seq is not None:
                            after = event.seq
                        yield event
                        if event.type == "end":
                            return
            except httpx.TransportError:
                failures += 1
                if failures > STREAM_RECONNECTS:
                    raise
                time.sleep(min(2.0**failures, 10.0))

    def event_page(self, job_id: str, after: int = 0, limit: int = 50) -> JobEventPage:
        """One page of ``GET /v1/jobs/{id}/events/list``; pass ``next_cursor`` (as ``after``) for the next."""
        return JobEventPage.model_validate(self._request("GET", f"/v1/jobs/{job_id}/events/list", params={"after": after, "limit": limit}).json())

    def wait(self, job_id: str) -> Job:
        """Block until the job has ended or paused (following its event stream) and return it."""
        for _ in self.events(job_id):
            pass
        return self.get_job(job_id)

    def metrics(self, job_id: str, name: str | None = None) -> list[MetricPoint]:
        series = self._request("GET", f"/v1/jobs/{job_id}/metrics", params={"name": name} if name else {}).json()["series"]
        return [MetricPoint.model_validate(p) for p in series]

    def webhooks(self, job_id: str) -> list[WebhookDelivery]:
        return [WebhookDelivery.model_validate(d) for d in self._request("GET", f"/v1/jobs/{job_id}/webhooks").json()["items"]]

    # Artifacts
    def artifacts(self, job_id: str) -> list[Artifact]:
        return [Artifact.model_validate(a) for a in self._request("GET", f"/v1/jobs/{job_id}/artifacts").json()["items"]]

    def artifact_url(self, artifact_id: str) -> ArtifactLink:
        """A presigned URL that downloads the artifact straight from the object store (S3 storage only)."""
        return ArtifactLink.model_validate(self._request("GET", f"/v1/artifacts/{artifact_id}/url").json())

    def download_artifact(self, artifact: Artifact, dest: str | Path) -> Path:
        """Stream one artifact into the folder ``dest``; the sha256 is checked before the file gets its name."""
        folder = Path(dest)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / Path(artifact.filename).name
        partial = target.with_name(target.name + ".part")
        digest = hashlib.sha256()
        with self.http.stream("GET", f"/v1/artifacts/{artifact.id}", timeout=httpx.Timeout(60.0, read=600.0)) as response:
            _raise_for_problem(response)
            with open(partial, "wb") as sink:
                for chunk in response.iter_bytes(1 << 20):
                    digest.update(chunk)
                    sink.write(chunk)
        if digest.hexdigest() != artifact.sha256:
            partial.unlink(missing_ok=True)
            raise DistilleryError(502, f"the download of {artifact.id} was corrupted (sha256 {digest.hexdigest()} != {artifact.sha256}); try again")
        partial.replace(target)
        return target

    def download(self, job_id: str, dest: str | Path, kind: str | None = None) -> list[Path]:
        """Download the job's artifacts (all, or those of one ``kind``) into ``dest``."""
        chosen = [a for a in self.artifacts(job_id) if kind is None or a.kind == kind]
        if not chosen:
            raise DistilleryError(404, f"job {job_id} has no artifact of kind {kind!r}" if kind else f"job {job_id} has no artifacts (yet)")
        return [self.download_artifact(a, dest) for a in chosen]


def _raise_for_problem(response: httpx.Response) -> None:
    if response.is_success:
        return
    response.read()
    try:
        body = response.json()
    except ValueError:
        body = {}
    detail = body.get("detail") if isinstance(body, dict) else None
    raise DistilleryError(response.status_code, str(detail or response.text[:500] or response.reason_phrase), body if isinstance(body, dict) else None)

"""Register a job's finished student in MLflow's model registry when the job asked for it.

The worker calls :func:`hand_off_to_registry` right after the job's success was recorded, so only a
published student is registered and a registry outage never fails a job that trained fine. In the
experiment ``MLFLOW_EXPERIMENT_NAME`` (default ``distillery``) one run per job gets the job's
parameters, its metric series and final metrics, the exported students under ``student/`` (with
an ``MLmodel`` for MLflow's ONNX flavour when there is an ONNX export, so ``mlflow.pyfunc`` loads
it) and the report; then a new version of ``registry.model_name`` points at ``student/``.

The outcome needs no schema change: one job event of kind ``registry`` (``registered`` with the
model name, version, run ID and source; or ``failed`` with the reason), and on success the metric
``registry/version`` on the job, which ``GET /v1/jobs/{id}`` shows.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import re
import tempfile
import uuid
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core.config import Settings
from core.db import session_scope
from core.mlflow_rest import MlflowClientEnv, MlflowError, MlflowRest, now_ms
from core.models import JobEvent, JobRow, TeacherRow
from kdcore.export import ExportedFile

log = logging.getLogger("distillery.worker")
STUDENT_DIR = "student"


class RegistryFailed(Exception):
    """The hand-off stopped; the message is the sentence recorded on the job, ``run_id`` the MLflow run it left (if any)."""

    def __init__(self, reason: str, run_id: str | None = None) -> None:
        super().__init__(reason)
        self.run_id = run_id


def hand_off_to_registry(job_id: str, artifacts: list[ExportedFile], settings: Settings) -> None:
    """Register the student if the job's spec has ``registry``; never raises (the job has already succeeded)."""
    request: dict[str, Any] = {}
    try:
        with session_scope() as session:
            job = session.get_one(JobRow, job_id)
            request = (job.spec or {}).get("registry") or {}
            if not request:
                return
            facts = _job_facts(session, job)
        _record(job_id, "registered", _register(settings, facts, request, artifacts))
    except RegistryFailed as exc:
        _record_failure(job_id, {"model_name": request.get("model_name"), "error": str(exc), "run_id": exc.run_id})
    except Exception as exc:  # a bug here must not touch the job's status; say it on the job instead
        log.exception("registry hand-off for %s crashed", job_id)
        reason = f"the registry hand-off stopped on an internal error ({type(exc).__name__}: {str(exc)[:300]}); this is a bug"
        _record_failure(job_id, {"model_name": request.get("model_name"), "error": reason, "run_id": None})


def _job_facts(session, job: JobRow) -> dict[str, Any]:
    """What MLflow gets about the job, read while the session is open."""
    teachers = {row.id: row for row in session.scalars(select(TeacherRow).where(TeacherRow.id.in_(job.spec.get("teachers") or [])))}
    series = session.execute(
        select(JobEvent.name, JobEvent.step, JobEvent.value, JobEvent.time).where(JobEvent.job_id == job.id, JobEvent.kind == "metric").order_by(JobEvent.seq)
    ).all()
    return {
        "id": job.id,
        "name": job.name,
        "spec": job.spec,
        "metrics": dict(job.metrics or {}),
        "series": series,
        "teachers": [f"{t} ({teachers[t].arch or teachers[t].format})" if t in teachers else t for t in job.spec.get("teachers") or []],
    }


def _register(settings: Settings, facts: dict[str, Any], request: dict[str, Any], artifacts: list[ExportedFile]) -> dict[str, Any]:
    uri = settings.mlflow_tracking_uri or ""
    if not uri.startswith(("http://", "https://")):
        raise RegistryFailed(
            "this worker has no MLflow tracking server configured (MLFLOW_TRACKING_URI is not an http(s) URL); set it on the workers as on the API"
        )
    env = MlflowClientEnv()
    rest = MlflowRest(uri, env)
    run_id = None
    try:
        experiment_id = rest.experiment_id(env.experiment_name)
        run_id, artifact_uri = rest.create_run(
            experiment_id, facts["name"] or facts["id"], {"distillery.job_id": facts["id"], "mlflow.source.name": "distillery"}
        )
        rest.log_batch(run_id, run_params(facts), run_metrics(facts))
        _upload(rest, artifact_uri, artifacts, facts["id"])
        name = request["model_name"]
        summary = f"Distilled by Distillery job {facts['id']} ({facts['spec']['method']} into {facts['spec']['student']['arch']})"
        rest.ensure_registered_model(name, "Students distilled by Distillery")
        source = f"{artifact_uri}/{STUDENT_DIR}"
        version = rest.create_model_version(name, source, run_id, {**request.get("stage_tags", {}), "distillery.job_id": facts["id"]}, summary)
        rest.finish_run(run_id, "FINISHED")
    except Exception as exc:
        if run_id is not None:
            _close_failed_run(rest, run_id)
        if isinstance(exc, MlflowError):
            raise RegistryFailed(str(exc), run_id) from exc
        raise
    finally:
        rest.close()
    return {"model_name": name, "version": version, "run_id": run_id, "experiment_id": experiment_id, "source": source, "tracking_uri": rest.tracking_uri}


def _close_failed_run(rest: MlflowRest, run_id: str) -> None:
    try:
        rest.finish_run(run_id, "FAILED")
    except MlflowError as exc:
        log.warning("could not mark MLflow run %s FAILED: %s", run_id, exc)


def _upload(rest: MlflowRest, artifact_uri: str, artifacts: list[ExportedFile], job_id: str) -> None:
    students = [a for a in artifacts if a.kind.startswith("student_")]
    for item in artifacts:
        rest.upload(artifact_uri, f"{STUDENT_DIR}/{item.path.name}" if item in students else item.path.name, item.path)
    onnx = next((a for a in students if a.kind == "student_onnx"), None)
    if onnx is not None:
        with tempfile.TemporaryDirectory() as folder:
            mlmodel = Path(folder) / "MLmodel"
            mlmodel.write_text(onnx_mlmodel(onnx, job_id))
            rest.upload(artifact_uri, f"{STUDENT_DIR}/MLmodel", mlmodel)


def onnx_mlmodel(onnx: ExportedFile, job_id: str) -> str:
    """An ``MLmodel`` (JSON, which is YAML too) for MLflow's ONNX flavour: float32 [N,C,H,W] in [0,1] → logits."""
    shape = [-1, *json.loads(onnx.metadata["input_size"])]
    document = {
        "flavors": {
            "onnx": {
                "code": None,
                "data": onnx.path.name,
                "onnx_version": package_version("onnx"),
                "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
            },
            "python_function": {"data": onnx.path.name, "loader_module": "mlflow.onnx", "python_version": platform.python_version()},
        },
        "signature": {"inputs": _tensor_spec(shape), "outputs": _tensor_spec([-1, int(onnx.metadata["num_classes"])]), "params": None},
        "metadata": {"distillery_job_id": job_id, **{k: v for k, v in onnx.metadata.items() if k != "max_relative_error"}},
        "model_uuid": uuid.uuid4().hex,
        "utc_time_created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
    }
    return json.dumps(document, indent=2) + "\n"


def _tensor_spec(shape: list[int]) -> str:
    return json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": shape}}])


def mlflow_key(name: str) -> str:
    """A metric or parameter name MLflow accepts: letters, digits, ``_ - . /`` and spaces, no empty or dot segments, ≤ 250 chars."""
    cleaned = re.sub(r"[^\w./\- ]", "_", name)
    return "/".join(part for part in cleaned.split("/") if part not in ("", ".", ".."))[:250].rstrip("/") or "unnamed"


def run_params(facts: dict[str, Any]) -> dict[str, str]:
    """The job's request, flattened: method, student, teachers, dataset, exports, every training field and hyperparameter."""
    spec = facts["spec"]
    params = {
        "job_id": facts["id"],
        "method": spec["method"],
        "student.arch": spec["student"]["arch"],
        "teachers": ", ".join(facts["teachers"]),
        "dataset": str(spec.get("dataset")),
        "export": ", ".join(spec.get("export") or []),
    }
    if spec["student"].get("init"):
        params["student.init"] = spec["student"]["init"]
    for group in ("training", "hyperparams"):
        for key, value in (spec.get(group) or {}).items():
            if value is not None:
                params[f"{group}.{key}"] = value if isinstance(value, str) else json.dumps(value)
    return {mlflow_key(k): v[:6000] for k, v in params.items()}


def run_metrics(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """Every recorded point with its step, then the job's final metrics at the last step so MLflow shows them as the latest."""
    points = [
        {"key": mlflow_key(name), "value": value, "step": step or 0, "timestamp": _ms(at)}
        for name, step, value, at in facts["series"]
        if value is not None and math.isfinite(value)
    ]
    last_step = max((p["step"] for p in points), default=0)
    stamp = now_ms()
    finals = [
        {"key": mlflow_key(name), "value": float(value), "step": last_step, "timestamp": stamp}
        for name, value in facts["metrics"].items()
        if isinstance(value, int | float) and math.isfinite(value)
    ]
    return points + finals


def _ms(at: datetime) -> int:
    return int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() * 1000)


def _record(job_id: str, outcome: str, data: dict[str, Any]) -> None:
    """One ``registry`` event; on success also the ``registry/version`` metric on the job."""
    with session_scope() as session:
        session.add(JobEvent(job_id=job_id, kind="registry", name=outcome, data=data))
        if outcome == "registered":
            job = session.get_one(JobRow, job_id)
            job.metrics = {**(job.metrics or {}), "registry/version": float(data["version"])}
    log.info("job %s: registry hand-off %s: %s", job_id, outcome, data)


def _record_failure(job_id: str, data: dict[str, Any]) -> None:
    try:
        _record(job_id, "failed", data)
    except Exception:  # the database is gone too: the log is all that is left
        log.exception("job %s: could not record the registry failure %s", job_id, data)

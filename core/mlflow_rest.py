"""The few MLflow tracking-server calls Distillery needs, over its REST API with httpx: the worker's
registry hand-off writes runs and model versions, the API reads a registered model as a teacher.

Speaking HTTP keeps the ``mlflow`` package and its dependency tree out of the product's runtime.
The endpoints are the documented ones of MLflow 2 and 3: ``/api/2.0/mlflow/...`` for tracking and
the model registry, and the artifacts proxy ``/api/2.0/mlflow-artifacts/artifacts/...`` that
``mlflow server`` serves by default, so neither needs credentials for the artifact store behind it.
Every failure becomes an :class:`MlflowError` whose message is a sentence for the job or the user.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ARTIFACTS_PROXY = "/api/2.0/mlflow-artifacts/artifacts"
DOWNLOAD_CHUNK = 1 << 20
PARAMS_PER_CALL = 100  # MLflow's log-batch limits
METRICS_PER_CALL = 1000


class MlflowError(Exception):
    """An MLflow call that failed; the message says which call, what MLflow answered and what to check."""


class MlflowClientEnv(BaseSettings):
    """MLflow's own client variables, read the way the ``mlflow`` client reads them."""

    model_config = SettingsConfigDict(env_prefix="MLFLOW_", extra="ignore")

    tracking_token: SecretStr | None = None
    tracking_username: str | None = None
    tracking_password: SecretStr | None = None
    experiment_name: str = "distillery"
    http_request_timeout: float = 120.0


def redacted(uri: str) -> str:
    """The URI without any user:password part, fit for messages and job events."""
    parts = urlsplit(uri)
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()


def now_ms() -> int:
    return int(time.time() * 1000)


class MlflowRest:
    def __init__(self, tracking_uri: str, env: MlflowClientEnv) -> None:
        self.tracking_uri = redacted(tracking_uri.rstrip("/"))
        auth = None
        headers = {}
        if env.tracking_token is not None:
            headers["Authorization"] = f"Bearer {env.tracking_token.get_secret_value()}"
        elif env.tracking_username and env.tracking_password is not None:
            auth = httpx.BasicAuth(env.tracking_username, env.tracking_password.get_secret_value())
        self.http = httpx.Client(base_url=tracking_uri.rstrip("/"), headers=headers, auth=auth, timeout=env.http_request_timeout)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, endpoint: str, what: str, *, allow: tuple[str, ...] = (), **kwargs: Any) -> dict[str, Any]:
        """One request; an MLflow ``error_code`` listed in ``allow`` comes back as ``{"error_code": …}`` instead of raising."""
        try:
            response = self.http.request(method, endpoint, **kwargs)
        except httpx.HTTPError as exc:
            raise MlflowError(
                f"could not reach MLflow at {self.tracking_uri} to {what} ({type(exc).__name__}: {exc}); check MLFLOW_TRACKING_URI and that the server is up"
            ) from exc
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {}
        if response.is_success:
            return body
        code = body.get("error_code") if isinstance(body, dict) else None
        if code in allow:
            return {"error_code": code}
        detail = (body.get("message") if isinstance(body, dict) else None) or response.text[:300]
        raise MlflowError(f"MLflow at {self.tracking_uri} refused to {what}: HTTP {response.status_code} {code or ''} {detail}".replace("  ", " ").strip())

    def experiment_id(self, name: str) -> str:
        """The experiment's ID, creating it first if it does not exist (a concurrent creator is fine)."""
        for _ in range(2):
            found = self._call(
                "GET",
                "/api/2.0/mlflow/experiments/get-by-name",
                f"look up experiment {name!r}",
                params={"experiment_name": name},
                allow=("RESOURCE_DOES_NOT_EXIST",),
            )
            if "experiment" in found:
                experiment = found["experiment"]
                if experiment.get("lifecycle_stage", "active") != "active":
                    raise MlflowError(
                        f"MLflow experiment {name!r} at {self.tracking_uri} is deleted; restore it ('mlflow experiments restore --experiment-id "
                        f"{experiment['experiment_id']}'), or set MLFLOW_EXPERIMENT_NAME on the workers to another experiment"
                    )
                return experiment["experiment_id"]
            created = self._call(
                "POST", "/api/2.0/mlflow/experiments/create", f"create experiment {name!r}", json={"name": name}, allow=("RESOURCE_ALREADY_EXISTS",)
            )
            if "experiment_id" in created:
                return created["experiment_id"]
        raise MlflowError(
            f"MLflow at {self.tracking_uri} neither finds nor creates experiment {name!r}; check the server's log, or set MLFLOW_EXPERIMENT_NAME to another experiment"
        )

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> tuple[str, str]:
        """Start a run; returns its ID and its artifact URI."""
        body = {"experiment_id": experiment_id, "run_name": run_name, "start_time": now_ms(), "tags": [{"key": k, "value": v} for k, v in tags.items()]}
        info = self._call("POST", "/api/2.0/mlflow/runs/create", "create a run", json=body)["run"]["info"]
        return info["run_id"], info["artifact_uri"]

    def log_batch(self, run_id: str, params: dict[str, str], metrics: list[dict[str, Any]]) -> None:
        items = list(params.items())
        for start in range(0, len(items), PARAMS_PER_CALL):
            chunk = [{"key": k, "value": v} for k, v in items[start : start + PARAMS_PER_CALL]]
            self._call("POST", "/api/2.0/mlflow/runs/log-batch", "log the job's parameters", json={"run_id": run_id, "params": chunk})
        for start in range(0, len(metrics), METRICS_PER_CALL):
            self._call(
                "POST", "/api/2.0/mlflow/runs/log-batch", "log the job's metrics", json={"run_id": run_id, "metrics": metrics[start : start + METRICS_PER_CALL]}
            )

    def proxied_artifact_url(self, artifact_uri: str, relative: str) -> str:
        """Where the artifacts proxy takes a file of a run whose artifact URI is ``mlflow-artifacts:/…``."""
        parts = urlsplit(artifact_uri)
        if parts.scheme != "mlflow-artifacts":
            raise MlflowError(
                f"MLflow at {self.tracking_uri} gave the run the artifact location {artifact_uri!r}, but Distillery uploads only through MLflow's "
                "artifacts proxy (mlflow-artifacts:/…); run 'mlflow server' with artifact serving on (the default, not --no-serve-artifacts) "
                "and point MLFLOW_EXPERIMENT_NAME at an experiment created under it"
            )
        path = f"{ARTIFACTS_PROXY}/{quote(posixpath.join(parts.path.strip('/'), relative))}"
        return f"{self.http.base_url.scheme}://{parts.netloc}{path}" if parts.netloc else path

    def _served_path(self, artifact_uri: str) -> str:
        """The proxy path of ``mlflow-artifacts:/…`` on this tracking server; refuses other schemes and other hosts.

        Model versions name their own source, so reading one must not send requests wherever a registry entry points.
        """
        parts = urlsplit(artifact_uri)
        if parts.scheme != "mlflow-artifacts" or parts.netloc not in ("", self.http.base_url.netloc.decode()):
            raise MlflowError(
                f"the model's files are at {artifact_uri!r}, which Distillery does not read: it reads a registered model only through the artifacts "
                f"proxy of the tracking server itself ({self.tracking_uri}, 'mlflow-artifacts:/…' locations); register the model from a run logged to that server"
            )
        return parts.path.strip("/")

    def model_version_uri(self, name: str, version: str) -> str:
        """Where the registry keeps the files of version ``version`` of ``name`` (what ``models:/name/version`` means)."""
        found = self._call(
            "GET",
            "/api/2.0/mlflow/model-versions/get-download-uri",
            f"find version {version} of registered model {name!r}",
            params={"name": name, "version": version},
        )
        return str(found["artifact_uri"])

    def alias_version(self, name: str, alias: str) -> str:
        """The version an alias (``models:/name@alias``) points at."""
        found = self._call(
            "GET", "/api/2.0/mlflow/registered-models/alias", f"find alias {alias!r} of registered model {name!r}", params={"name": name, "alias": alias}
        )
        return str(found["model_version"]["version"])

    def list_files(self, artifact_uri: str) -> list[str]:
        """Names of the files directly under a served artifact folder; empty for a file or a missing folder."""
        listing = self._call("GET", ARTIFACTS_PROXY, f"list the files at {artifact_uri}", params={"path": self._served_path(artifact_uri)})
        return [item["path"].rsplit("/", 1)[-1] for item in listing.get("files", []) if not item.get("is_dir")]

    @contextmanager
    def download(self, artifact_uri: str) -> Iterator[Iterator[bytes]]:
        """The bytes of one served artifact, streamed in chunks."""
        url = f"{ARTIFACTS_PROXY}/{quote(self._served_path(artifact_uri))}"
        what = f"download {artifact_uri}"
        try:
            with self.http.stream("GET", url) as response:
                if not response.is_success:
                    response.read()
                    raise MlflowError(f"MLflow at {self.tracking_uri} refused to {what}: HTTP {response.status_code} {response.text[:300]}".strip())
                yield response.iter_bytes(DOWNLOAD_CHUNK)
        except httpx.HTTPError as exc:
            raise MlflowError(f"could not {what} from MLflow at {self.tracking_uri} ({type(exc).__name__}: {exc})") from exc

    def upload(self, artifact_uri: str, relative: str, path: Path) -> None:
        with open(path, "rb") as handle:  # httpx streams a real file with its Content-Length
            self._call("PUT", self.proxied_artifact_url(artifact_uri, relative), f"upload {relative} to the run's artifacts", content=handle)

    def ensure_registered_model(self, name: str, description: str) -> None:
        self._call(
            "POST",
            "/api/2.0/mlflow/registered-models/create",
            f"create registered model {name!r}",
            json={"name": name, "description": description},
            allow=("RESOURCE_ALREADY_EXISTS",),
        )

    def create_model_version(self, name: str, source: str, run_id: str, tags: dict[str, str], description: str) -> str:
        body = {"name": name, "source": source, "run_id": run_id, "description": description, "tags": [{"key": k, "value": v} for k, v in tags.items()]}
        return str(
            self._call("POST", "/api/2.0/mlflow/model-versions/create", f"create a version of registered model {name!r}", json=body)["model_version"]["version"]
        )

    def finish_run(self, run_id: str, status: str) -> None:
        self._call("POST", "/api/2.0/mlflow/runs/update", f"mark the run {status}", json={"run_id": run_id, "status": status, "end_time": now_ms()})

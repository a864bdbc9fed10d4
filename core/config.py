"""Settings from the environment (``DISTILLERY_*``), with an embedded default that needs no server.

With nothing set: SQLite under ``DISTILLERY_DATA_DIR``, objects in a local folder, and Celery on
kombu's filesystem transport. Setting the URLs moves the same code to PostgreSQL, Redis and S3.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, IPvAnyNetwork
from pydantic_settings import BaseSettings, SettingsConfigDict

# Each API process imports the validation stack (torch, timm) itself, a few hundred MB apiece, and
# one database serves them all, so the default stops at a few.
MAX_DEFAULT_API_PROCESSES = 4


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISTILLERY_", extra="ignore")

    data_dir: Path = Path("./var")
    database_url: str | None = None
    broker_url: str | None = None
    storage_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    allow_code_models: bool = False
    max_upload_bytes: int = Field(default=4 * 1024**3, description="largest teacher or dataset upload")
    archive_max_members: int = 200_000
    archive_max_bytes: int = 8 * 1024**3
    archive_max_ratio: float = 200.0
    heartbeat_timeout_s: float = 60.0
    heartbeat_interval_s: float = 5.0
    reaper_interval_s: float = 10.0
    requeue_after_s: float = 30.0
    max_attempts: int = 3
    tenant_max_active_jobs: int = 20
    api_processes: int | None = Field(
        default=None, ge=1, le=64, description=f"API processes serving the port; default one per CPU core, at most {MAX_DEFAULT_API_PROCESSES}"
    )
    api_db_threads: int | None = Field(
        default=None, ge=1, le=200, description="requests that may run database work at once in one API process; default 1 on SQLite, 4 otherwise"
    )
    sse_ping_s: float = Field(default=15.0, gt=0, le=300, description="keep-alive comment interval on idle event streams")
    auth_cache_s: float = Field(default=5.0, ge=0, description="how long a checked API key is trusted without the database; 0 checks every request")
    rate_limit_rps: float = Field(default=0.0, ge=0, description="requests a second each tenant may send to one API process (token bucket); 0 = no limit")
    rate_limit_burst: int | None = Field(default=None, ge=1, description="requests a tenant may send at once above the rate; default twice the rate")
    max_json_body_bytes: int = Field(
        default=1024**2, ge=1024, description="largest JSON request body; larger ones are refused with 413 before they are read whole"
    )
    tenant_max_storage_bytes: int = 200 * 1024**3
    keep_checkpoints: int = Field(default=1, ge=1, description="checkpoints a job keeps stored once it has ended, the newest ones (core.retention)")
    storage_patience_s: float = Field(
        default=120.0, gt=0, description="how long a job retries a checkpoint or artifact write while the object store is unreachable or full"
    )
    inmemory_max_bytes: int = Field(
        default=2 * 1024**3,
        ge=0,
        description="datasets whose decoded size is at most this are held in memory by jobs; larger ones are streamed, and larger uploads become shards",
    )
    dataset_uri_prefixes: list[str] | None = Field(
        default=None,
        description='where tenants may register datasets by reference, as a JSON list of URI prefixes ("{tenant}" is the tenant ID); '
        "default: the tenant's own <storage_url>/tenants/{tenant}/datasets/",
    )
    shard_bytes: int = Field(default=256 * 1024**2, ge=4096, description="size of the WebDataset shards a large upload is converted into")
    shard_cache_max_bytes: int = Field(default=50 * 1024**3, ge=1, description="local disk a worker may fill with remote shards (least recently used evicted)")
    dataset_verify_samples: int = Field(default=64, ge=1, le=100_000, description="images decoded when a dataset is registered by reference")
    worker_concurrency: int = 1
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (MinIO, moto); AWS_ENDPOINT_URL is used when unset")
    s3_public_endpoint_url: str | None = Field(
        default=None, description="endpoint clients reach, for presigned URLs, when it differs from the one the service uses"
    )
    presigned_url_expires_s: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    webhook_secret: str | None = Field(default=None, description="HMAC-SHA256 key for webhook signatures when the tenant has none of its own")
    webhook_max_attempts: int = Field(default=5, ge=1, le=20)
    webhook_backoff_s: float = Field(default=2.0, gt=0, description="first retry delay; doubles on each further attempt")
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_poll_interval_s: float = Field(default=1.0, gt=0)
    webhook_allow_networks: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description='networks webhooks may reach although they are not public (loopback, private, …), as a JSON list of CIDRs, e.g. ["10.8.0.0/16"]',
    )
    ray_address: str | None = Field(
        default=None, description="Ray cluster (its GCS address host:port) that runs jobs with training.nodes > 1; unset, such jobs are refused"
    )
    teacher_uri_prefixes: list[str] | None = Field(
        default=None,
        description='where tenants may register teachers by reference (s3://, file://), as a JSON list of URI prefixes ("{tenant}" is the tenant ID); '
        "default: the tenant's own <storage_url>/tenants/{tenant}/teachers/",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias="MLFLOW_TRACKING_URI",
        description="http(s) URL of an MLflow tracking server; jobs with 'registry' register their student there",
    )

    @property
    def resolved_api_processes(self) -> int:
        return self.api_processes or min(len(os.sched_getaffinity(0)), MAX_DEFAULT_API_PROCESSES)

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.resolve()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_data_dir / 'distillery.db'}"

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or f"file://{self.resolved_data_dir / 'objects'}"

    @property
    def uses_embedded_broker(self) -> bool:
        return not self.broker_url or self.broker_url.startswith("filesystem://")

    @property
    def broker_folder(self) -> Path:
        return self.resolved_data_dir / "broker"

    def extracted_dataset_dir(self, digest: str) -> Path:
        """Where an uploaded archive is kept extracted, by content hash, for every job that trains on it."""
        return self.resolved_data_dir / "cache" / "datasets" / digest

    @property
    def shard_cache_dir(self) -> Path:
        """Where a worker keeps remote dataset shards between jobs (capped by ``shard_cache_max_bytes``)."""
        return self.resolved_data_dir / "cache" / "shards"

    @property
    def work_dir(self) -> Path:
        """Local scratch for running jobs: checkpoints, extracted datasets, exports before upload."""
        return self.resolved_data_dir / "work"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

"""The compose file and Dockerfile cannot run here (no Docker engine); check them by reading."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_has_the_production_services_wired_together():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "api", "worker"} <= set(services)
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["DISTILLERY_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["DISTILLERY_BROKER_URL"].startswith("redis://redis:")
        assert env["DISTILLERY_STORAGE_URL"].startswith("s3://")
        assert "distillery migrate" in " ".join(services[name]["command"])
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    for name in ("postgres", "redis", "api"):
        assert "healthcheck" in services[name]
    assert services["api"]["healthcheck"]["test"][-1].endswith("/readyz")


def test_dockerfile_builds_api_and_cuda_worker_targets():
    text = (ROOT / "Dockerfile").read_text()
    assert "AS api" in text and "AS worker" in text
    worker_from = next(line for line in text.splitlines() if line.startswith("FROM") and line.endswith("AS worker"))
    assert "cuda" in worker_from
    worker_stage = text.split(worker_from, 1)[1]
    assert 'CMD ["distillery", "worker"]' in worker_stage
    for path in ("api/", "worker/", "kdcore/", "migrations/"):
        assert f"COPY {path}" in text

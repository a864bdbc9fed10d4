from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from backends import backend_env
from datasets import digits_zip
from service import Service, free_port

BACKENDS = ["embedded", "postgres"]


@pytest.fixture(scope="session")
def digits32_zip(tmp_path_factory) -> Path:
    return digits_zip(tmp_path_factory.mktemp("data") / "digits32.zip", size=32)


@pytest.fixture(scope="session")
def trained_teacher(tmp_path_factory, digits32_zip) -> dict:
    """A small CNN (cifar_resnet8) trained on the digits archive in seconds, exported as safetensors."""
    import zipfile

    from kdcore import JobSpec, train

    root = tmp_path_factory.mktemp("teacher")
    with zipfile.ZipFile(digits32_zip) as archive:
        archive.extractall(root / "data")
    spec = JobSpec(
        method="supervised",
        student={"arch": "cifar_resnet8"},
        dataset={"root": root / "data"},
        training={"epochs": 8, "batch_size": 64, "augment": "none", "input_size": [3, 32, 32], "lr": 0.1},
        export=["safetensors"],
        work_dir=root / "run",
    )
    result = train(spec)
    return {"path": result.artifacts[0].path, "arch": "cifar_resnet8", "val_top1": result.metrics["val/top1"], "data_root": root / "data"}


def start_service(backend: str, tmp_path: Path, workers: int = 1, **settings: str) -> Service:
    context = backend_env(backend, tmp_path / "var", DISTILLERY_PORT=str(free_port()), **settings)
    env = context.__enter__()
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    service = Service(env=env, log_dir=logs, port=int(env["DISTILLERY_PORT"]))
    service._context = context  # type: ignore[attr-defined]
    service.cli("migrate")
    service.key = service.cli("keys", "create", "--tenant", "acme")
    service.start_api()
    for _ in range(workers):
        service.start_worker()
    return service


def stop_service(service: Service) -> None:
    service.stop()
    service._context.__exit__(None, None, None)  # type: ignore[attr-defined]


@contextmanager
def running_service(backend: str, tmp_path: Path, workers: int = 1, **settings: str) -> Iterator[Service]:
    """``start_service`` for the block and ``stop_service`` after it, so a module fixture is a ``with`` around its ``yield``."""
    service = start_service(backend, tmp_path, workers, **settings)
    try:
        yield service
    finally:
        stop_service(service)


@pytest.fixture(scope="module")
def teacher(scale_service: Service, tmp_path_factory) -> str:
    """The small KD teacher uploaded to ``scale_service``, the service a multi-rank test module (devices, Ray) starts for itself."""
    from scale_jobs import upload_teacher

    return upload_teacher(scale_service.client(), tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="module", params=BACKENDS)
def service(request, tmp_path_factory):
    svc = start_service(request.param, tmp_path_factory.mktemp(f"svc-{request.param}"))
    svc.backend = request.param  # type: ignore[attr-defined]
    yield svc
    stop_service(svc)

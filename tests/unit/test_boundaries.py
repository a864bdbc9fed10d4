"""The house's walls: who may import whom, checked on the source with ast and on a fresh interpreter."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE = {"api", "worker", "core", "client", "bench", "sqlalchemy", "celery", "fastapi", "starlette", "alembic", "redis", "psycopg"}
FORBIDDEN = {
    "kdcore": SERVICE,
    "core": {"api", "worker", "bench", "torch", "torchvision", "timm", "fastapi", "starlette"},
    "api": {"worker", "bench"},
    "worker": {"api", "bench"},
    "client": {"api", "worker", "core", "kdcore", "bench", "torch", "fastapi", "starlette", "sqlalchemy", "celery"},
}


def imported_modules(package: str) -> list[tuple[str, str]]:
    found = []
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((str(path.relative_to(ROOT)), node.module))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_its_layer_may(package):
    offenders = [f"{where}: {name}" for where, name in imported_modules(package) if name.split(".")[0] in FORBIDDEN[package]]
    assert offenders == []


def loaded_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_importing_the_client_loads_no_torch_and_no_server():
    loaded = loaded_after_import("client, client.cli, client.models, client.webhook_signing")
    assert loaded.isdisjoint({"torch", "fastapi", "sqlalchemy", "celery", "kdcore", "core", "api", "worker"})


def test_importing_the_core_loads_neither_torch_nor_fastapi():
    modules = [p.stem for p in (ROOT / "core").glob("*.py") if p.stem != "__init__"]
    loaded = loaded_after_import(", ".join(f"core.{m}" for m in sorted(modules)))
    assert loaded.isdisjoint({"torch", "fastapi", "starlette", "api", "worker"})

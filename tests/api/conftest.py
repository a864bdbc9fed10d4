"""The FastAPI app in-process (``TestClient``) on a fresh SQLite database: route tests that run in seconds."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient


@pytest.fixture(scope="session")
def app_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch_session: pytest.MonkeyPatch):
    """Point every cached singleton (settings, engine, store, Celery app) at a temporary data folder, migrated."""
    data_dir = tmp_path_factory.mktemp("api-data")
    monkeypatch_session.setenv("DISTILLERY_DATA_DIR", str(data_dir))
    for name in ("DISTILLERY_DATABASE_URL", "DISTILLERY_BROKER_URL", "DISTILLERY_STORAGE_URL", "MLFLOW_TRACKING_URI"):
        monkeypatch_session.delenv(name, raising=False)
    from core import db, storage
    from core.config import get_settings

    get_settings.cache_clear()
    db.get_engine.cache_clear()
    db.get_sessionmaker.cache_clear()
    storage._STORE = None
    if "core.celery_app" in sys.modules:
        importlib.reload(sys.modules["core.celery_app"])
    from core.operator_cli import migrate

    migrate()
    yield get_settings()
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    db.get_sessionmaker.cache_clear()
    storage._STORE = None


@pytest.fixture(scope="session")
def monkeypatch_session() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _key(tenant: str) -> str:
    from core.api_keys import create_key
    from core.db import session_scope

    with session_scope() as session:
        return create_key(session, tenant)


@pytest.fixture(scope="session")
def api(app_settings) -> Iterator[TestClient]:
    from api.main import app

    with TestClient(app, headers={"Authorization": f"Bearer {_key('acme')}"}) as client:
        yield client


@pytest.fixture(scope="session")
def other_tenant(app_settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {_key('globex')}"}

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import text

from api.errors import problem
from core.db import get_engine
from core.storage import get_store

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _checks() -> dict[str, str]:
    results: dict[str, str] = {}
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        results["database"] = "ok"
    except Exception as exc:
        results["database"] = f"unreachable: {type(exc).__name__}"
    try:
        from core.celery_app import celery_app

        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
        results["broker"] = "ok"
    except Exception as exc:
        results["broker"] = f"unreachable: {type(exc).__name__}"
    try:
        get_store().check()
        results["storage"] = "ok"
    except Exception as exc:
        results["storage"] = f"unreachable: {type(exc).__name__}"
    return results


@router.get("/readyz")
async def readyz():
    results = await run_in_threadpool(_checks)
    if all(v == "ok" for v in results.values()):
        return {"status": "ok", **results}
    failing = ", ".join(f"{k} {v}" for k, v in results.items() if v != "ok")
    return problem(503, f"not ready: {failing}")

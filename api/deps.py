"""FastAPI dependencies and the one way routes reach the database.

Routes are ``async``: each runs its database and storage work as one call to ``in_session`` (one
thread hop with its own session), so the event loop never waits on I/O and a request costs one
thread switch, not one per sync dependency. ``TenantDep`` answers from ``api.auth.KEY_CACHE`` without
leaving the event loop when it can.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from functools import partial
from typing import Annotated, Concatenate, ParamSpec, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Header
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from api.auth import KEY_CACHE, check_key
from api.errors import ApiError
from api.rate_limit import enforce_rate_limit
from core.config import Settings, get_settings
from core.db import get_sessionmaker

P = ParamSpec("P")
T = TypeVar("T")


def _call_with_session(function: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    with get_sessionmaker()() as session:
        return function(session, *args, **kwargs)


_LIMITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = weakref.WeakKeyDictionary()


def _database_threads() -> anyio.CapacityLimiter:
    """How many requests may run database work at once (one limiter per event loop).

    Few on purpose: Python threads share one interpreter lock, and sqlite3 and psycopg release and
    re-take it on every row and round trip, so eight threads fighting for it serve fewer requests,
    with far longer tails, than one or two (measured in ``bench.production``). SQLite has a single
    writer anyway; PostgreSQL calls wait on the network, so more of them overlap usefully.
    """
    loop = asyncio.get_running_loop()
    if loop not in _LIMITERS:
        settings = get_settings()
        default = 1 if settings.resolved_database_url.startswith("sqlite") else 4
        _LIMITERS[loop] = anyio.CapacityLimiter(settings.api_db_threads or default)
    return _LIMITERS[loop]


async def in_session(function: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``function(session, *args)`` on one of the API's database threads, with a session of its own.

    For quick database work (one request's queries); build response models inside ``function``,
    since ORM rows are detached once it returns.
    """
    return await anyio.to_thread.run_sync(partial(_call_with_session, function, *args, **kwargs), limiter=_database_threads())


async def in_session_long(function: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Like ``in_session`` on the general threadpool: for uploads, whose checks take seconds and must not hold up other requests."""
    return await run_in_threadpool(partial(_call_with_session, function, *args, **kwargs))


async def _settings() -> Settings:
    return get_settings()


SettingsDep = Annotated[Settings, Depends(_settings)]


async def _tenant(authorization: Annotated[str | None, Header()] = None) -> str:
    unauthorized = {"WWW-Authenticate": "Bearer"}
    if not authorization:
        raise ApiError(
            401,
            "missing Authorization header; send 'Authorization: Bearer <api key>' (create one with 'distillery keys create --tenant NAME')",
            headers=unauthorized,
        )
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise ApiError(401, "the Authorization header must be 'Bearer <api key>'", headers=unauthorized)
    tenant = KEY_CACHE.get(key)
    if tenant is None:
        verdict = await in_session(check_key, key)
        if verdict.tenant is None:
            raise ApiError(401, f"{verdict.refusal}; ask the operator for a new one ('distillery keys create --tenant NAME')", headers=unauthorized)
        tenant = verdict.tenant
        cache_s = get_settings().auth_cache_s
        KEY_CACHE.put(key, tenant, cache_s if verdict.valid_for_s is None else min(cache_s, verdict.valid_for_s))
    enforce_rate_limit(tenant)
    return tenant


TenantDep = Annotated[str, Depends(_tenant)]

"""FastAPI dependencies and the one way routes reach the database.

Routes are ``async``: each runs its database and storage work as one call to ``in_session`` (one
threadpool hop with its own session), so the event loop never waits on I/O and a request costs one
thread switch, not one per sync dependency. ``TenantDep`` answers from ``api.auth.KEY_CACHE`` without
leaving the event loop when it can.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Concatenate, ParamSpec, TypeVar

from fastapi import Depends, Header
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from api.auth import KEY_CACHE, tenant_for_key
from api.core.config import Settings, get_settings
from api.db import get_sessionmaker
from api.errors import ApiError

P = ParamSpec("P")
T = TypeVar("T")


def _call_with_session(function: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    with get_sessionmaker()() as session:
        return function(session, *args, **kwargs)


async def in_session(function: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``function(session, *args)`` in the threadpool with a session of its own, closed afterwards.

    Build response models inside ``function``: ORM rows are detached once it returns.
    """
    return await run_in_threadpool(_call_with_session, function, *args, **kwargs)


async def _settings() -> Settings:
    return get_settings()


SettingsDep = Annotated[Settings, Depends(_settings)]


async def _tenant(authorization: Annotated[str | None, Header()] = None) -> str:
    unauthorized = {"WWW-Authenticate": "Bearer"}
    if not authorization:
        raise ApiError(401, "missing Authorization header; send 'Authorization: Bearer <api key>' (create one with 'distillery keys create --tenant NAME')", headers=unauthorized)
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise ApiError(401, "the Authorization header must be 'Bearer <api key>'", headers=unauthorized)
    tenant = KEY_CACHE.get(key)
    if tenant is None:
        tenant = await in_session(tenant_for_key, key)
        if tenant is not None:
            KEY_CACHE.put(key, tenant, get_settings().auth_cache_s)
    if tenant is None:
        raise ApiError(401, "the API key is not valid (unknown or revoked); create one with 'distillery keys create --tenant NAME'", headers=unauthorized)
    return tenant


TenantDep = Annotated[str, Depends(_tenant)]

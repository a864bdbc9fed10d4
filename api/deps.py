"""FastAPI dependencies as ``Annotated`` aliases: ``SessionDep``, ``TenantDep``, ``SettingsDep``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header
from sqlalchemy.orm import Session

from api.auth import tenant_for_key
from api.core.config import Settings, get_settings
from api.db import get_sessionmaker
from api.errors import ApiError


def _session() -> Iterator[Session]:
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _tenant(session: SessionDep, authorization: Annotated[str | None, Header()] = None) -> str:
    unauthorized = {"WWW-Authenticate": "Bearer"}
    if not authorization:
        raise ApiError(401, "missing Authorization header; send 'Authorization: Bearer <api key>' (create one with 'distillery keys create --tenant NAME')", headers=unauthorized)
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "the Authorization header must be 'Bearer <api key>'", headers=unauthorized)
    tenant = tenant_for_key(session, key.strip())
    # Release the connection: the route runs in another threadpool thread, and holding it here
    # starves the pool under concurrency (fastapi#3205).
    session.rollback()
    if tenant is None:
        raise ApiError(401, "the API key is not valid (unknown or revoked); create one with 'distillery keys create --tenant NAME'", headers=unauthorized)
    return tenant


TenantDep = Annotated[str, Depends(_tenant)]

"""Where a test deployment keeps its state: the embedded default, or real PostgreSQL + Redis.

``.ci/run`` starts PostgreSQL and Redis and sets ``DISTILLERY_TEST_POSTGRES_ADMIN_URL`` and
``DISTILLERY_TEST_REDIS_URL``; under CI a missing server fails the run instead of skipping.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ADMIN_URL = os.environ.get("DISTILLERY_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("DISTILLERY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must test against real PostgreSQL and Redis)")
    pytest.skip(reason)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty database for one deployment; dropped afterwards."""
    import psycopg

    name = f"distillery_test_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _unavailable(f"PostgreSQL unreachable at {ADMIN_URL}: {exc}")
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_url() -> str:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        client.flushdb()
    except redis.RedisError as exc:
        _unavailable(f"Redis unreachable at {REDIS_URL}: {exc}")
    return REDIS_URL


@contextmanager
def backend_env(backend: str, data_dir: Path, **overrides: str) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_") or k.startswith("DISTILLERY_TEST_")}
    env.update(DISTILLERY_DATA_DIR=str(data_dir), OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"), PYTHONUNBUFFERED="1")
    env.update(overrides)
    if backend == "embedded":
        yield env
        return
    with postgres_database() as url:
        env.update(DISTILLERY_DATABASE_URL=url, DISTILLERY_BROKER_URL=redis_url())
        yield env

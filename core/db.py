"""Engine and sessions. SQLite gets WAL and a busy timeout so the API and workers can share it.

JSON columns are decoded by pydantic-core's parser (Rust), about three times faster than ``json``:
a page of jobs decodes a spec, metrics and progress per row.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, cast

from pydantic_core import from_json
from sqlalchemy import CursorResult, Delete, Engine, Update, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from core.config import get_settings


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # One connection per threadpool thread that may hold one: the API runs each request's database
        # work in one thread, so the pool never makes a request wait for another's connection.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20, max_overflow=20, json_deserializer=from_json)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:  # noqa: ANN001
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            # With WAL this keeps the database consistent on a crash and skips one fsync per commit;
            # a power cut may lose the last commits (the SQLite docs' recommended WAL setting).
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, json_deserializer=from_json)


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    settings = get_settings()
    if settings.resolved_database_url.startswith("sqlite"):
        settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    return make_engine(settings.resolved_database_url)


@lru_cache(maxsize=1)
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error (workers and scripts)."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def rows_matched(session: Session, statement: Update | Delete) -> int:
    """How many rows an UPDATE or DELETE matched, which conditional writes test to learn whether they won.

    ``Session.execute`` is typed to return a plain ``Result``; for these statements it is a
    ``CursorResult``, the kind that carries ``rowcount``.
    """
    return cast(CursorResult[Any], session.execute(statement)).rowcount

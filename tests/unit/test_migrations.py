"""Alembic is the only way the schema changes: upgrade, downgrade and upgrade again on SQLite and PostgreSQL,
and the migrated schema must match the models exactly (autogenerate finds nothing left to do)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from backends import postgres_database
from sqlalchemy import inspect

from core.db import make_engine
from core.models import Base

ROOT = Path(__file__).resolve().parents[2]


def _config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["url"] = url
    return config


def _round_trip(url: str) -> None:
    config = _config(url)
    command.upgrade(config, "head")
    command.downgrade(config, "0001")
    engine = make_engine(url)
    with engine.connect() as connection:
        assert "webhook_deliveries" not in inspect(connection).get_table_names()
    command.upgrade(config, "head")
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == [], f"models and migrations disagree; add a migration: {differences}"


def test_migrations_round_trip_on_sqlite(tmp_path):
    _round_trip(f"sqlite:///{tmp_path / 'schema.db'}")


@pytest.mark.postgres
def test_migrations_round_trip_on_postgresql():
    with postgres_database() as url:
        _round_trip(url)

"""The API's hot queries are served by an index in order: no full scan, no sort of a tenant's rows.

SQLite's EXPLAIN QUERY PLAN on the migrated schema, for the statements the routes build.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.jobstate import ACTIVE
from core.models import ArtifactRow, DatasetRow, JobRow, TeacherRow

ROOT = Path(__file__).resolve().parents[2]


def _plan(session: Session, statement) -> str:
    compiled = statement.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
    return " | ".join(row[-1] for row in session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))


def test_hot_queries_use_ordered_indexes(tmp_path):
    from core.db import make_engine

    url = f"sqlite:///{tmp_path / 'plans.db'}"
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["url"] = url
    command.upgrade(config, "head")
    engine = make_engine(url)
    with Session(engine) as session:
        page = select(JobRow).where(JobRow.tenant_id == "ten_a").order_by(JobRow.id.desc()).limit(51)
        filtered = select(JobRow).where(JobRow.tenant_id == "ten_a", JobRow.status == "queued", JobRow.id < "job_z").order_by(JobRow.id.desc()).limit(51)
        active = select(func.count()).select_from(JobRow).where(JobRow.tenant_id == "ten_a", JobRow.status.in_(ACTIVE))
        expected = {
            "jobs page": (page, "ix_jobs_tenant_id_id"),
            "jobs filtered page": (filtered, "ix_jobs_tenant_status_id"),
            "active-job count": (active, "ix_jobs_tenant_status_id"),
            "teachers page": (select(TeacherRow).where(TeacherRow.tenant_id == "ten_a").order_by(TeacherRow.id.desc()).limit(51), "ix_teachers_tenant_id_id"),
            "datasets page": (select(DatasetRow).where(DatasetRow.tenant_id == "ten_a").order_by(DatasetRow.id.desc()).limit(51), "ix_datasets_tenant_id_id"),
            "job artifacts": (select(ArtifactRow).where(ArtifactRow.job_id == "job_a").order_by(ArtifactRow.id), "ix_artifacts_job_id_id"),
        }
        for label, (statement, index) in expected.items():
            plan = _plan(session, statement)
            assert index in plan, f"{label}: expected {index}, plan was {plan}"
            assert "TEMP B-TREE" not in plan and not plan.startswith("SCAN"), f"{label} sorts or scans: {plan}"
    engine.dispose()

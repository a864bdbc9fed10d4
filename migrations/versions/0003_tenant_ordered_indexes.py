"""indexes that serve the API's queries in order: (tenant_id, id) for list pages, (tenant_id, status, id)
for filtered pages and the active-job count, (job_id, id) for a job's artifacts; they replace the
single-column indexes they start with

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 09:00:00
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# (table, new index, its columns, the indexes it makes redundant and their columns)
CHANGES = [
    ("jobs", "ix_jobs_tenant_id_id", ["tenant_id", "id"], [("ix_jobs_tenant_id", ["tenant_id"])]),
    ("jobs", "ix_jobs_tenant_status_id", ["tenant_id", "status", "id"], [("ix_jobs_tenant_status", ["tenant_id", "status"])]),
    ("teachers", "ix_teachers_tenant_id_id", ["tenant_id", "id"], [("ix_teachers_tenant_id", ["tenant_id"])]),
    ("datasets", "ix_datasets_tenant_id_id", ["tenant_id", "id"], [("ix_datasets_tenant_id", ["tenant_id"])]),
    ("artifacts", "ix_artifacts_job_id_id", ["job_id", "id"], [("ix_artifacts_job_id", ["job_id"])]),
]


def upgrade() -> None:
    for table, name, columns, replaced in CHANGES:
        op.create_index(name, table, columns)
        for old, _ in replaced:
            op.drop_index(old, table_name=table)


def downgrade() -> None:
    for table, name, _, replaced in reversed(CHANGES):
        for old, old_columns in replaced:
            op.create_index(old, table, old_columns)
        op.drop_index(name, table_name=table)

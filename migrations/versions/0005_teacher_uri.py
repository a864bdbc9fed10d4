"""teachers registered by reference keep the URI they came from (models:/… or s3://…)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("teachers") as batch:
        batch.add_column(sa.Column("uri", sa.String(length=2000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("teachers") as batch:
        batch.drop_column("uri")

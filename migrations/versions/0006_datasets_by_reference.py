"""datasets stored as an index (converted shards or registered by reference): layout, format, uri, shards, verified

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 13:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("layout", sa.String(length=16), nullable=False, server_default="archive"))
        batch.add_column(sa.Column("format", sa.String(length=16), nullable=False, server_default="imagefolder"))
        batch.add_column(sa.Column("uri", sa.String(length=2000), nullable=True))
        batch.add_column(sa.Column("shards", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("verified", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        for column in ("verified", "shards", "uri", "format", "layout"):
            batch.drop_column(column)

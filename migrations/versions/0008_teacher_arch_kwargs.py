"""Teachers remember the constructor arguments their architecture was built with (``arch_kwargs``)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("teachers") as batch:
        batch.add_column(sa.Column("arch_kwargs", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("teachers") as batch:
        batch.drop_column("arch_kwargs")

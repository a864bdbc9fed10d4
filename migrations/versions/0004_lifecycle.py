"""lifecycle: a job's current phase and its phase timeline; checkpoints as resources (public ID, 1-based
epoch, metrics at that step, size, whether it closes an epoch)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("phase", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("phases", sa.JSON(), nullable=True))
    op.execute("UPDATE jobs SET phases = '[]'")
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("phases", existing_type=sa.JSON(), nullable=False)

    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("public_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("epoch", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("epoch_end", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("metrics", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("size_bytes", sa.BigInteger(), nullable=True))
    op.execute("UPDATE checkpoints SET public_id = 'ckpt_' || CAST(id AS VARCHAR(20)), epoch_end = false, metrics = '{}'")
    with op.batch_alter_table("checkpoints") as batch:
        batch.alter_column("public_id", existing_type=sa.String(length=40), nullable=False)
        batch.alter_column("epoch_end", existing_type=sa.Boolean(), nullable=False)
        batch.alter_column("metrics", existing_type=sa.JSON(), nullable=False)
        batch.create_index("ix_checkpoints_public_id", ["public_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_index("ix_checkpoints_public_id")
        for column in ("size_bytes", "metrics", "epoch_end", "epoch", "public_id"):
            batch.drop_column(column)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("phases")
        batch.drop_column("phase")

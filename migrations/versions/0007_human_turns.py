"""human turns

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 20:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade the schema."""
    op.create_table(
        "humanturn",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("seat_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("answered_by", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"]),
        sa.ForeignKeyConstraint(["seat_id"], ["seat.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "seat_id", "round", name="uq_humanturn_run_seat_round"),
    )
    with op.batch_alter_table("humanturn", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_humanturn_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_humanturn_status"), ["status"], unique=False)


def downgrade() -> None:
    """Downgrade the schema."""
    with op.batch_alter_table("humanturn", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_humanturn_status"))
        batch_op.drop_index(batch_op.f("ix_humanturn_run_id"))
    op.drop_table("humanturn")

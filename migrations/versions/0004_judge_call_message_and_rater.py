"""judge call message and rater: every judge call is auditable to its message and rater

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 13:09:18.178790
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade the schema."""
    with op.batch_alter_table("llmcall", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rater_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_llmcall_message_id"), ["message_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_llmcall_rater_id"), ["rater_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_llmcall_message_id", "message", ["message_id"], ["id"], use_alter=True
        )
        batch_op.create_foreign_key("fk_llmcall_rater_id", "rater", ["rater_id"], ["id"])


def downgrade() -> None:
    """Downgrade the schema."""
    with op.batch_alter_table("llmcall", schema=None) as batch_op:
        batch_op.drop_constraint("fk_llmcall_rater_id", type_="foreignkey")
        batch_op.drop_constraint("fk_llmcall_message_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_llmcall_rater_id"))
        batch_op.drop_index(batch_op.f("ix_llmcall_message_id"))
        batch_op.drop_column("rater_id")
        batch_op.drop_column("message_id")

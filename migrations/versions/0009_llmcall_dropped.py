"""llmcall.dropped: the sampling parameters the client removed before the call

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 23:10:00

The client removes parameters an endpoint refuses (by default an anthropic endpoint gets no
temperature and no seed; see ``roundtable.providers.params``). ``dropped`` names them,
comma-separated: ``""`` when nothing was removed, ``NULL`` for rows written before this
revision (not recorded) and for calls roundtable did not make.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade the schema."""
    with op.batch_alter_table("llmcall", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dropped", sa.String(), nullable=True))


def downgrade() -> None:
    """Downgrade the schema."""
    with op.batch_alter_table("llmcall", schema=None) as batch_op:
        batch_op.drop_column("dropped")

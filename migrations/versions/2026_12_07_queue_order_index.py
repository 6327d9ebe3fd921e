"""an index in queue order: a queued prediction's standing reads only the jobs ahead of it

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 01:50:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# models.tables.QUEUED_AT, as the index stores it.
QUEUED_AT = "(CASE WHEN (status = 'starting') THEN created_at END)"


def upgrade() -> None:
    """Upgrade schema."""
    # CONCURRENTLY: a farm with a backlog keeps accepting predictions while the index builds.
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_predictions_queue_order",
            "predictions",
            ["model", sa.text(QUEUED_AT), "id"],
            unique=False,
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_predictions_queue_order", table_name="predictions")

"""indexes for a queued prediction's standing: a model's succeeded runs, and its predictions processing

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 01:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # CONCURRENTLY: a farm with a backlog keeps accepting predictions while the indexes build.
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_predictions_model_succeeded",
            "predictions",
            ["model", "completed_at"],
            unique=False,
            postgresql_where=sa.text("status = 'succeeded'"),
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_predictions_model_processing",
            "predictions",
            ["model", "lease_expires_at"],
            unique=False,
            postgresql_where=sa.text("status = 'processing'"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_predictions_model_processing", table_name="predictions")
    op.drop_index("ix_predictions_model_succeeded", table_name="predictions")

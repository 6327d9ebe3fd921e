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

# (name, columns, the rows it holds): what a queued prediction's standing reads (models/queue_eta.py).
STANDING_INDEXES = (
    ("ix_predictions_model_succeeded", ["model", "completed_at"], "status = 'succeeded'"),
    ("ix_predictions_model_processing", ["model", "lease_expires_at"], "status = 'processing'"),
)


def upgrade() -> None:
    """Upgrade schema."""
    # CONCURRENTLY: a farm with a backlog keeps accepting predictions while the indexes build.
    with op.get_context().autocommit_block():
        for name, columns, rows in STANDING_INDEXES:
            op.create_index(
                name, "predictions", columns, unique=False, postgresql_where=sa.text(rows), postgresql_concurrently=True
            )


def downgrade() -> None:
    """Downgrade schema."""
    for name, _, _ in reversed(STANDING_INDEXES):
        op.drop_index(name, table_name="predictions")

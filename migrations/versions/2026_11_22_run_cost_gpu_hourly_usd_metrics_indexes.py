"""run cost: the worker's GPU hourly price per prediction; indexes for /metrics

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 04:34:32.155088

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("predictions", sa.Column("gpu_hourly_usd", sa.Double(), nullable=True))
    # CONCURRENTLY: a farm with history keeps accepting predictions while the indexes build.
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_predictions_completed", "predictions", ["completed_at"], unique=False, postgresql_concurrently=True
        )
        op.create_index(
            "ix_webhook_attempts_attempted_at",
            "webhook_attempts",
            ["attempted_at"],
            unique=False,
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_webhook_attempts_attempted_at", table_name="webhook_attempts")
    op.drop_index("ix_predictions_completed", table_name="predictions")
    op.drop_column("predictions", "gpu_hourly_usd")

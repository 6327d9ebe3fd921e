"""an index for admission: one key's predictions by status

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 01:40:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # CONCURRENTLY: a farm with a backlog keeps accepting predictions while the index builds.
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_predictions_key_status",
            "predictions",
            ["api_key_id", "status"],
            unique=False,
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_predictions_key_status", table_name="predictions")

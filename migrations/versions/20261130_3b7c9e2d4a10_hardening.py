"""hardening: datasets.warnings (look-alike labels)

Revision ID: 3b7c9e2d4a10
Revises: 6ebe4f4ede33
Create Date: 2026-11-30 00:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '3b7c9e2d4a10'
down_revision: str | None = '6ebe4f4ede33'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('datasets') as batch_op:
        batch_op.add_column(sa.Column('warnings', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('datasets') as batch_op:
        batch_op.drop_column('warnings')

"""jobs: dry runs (pre-flight) and what their pre-flight measured

Revision ID: bfb5fd0c3d3c
Revises: 033072cee52d
Create Date: 2026-11-30 06:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'bfb5fd0c3d3c'
down_revision: str | None = '033072cee52d'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dry_run', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('preflight', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('preflight')
        batch_op.drop_column('dry_run')

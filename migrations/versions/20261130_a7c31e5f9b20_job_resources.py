"""job resources and worker device classes: route jobs to the cpu/gpu queues, refuse what no
worker can take

Revision ID: a7c31e5f9b20
Revises: 8d2f4b6a1c93
Create Date: 2026-11-30 03:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'a7c31e5f9b20'
down_revision: str | None = '8d2f4b6a1c93'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('resources', sa.JSON(), nullable=True))
    with op.batch_alter_table('workers') as batch:
        batch.add_column(sa.Column('device', sa.String(length=8), nullable=True))
        batch.add_column(sa.Column('gpus', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('workers') as batch:
        batch.drop_column('gpus')
        batch.drop_column('device')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('resources')

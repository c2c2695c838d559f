"""jobs: crash counter (attempts that ended without progress) and the resume steps it compares

Revision ID: 3c1a9e7d52b4
Revises: 6ebe4f4ede33
Create Date: 2026-11-30 00:20:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '3c1a9e7d52b4'
down_revision: str | None = '6ebe4f4ede33'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('crashes', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('saved_step', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('start_step', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('start_step')
        batch_op.drop_column('saved_step')
        batch_op.drop_column('crashes')

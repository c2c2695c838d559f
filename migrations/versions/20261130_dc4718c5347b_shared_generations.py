"""shared generations: the key-revocation generation in the database (PostgreSQL without Redis)

Revision ID: dc4718c5347b
Revises: 4b8e2d61a9f3
Create Date: 2026-11-30 20:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'dc4718c5347b'
down_revision: str | None = '4b8e2d61a9f3'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'shared_generations',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('value', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_shared_generations')),
    )


def downgrade() -> None:
    op.drop_table('shared_generations')

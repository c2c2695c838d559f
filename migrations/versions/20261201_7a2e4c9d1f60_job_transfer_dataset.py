"""job transfer dataset: jobs.transfer_dataset_id (a distill job's unlabelled transfer set, whose
texts the teacher labels)

Revision ID: 7a2e4c9d1f60
Revises: dc4718c5347b
Create Date: 2026-12-01 14:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '7a2e4c9d1f60'
down_revision: str | None = 'dc4718c5347b'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('transfer_dataset_id', sa.String(length=40), nullable=True))


def downgrade() -> None:
    op.drop_column('jobs', 'transfer_dataset_id')

"""compression: jobs.source_model_id (a distill job's teacher, a prune job's source), and a
model's lineage (models.source_model_id) and compression figures (models.compression)

Revision ID: 5f1d2c8e9a47
Revises: a7c31e5f9b20
Create Date: 2026-11-30 03:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '5f1d2c8e9a47'
down_revision: str | None = 'a7c31e5f9b20'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('source_model_id', sa.String(length=40), nullable=True))
    op.add_column('models', sa.Column('source_model_id', sa.String(length=40), nullable=True))
    op.add_column('models', sa.Column('compression', sa.JSON(), nullable=True))
    op.create_index(op.f('ix_models_source_model_id'), 'models', ['source_model_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_models_source_model_id'), table_name='models')
    op.drop_column('models', 'compression')
    op.drop_column('models', 'source_model_id')
    op.drop_column('jobs', 'source_model_id')

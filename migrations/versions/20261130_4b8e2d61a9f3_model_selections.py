"""model selections: base models ranked by transferability (LogME, k-NN probe) for a dataset

Revision ID: 4b8e2d61a9f3
Revises: bfb5fd0c3d3c
Create Date: 2026-11-30 06:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '4b8e2d61a9f3'
down_revision: str | None = 'bfb5fd0c3d3c'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'model_selections',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('dataset_id', sa.String(length=40), nullable=False),
        sa.Column('candidates', sa.JSON(), nullable=False),
        sa.Column('max_examples', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('results', sa.JSON(), nullable=True),
        sa.Column('error', sa.JSON(), nullable=True),
        sa.Column('worker_id', sa.String(length=255), nullable=True),
        sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'],
                                name=op.f('fk_model_selections_dataset_id_datasets'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_model_selections')),
    )
    op.create_index(op.f('ix_model_selections_dataset_id'), 'model_selections', ['dataset_id'],
                    unique=False)
    op.create_index(op.f('ix_model_selections_status'), 'model_selections', ['status'],
                    unique=False)
    op.create_index(op.f('ix_model_selections_tenant_id'), 'model_selections', ['tenant_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_model_selections_tenant_id'), table_name='model_selections')
    op.drop_index(op.f('ix_model_selections_status'), table_name='model_selections')
    op.drop_index(op.f('ix_model_selections_dataset_id'), table_name='model_selections')
    op.drop_table('model_selections')

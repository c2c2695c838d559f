"""quality_reports: data-quality reports on datasets (alone, or against another dataset),
computed by a worker after the upload

Revision ID: 033072cee52d
Revises: e5a7c3f19b26
Create Date: 2026-11-30 06:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '033072cee52d'
down_revision: str | None = 'e5a7c3f19b26'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'quality_reports',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('dataset_id', sa.String(length=40), nullable=False),
        sa.Column('against_dataset_id', sa.String(length=40), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('summary', sa.JSON(), nullable=True),
        sa.Column('details', sa.JSON(), nullable=True),
        sa.Column('error', sa.JSON(), nullable=True),
        sa.Column('worker_id', sa.String(length=255), nullable=True),
        sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'],
                                name=op.f('fk_quality_reports_dataset_id_datasets'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['against_dataset_id'], ['datasets.id'],
                                name=op.f('fk_quality_reports_against_dataset_id_datasets'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_quality_reports')),
    )
    op.create_index(op.f('ix_quality_reports_dataset_id'), 'quality_reports', ['dataset_id'],
                    unique=False)
    op.create_index(op.f('ix_quality_reports_status'), 'quality_reports', ['status'],
                    unique=False)
    op.create_index(op.f('ix_quality_reports_tenant_id'), 'quality_reports', ['tenant_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_quality_reports_tenant_id'), table_name='quality_reports')
    op.drop_index(op.f('ix_quality_reports_status'), table_name='quality_reports')
    op.drop_index(op.f('ix_quality_reports_dataset_id'), table_name='quality_reports')
    op.drop_table('quality_reports')

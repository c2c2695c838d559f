"""hardening: datasets.warnings (look-alike labels), job_events.seq (per-job event numbers)

Revision ID: 3b7c9e2d4a10
Revises: 3c1a9e7d52b4
Create Date: 2026-11-30 00:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '3b7c9e2d4a10'
down_revision: str | None = '3c1a9e7d52b4'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('datasets') as batch_op:
        batch_op.add_column(sa.Column('warnings', sa.JSON(), nullable=True))
    op.add_column('job_events', sa.Column('seq', sa.Integer(), nullable=True))
    op.execute("UPDATE job_events SET seq = (SELECT count(*) FROM job_events AS e "
               "WHERE e.job_id = job_events.job_id AND e.id <= job_events.id)")
    with op.batch_alter_table('job_events') as batch_op:
        batch_op.alter_column('seq', existing_type=sa.Integer(), nullable=False)
        batch_op.create_unique_constraint('uq_job_events_job_seq', ['job_id', 'seq'])


def downgrade() -> None:
    with op.batch_alter_table('job_events') as batch_op:
        batch_op.drop_constraint('uq_job_events_job_seq', type_='unique')
        batch_op.drop_column('seq')
    with op.batch_alter_table('datasets') as batch_op:
        batch_op.drop_column('warnings')

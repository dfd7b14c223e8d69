"""anomaly score per stage-minute

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('stage_minutes') as batch:
        batch.add_column(sa.Column('anomaly_score', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('stage_minutes') as batch:
        batch.drop_column('anomaly_score')

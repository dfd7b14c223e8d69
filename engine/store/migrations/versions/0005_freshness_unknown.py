"""freshness unknown: pipeline_health.freshness_minutes may be NULL (a real pipeline that published no freshness)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('pipeline_health') as batch:
        batch.alter_column('freshness_minutes', existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE pipeline_health SET freshness_minutes = 'Infinity' WHERE freshness_minutes IS NULL")
    with op.batch_alter_table('pipeline_health') as batch:
        batch.alter_column('freshness_minutes', existing_type=sa.Float(), nullable=False)

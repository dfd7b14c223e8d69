"""execution: proposal policy rule, run leases, pipeline leases, the staging twin's command inbox

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('proposals') as batch:
        batch.add_column(sa.Column('policy_rule', sa.String(length=120), nullable=True))
        batch.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))
        batch.create_index('ix_proposals_pipeline_status', ['pipeline_id', 'status'], unique=False)
    with op.batch_alter_table('action_runs') as batch:
        batch.add_column(sa.Column('incident_id', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('lease_epoch', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('executor', sa.String(length=40), nullable=True))
        batch.create_index('ix_action_runs_pipeline_status', ['pipeline_id', 'status'], unique=False)
    op.create_table('pipeline_leases',
    sa.Column('pipeline_id', sa.String(length=120), nullable=False),
    sa.Column('worker', sa.String(length=120), nullable=False),
    sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('pipeline_id')
    )
    op.create_table('sim_commands',
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('pipeline_id', sa.String(length=120), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('stage', sa.String(length=20), nullable=True),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('submitted_by', sa.String(length=120), nullable=False),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('twin_action', sa.Integer(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_index('ix_sim_commands_status', 'sim_commands', ['status'], unique=False)
    # The audit log is append-only: the database refuses updates and deletes of its rows.
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("""
            CREATE OR REPLACE FUNCTION selfheal_audit_append_only() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'audit_entries is append-only'; END; $$ LANGUAGE plpgsql""")
        op.execute("""CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
                      FOR EACH ROW EXECUTE FUNCTION selfheal_audit_append_only()""")
    else:
        op.execute("""CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
                      BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END""")
        op.execute("""CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
                      BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS audit_entries_append_only ON audit_entries")
        op.execute("DROP FUNCTION IF EXISTS selfheal_audit_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_entries_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_entries_no_delete")
    op.drop_index('ix_sim_commands_status', table_name='sim_commands')
    op.drop_table('sim_commands')
    op.drop_table('pipeline_leases')
    with op.batch_alter_table('action_runs') as batch:
        batch.drop_index('ix_action_runs_pipeline_status')
        for col in ('executor', 'lease_epoch', 'lease_expires_at', 'attempts', 'incident_id'):
            batch.drop_column(col)
    with op.batch_alter_table('proposals') as batch:
        batch.drop_index('ix_proposals_pipeline_status')
        batch.drop_column('updated_at')
        batch.drop_column('policy_rule')

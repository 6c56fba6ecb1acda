"""delivery signature, heartbeat detail

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08 00:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries') as batch_op:
        batch_op.add_column(sa.Column('signature', sa.String(length=64), nullable=True))
    op.create_index('uq_deliveries_endpoint_signature', 'deliveries', ['endpoint', 'signature'], unique=True)
    with op.batch_alter_table('heartbeats') as batch_op:
        batch_op.add_column(sa.Column('detail', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('heartbeats') as batch_op:
        batch_op.drop_column('detail')
    op.drop_index('uq_deliveries_endpoint_signature', table_name='deliveries')
    with op.batch_alter_table('deliveries') as batch_op:
        batch_op.drop_column('signature')

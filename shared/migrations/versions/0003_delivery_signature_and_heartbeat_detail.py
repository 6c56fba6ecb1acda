"""delivery signatures, heartbeat detail

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08 00:20:00
"""
from alembic import op
import sqlalchemy as sa
import shared.models


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('delivery_signatures',
    sa.Column('endpoint', sa.String(length=64), nullable=False),
    sa.Column('signature', sa.String(length=64), nullable=False),
    sa.Column('delivery_id', sa.String(length=255), nullable=False),
    sa.Column('seen_at', shared.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('endpoint', 'signature')
    )
    op.create_index('ix_delivery_signatures_seen_at', 'delivery_signatures', ['seen_at'])
    with op.batch_alter_table('heartbeats') as batch_op:
        batch_op.add_column(sa.Column('detail', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('heartbeats') as batch_op:
        batch_op.drop_column('detail')
    op.drop_index('ix_delivery_signatures_seen_at', table_name='delivery_signatures')
    op.drop_table('delivery_signatures')

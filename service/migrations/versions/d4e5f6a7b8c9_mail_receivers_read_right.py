"""the magnet as a link or an attachment, attachments named for the prospect, Outlook's Thread-Index

Revision ID: d4e5f6a7b8c9
Revises: c3d4e5f6a7b8
Create Date: 2026-12-02 02:00:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'd4e5f6a7b8c9'
down_revision = 'c3d4e5f6a7b8'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('campaign', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delivery', sa.String(length=10), nullable=False, server_default='attach'))
        batch_op.add_column(sa.Column('link_above', sa.Integer(), nullable=True))
    with op.batch_alter_table('asset', schema=None) as batch_op:
        batch_op.add_column(sa.Column('display_name', sa.String(length=255), nullable=True))
    with op.batch_alter_table('outbound', schema=None) as batch_op:
        batch_op.add_column(sa.Column('thread_index', sa.String(length=200), nullable=True))


def downgrade():
    with op.batch_alter_table('outbound', schema=None) as batch_op:
        batch_op.drop_column('thread_index')
    with op.batch_alter_table('asset', schema=None) as batch_op:
        batch_op.drop_column('display_name')
    with op.batch_alter_table('campaign', schema=None) as batch_op:
        batch_op.drop_column('link_above')
        batch_op.drop_column('delivery')

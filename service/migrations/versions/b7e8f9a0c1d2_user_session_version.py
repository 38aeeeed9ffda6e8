"""user session version, so signing out voids old session cookies

Revision ID: b7e8f9a0c1d2
Revises: 9c1d2e3f4a5b
Create Date: 2026-11-26 23:25:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'b7e8f9a0c1d2'
down_revision = '9c1d2e3f4a5b'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), nullable=False, server_default='0'))


def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('session_version')

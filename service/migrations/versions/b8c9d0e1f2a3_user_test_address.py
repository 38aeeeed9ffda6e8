"""each admin's own clock, daily digest hour and test-send address

Revision ID: b8c9d0e1f2a3
Revises: a7b8c9d0e1f2
Create Date: 2026-12-02 06:30:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'b8c9d0e1f2a3'
down_revision = 'a7b8c9d0e1f2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('user') as batch:
        batch.add_column(sa.Column('timezone', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('digest_hour', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('test_address', sa.String(length=320), nullable=True))


def downgrade():
    with op.batch_alter_table('user') as batch:
        batch.drop_column('test_address')
        batch.drop_column('digest_hour')
        batch.drop_column('timezone')

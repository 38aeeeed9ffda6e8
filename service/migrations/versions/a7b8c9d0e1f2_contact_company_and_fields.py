"""a contact's company and custom fields

Revision ID: a7b8c9d0e1f2
Revises: f6a7b8c9d0e1
Create Date: 2026-12-09 06:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'a7b8c9d0e1f2'
down_revision = 'f6a7b8c9d0e1'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('contact') as batch:
        batch.add_column(sa.Column('company', sa.String(length=200), nullable=True))
        # Existing people get no fields rather than NULL, so templates always see a mapping.
        batch.add_column(sa.Column('fields', sa.JSON(), nullable=False, server_default='{}'))


def downgrade():
    with op.batch_alter_table('contact') as batch:
        batch.drop_column('fields')
        batch.drop_column('company')

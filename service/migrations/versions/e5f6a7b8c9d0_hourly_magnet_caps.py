"""the hourly magnet caps count one hour of the ledger by kind and time

Revision ID: e5f6a7b8c9d0
Revises: d4e5f6a7b8c9
Create Date: 2026-12-02 03:00:00

"""
from alembic import op


revision = 'e5f6a7b8c9d0'
down_revision = 'd4e5f6a7b8c9'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_outbound_kind_created_at', 'outbound', ['kind', 'created_at'])


def downgrade():
    op.drop_index('ix_outbound_kind_created_at', table_name='outbound')

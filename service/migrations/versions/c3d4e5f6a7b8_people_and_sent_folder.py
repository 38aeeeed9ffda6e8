"""people have several addresses; mail read from the Sent folder; a campaign's trigger mode; the funnel
counts people; what an inbound message stopped or suppressed, so its correction can undo exactly that

Revision ID: c3d4e5f6a7b8
Revises: b7e8f9a0c1d2
Create Date: 2026-12-01 23:00:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'c3d4e5f6a7b8'
down_revision = 'b7e8f9a0c1d2'
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index('ix_event_kind_created_at', table_name='event')
    op.create_index('ix_event_kind_created_at_contact', 'event', ['kind', 'created_at', 'contact_id'])
    op.create_table(
        'contact_address',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=False),
        sa.Column('address', sa.String(length=320), nullable=False),
        sa.Column('how', sa.String(length=40), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], name='fk_contact_address_contact_id_contact'),
        sa.PrimaryKeyConstraint('id', name='pk_contact_address'),
        sa.UniqueConstraint('address', name='uq_contact_address_address'),
    )
    op.create_index('ix_contact_address_contact_id', 'contact_address', ['contact_id'])
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('folder_role', sa.String(length=10), nullable=False, server_default='inbox'))
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('moved_by_inbound_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('state_before', sa.String(length=20), nullable=True))
    with op.batch_alter_table('suppression', schema=None) as batch_op:
        batch_op.add_column(sa.Column('inbound_id', sa.Integer(), nullable=True))
    with op.batch_alter_table('campaign', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('trigger_mode', sa.String(length=20), nullable=False, server_default='address-or-asked')
        )


def downgrade():
    with op.batch_alter_table('suppression', schema=None) as batch_op:
        batch_op.drop_column('inbound_id')
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.drop_column('state_before')
        batch_op.drop_column('moved_by_inbound_id')
    op.drop_index('ix_event_kind_created_at_contact', table_name='event')
    op.create_index('ix_event_kind_created_at', 'event', ['kind', 'created_at'])
    with op.batch_alter_table('campaign', schema=None) as batch_op:
        batch_op.drop_column('trigger_mode')
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.drop_column('folder_role')
    op.drop_index('ix_contact_address_contact_id', table_name='contact_address')
    op.drop_table('contact_address')

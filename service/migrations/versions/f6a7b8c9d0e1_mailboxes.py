"""mailboxes as records, a lease per mailbox for the poll processes, and the campaign's mailbox

Revision ID: f6a7b8c9d0e1
Revises: e5f6a7b8c9d0
Create Date: 2026-12-02 06:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'f6a7b8c9d0e1'
down_revision = 'e5f6a7b8c9d0'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'mailbox',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('slug', sa.String(length=64), nullable=False),
        sa.Column('from_name', sa.String(length=200), nullable=False),
        sa.Column('from_address', sa.String(length=320), nullable=False),
        sa.Column('imap_host', sa.String(length=255), nullable=True),
        sa.Column('imap_port', sa.Integer(), nullable=True),
        sa.Column('imap_security', sa.String(length=10), nullable=False),
        sa.Column('imap_username', sa.String(length=320), nullable=True),
        sa.Column('imap_folder', sa.String(length=200), nullable=False),
        sa.Column('imap_sent_folder', sa.String(length=200), nullable=True),
        sa.Column('imap_done_folder', sa.String(length=200), nullable=True),
        sa.Column('imap_cafile', sa.String(length=500), nullable=True),
        sa.Column('smtp_host', sa.String(length=255), nullable=True),
        sa.Column('smtp_port', sa.Integer(), nullable=True),
        sa.Column('smtp_security', sa.String(length=10), nullable=False),
        sa.Column('smtp_username', sa.String(length=320), nullable=True),
        sa.Column('smtp_cafile', sa.String(length=500), nullable=True),
        sa.Column('auth_method', sa.String(length=10), nullable=False),
        sa.Column('provider', sa.String(length=20), nullable=True),
        sa.Column('token_url', sa.String(length=500), nullable=True),
        sa.Column('client_id', sa.String(length=500), nullable=True),
        sa.Column('sealed_secrets', sa.Text(), nullable=False),
        sa.Column('sealed_access_token', sa.Text(), nullable=False),
        sa.Column('access_token_expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('per_minute', sa.Integer(), nullable=True),
        sa.Column('per_day', sa.Integer(), nullable=True),
        sa.Column('warmup_days', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('slug'),
    )
    op.create_table(
        'mailbox_lease',
        sa.Column('slug', sa.String(length=64), nullable=False),
        sa.Column('holder', sa.String(length=200), nullable=False),
        sa.Column('token', sa.BigInteger(), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('slug'),
    )
    with op.batch_alter_table('campaign') as batch:
        batch.add_column(sa.Column('mailbox', sa.String(length=64), nullable=False, server_default='default'))
    with op.batch_alter_table('inbound_message') as batch:
        batch.add_column(sa.Column('mailbox_slug', sa.String(length=64), nullable=False, server_default='default'))


def downgrade():
    with op.batch_alter_table('inbound_message') as batch:
        batch.drop_column('mailbox_slug')
    with op.batch_alter_table('campaign') as batch:
        batch.drop_column('mailbox')
    op.drop_table('mailbox_lease')
    op.drop_table('mailbox')

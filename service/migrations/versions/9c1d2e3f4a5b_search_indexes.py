"""indexes that keep the admin fast at 100k contacts

Revision ID: 9c1d2e3f4a5b
Revises: 5a6f249fcc23
Create Date: 2026-11-26 23:20:00

The trigram and pattern indexes are PostgreSQL's (the production database); SQLite
gets the plain one. tests/bench_admin.py measures the pages they serve.
"""
from alembic import op

revision = '9c1d2e3f4a5b'
down_revision = '5a6f249fcc23'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_event_kind_created_at', 'event', ['kind', 'created_at'])
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    # The expression must match contacts.search_text() exactly, or the planner won't use it.
    op.execute("CREATE INDEX ix_contact_search_trgm ON contact USING gin ((email || ' ' || lower(name)) gin_trgm_ops)")
    op.execute("CREATE INDEX ix_contact_domain_prefix ON contact (domain text_pattern_ops)")


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP INDEX IF EXISTS ix_contact_domain_prefix")
        op.execute("DROP INDEX IF EXISTS ix_contact_search_trgm")
    op.drop_index('ix_event_kind_created_at', table_name='event')

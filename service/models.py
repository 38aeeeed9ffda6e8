"""The domain's tables. Behaviour lives in the noun modules (contacts, campaigns, …)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def address_hash(address: str) -> str:
    """The key a suppression is stored under, so erasure can drop the address itself."""
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


class User(UserMixin, db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # Part of the session's user id: bumping it at sign-out voids every copy of the old cookie.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Their own clock (an IANA name); None: the deployment's ADMIN_TIMEZONE.
    timezone: Mapped[str | None] = mapped_column(String(64))
    # The local hour of their daily digest; None: no digest.
    digest_hour: Mapped[int | None] = mapped_column(Integer)
    # Where their campaign test sends go (remembered from the last one); None: their own address.
    test_address: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"


class Contact(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    domain: Mapped[str] = mapped_column(String(255), default="", index=True)
    tags: Mapped[str] = mapped_column(String(500), default="")
    company: Mapped[str | None] = mapped_column(String(200))
    # The consultant's own fields (name → text), for templates as contact.fields.NAME: see contacts.set_fields.
    fields: Mapped[dict] = mapped_column(JSON, default=dict, server_default="{}")
    hot: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    enrollments: Mapped[list[Enrollment]] = relationship(back_populates="contact")
    addresses: Mapped[list[ContactAddress]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", order_by="ContactAddress.id"
    )

    @property
    def first_name(self) -> str | None:
        first = self.name.split()[0] if self.name.strip() else ""
        return first.strip(",\"'") or None


class ContactAddress(db.Model):
    """Another address a person writes from: a Reply-To they asked us to use, a +tag form, an alias."""

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"), index=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    how: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    contact: Mapped[Contact] = relationship(back_populates="addresses")


class Suppression(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    address_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text, default="")
    # The inbound message that caused it (a bounce, an unsubscribe by mail), so only its correction lifts it.
    inbound_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Campaign(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    trigger_addresses: Mapped[list] = mapped_column(JSON, default=list)
    keywords: Mapped[list] = mapped_column(JSON, default=list)
    # "address-or-asked": the trigger address, or mail that names the magnet and asks for it; "address-only".
    trigger_mode: Mapped[str] = mapped_column(String(20), default="address-or-asked", server_default="address-or-asked")
    magnet_subject: Mapped[str] = mapped_column(String(300))
    magnet_text: Mapped[str] = mapped_column(Text)
    magnet_html: Mapped[str | None] = mapped_column(Text)
    window: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # How the magnet travels: "attach", "link" (a signed /d/<token> URL), or "auto" (attach up to
    # link_above bytes in all, link above that).
    delivery: Mapped[str] = mapped_column(String(10), default="attach", server_default="attach")
    link_above: Mapped[int | None] = mapped_column(Integer)
    # The mailbox it answers from and listens in: its From, SMTP and pace (mailboxes.settings_for).
    mailbox: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    steps: Mapped[list[Step]] = relationship(
        order_by="Step.position", cascade="all, delete-orphan", back_populates="campaign"
    )
    assets: Mapped[list[Asset]] = relationship(
        order_by="Asset.position", cascade="all, delete-orphan", back_populates="campaign"
    )


class Step(db.Model):
    __table_args__ = (UniqueConstraint("campaign_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id"))
    position: Mapped[int] = mapped_column(Integer)
    after: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(300))
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)

    campaign: Mapped[Campaign] = relationship(back_populates="steps")


class Asset(db.Model):
    """A magnet attachment, kept in the database so every worker on every machine has it."""

    __table_args__ = (UniqueConstraint("campaign_id", "filename"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    filename: Mapped[str] = mapped_column(String(255))
    # The name the prospect sees on the attachment or download; None: named after the campaign.
    display_name: Mapped[str | None] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))

    campaign: Mapped[Campaign] = relationship(back_populates="assets")


class Enrollment(db.Model):
    __table_args__ = (UniqueConstraint("contact_id", "campaign_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id"), index=True)
    state: Mapped[str] = mapped_column(String(20), default="active", index=True)
    steps_sent: Mapped[int] = mapped_column(Integer, default=0)
    stopped_reason: Mapped[str] = mapped_column(String(300), default="")
    # The inbound message that made the last move, and the state it left: a correction of that message undoes it.
    moved_by_inbound_id: Mapped[int | None] = mapped_column(Integer)
    state_before: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    contact: Mapped[Contact] = relationship(back_populates="enrollments")
    campaign: Mapped[Campaign] = relationship()


class InboundMessage(db.Model):
    """A raw message as it arrived, stored before anything acts on it."""

    __table_args__ = (
        UniqueConstraint("mailbox", "uidvalidity", "uid"),
        UniqueConstraint("mailbox", "source_key"),
        Index("ix_inbound_message_sha256", "sha256"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(200))
    # The mailbox record it arrived in (mailboxes.py); `mailbox` above is the server folder it was read from.
    mailbox_slug: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    # "inbox": mail to the consultant; "sent": what the consultant sent (it may answer a prospect personally).
    folder_role: Mapped[str] = mapped_column(String(10), default="inbox", server_default="inbox")
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int | None] = mapped_column(BigInteger)
    source_key: Mapped[str | None] = mapped_column(String(300))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    arrived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    state: Mapped[str] = mapped_column(String(20), default="new", index=True)
    kind: Mapped[str | None] = mapped_column(String(20), index=True)
    campaign_slug: Mapped[str | None] = mapped_column(String(80))
    reasons: Mapped[list] = mapped_column(JSON, default=list)
    from_address: Mapped[str | None] = mapped_column(String(320), index=True)
    subject: Mapped[str] = mapped_column(String(998), default="")
    new_text: Mapped[str] = mapped_column(Text, default="")
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    acked: Mapped[bool] = mapped_column(Boolean, default=False)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Mailbox(db.Model):
    """A mailbox the desk answers from, beside `default` (the one the IMAP_*/SMTP_* settings describe).

    Secrets (password, OAuth2 client secret, refresh and access tokens) are sealed: see mailboxes.seal.
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    from_name: Mapped[str] = mapped_column(String(200), default="")
    from_address: Mapped[str] = mapped_column(String(320))
    imap_host: Mapped[str | None] = mapped_column(String(255))
    imap_port: Mapped[int | None] = mapped_column(Integer)
    imap_security: Mapped[str] = mapped_column(String(10), default="ssl")
    imap_username: Mapped[str | None] = mapped_column(String(320))
    imap_folder: Mapped[str] = mapped_column(String(200), default="INBOX")
    imap_sent_folder: Mapped[str | None] = mapped_column(String(200))
    imap_done_folder: Mapped[str | None] = mapped_column(String(200))
    imap_cafile: Mapped[str | None] = mapped_column(String(500))
    smtp_host: Mapped[str | None] = mapped_column(String(255))
    smtp_port: Mapped[int | None] = mapped_column(Integer)
    smtp_security: Mapped[str] = mapped_column(String(10), default="starttls")
    smtp_username: Mapped[str | None] = mapped_column(String(320))
    smtp_cafile: Mapped[str | None] = mapped_column(String(500))
    auth_method: Mapped[str] = mapped_column(String(10), default="password")  # "password" | "xoauth2"
    provider: Mapped[str | None] = mapped_column(String(20))  # "google" | "microsoft" | "custom"
    token_url: Mapped[str | None] = mapped_column(String(500))
    client_id: Mapped[str | None] = mapped_column(String(500))
    sealed_secrets: Mapped[str] = mapped_column(Text, default="")
    sealed_access_token: Mapped[str] = mapped_column(Text, default="")
    access_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    per_minute: Mapped[int | None] = mapped_column(Integer)
    per_day: Mapped[int | None] = mapped_column(Integer)
    warmup_days: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class MailboxLease(db.Model):
    """Which poll process serves a mailbox: one holder at a time, taken over when it stops renewing.

    `token` grows with every new holder (a fencing token), so a holder that paused past its lease can
    tell it lost the mailbox.
    """

    slug: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200), default="")
    token: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MailboxState(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(200), unique=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger, default=0)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    first_connected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Outbound(db.Model):
    """The ledger: one row per intended send, keyed so it can exist only once."""

    # kind + created_at: the hourly magnet caps count one hour of magnets, never the whole ledger.
    __table_args__ = (Index("ix_outbound_state_due", "state", "due_at"),
                      Index("ix_outbound_kind_created_at", "kind", "created_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"), index=True)
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollment.id"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id"))
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_message.id"))
    step_position: Mapped[int | None] = mapped_column(Integer)
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(998), default="")
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[str] = mapped_column(Text, default="")
    # Outlook's Thread-Index (MS-OXOMSG 2.2.1.3), base64: a reply extends its parent's.
    thread_index: Mapped[str | None] = mapped_column(String(200))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    state: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    smtp_response: Mapped[str] = mapped_column(Text, default="")
    note: Mapped[str] = mapped_column(Text, default="")
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Event(db.Model):
    """One line of a contact's timeline: what happened and why."""

    # contact_id last: the funnel counts people per step from this index alone.
    __table_args__ = (Index("ix_event_kind_created_at_contact", "kind", "created_at", "contact_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_message.id"))
    outbound_id: Mapped[int | None] = mapped_column(ForeignKey("outbound.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

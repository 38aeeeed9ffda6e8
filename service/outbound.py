"""The outbound ledger: one row per intended send, claimed atomically, never sent twice.

States: pending → sending → sent | failed | unknown, or pending → cancelled.
A row left in `sending` by a crash becomes `unknown` and is never resent blindly,
because SMTP cannot tell us whether the server already took it (RFC 1047).
This module is the ledger only; what a sequence sends next is `enrollments`' business.
"""

from __future__ import annotations

import base64
import binascii
import os
import random
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import make_msgid

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .models import Event, InboundMessage, Outbound, utcnow

PENDING, SENDING, SENT, FAILED, CANCELLED, UNKNOWN = (
    "pending", "sending", "sent", "failed", "cancelled", "unknown",
)
# RFC 5322 §3.6.4 allows trimming a long References: keep the first and the most recent ids.
REFERENCES_KEPT = 20
SUBJECT_MAX = 998  # outbound.subject's size
# MS-OXOMSG 2.2.1.3: a 22-byte header block, then 5 bytes per reply. Past this many bytes a thread
# someone else started deep is not extended further (Outlook still threads on the topic).
THREAD_INDEX_MAX = 120
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


class LimitError(ValueError):
    """A send that the per-recipient limit forbids right now."""


def new_message_id(domain: str) -> str:
    return make_msgid(domain=domain).strip("<>")


def thread_subject(subject: str, fallback: str) -> str:
    """Gmail threads only when the subject stays the same, so answers keep `Re: <theirs>`."""
    subject = " ".join(subject.split())
    if not subject:
        return fallback[:SUBJECT_MAX]
    # The column holds 998 characters (one RFC 5322 line); "Re: " must not push a long one past it.
    return (subject if subject.lower().startswith(("re:", "aw:", "sv:")) else f"Re: {subject}")[:SUBJECT_MAX]


def references(chain: list[str]) -> str:
    """The References value for a thread of Message-IDs (oldest first), trimmed the RFC 5322 way."""
    ids = list(dict.fromkeys(i.strip("<>") for i in chain if i))
    if len(ids) > REFERENCES_KEPT:
        ids = [ids[0], *ids[-(REFERENCES_KEPT - 1):]]
    return " ".join(f"<{i}>" for i in ids)


def _filetime(moment: datetime) -> int:
    """Windows FILETIME: 100-nanosecond intervals since 1601-01-01 UTC."""
    delta = moment - _FILETIME_EPOCH
    return (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def _index_bytes(text: str | None) -> bytes | None:
    """A Thread-Index's bytes, if it is well formed (22 bytes, then whole 5-byte reply blocks)."""
    try:
        raw = base64.b64decode((text or "").strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) >= 22 and (len(raw) - 22) % 5 == 0 and raw[0] == 1 else None


def thread_index(parent: str | None, now: datetime | None = None) -> str:
    """Outlook's Thread-Index as Outlook builds it (MS-OXOMSG 2.2.1.3): a reply extends its parent's
    index by a 5-byte block holding the time since the thread began; with no usable parent, a new
    thread: 0x01, the top 40 bits of the FILETIME and a random GUID."""
    now_ft = _filetime(now or utcnow())
    above = _index_bytes(parent)
    if above is None:
        return base64.b64encode(b"\x01" + (now_ft >> 24).to_bytes(5, "big") + uuid.uuid4().bytes).decode()
    if len(above) + 5 > THREAD_INDEX_MAX:
        return base64.b64encode(above).decode()
    delta = max(now_ft - (int.from_bytes(above[1:6], "big") << 24), 0)
    # Delta code 0: bits 18..48 of the difference; 1 (more than about 1.7 years): bits 23..53.
    block = (delta >> 18) & 0x7FFFFFFF if delta < 1 << 49 else (1 << 31) | ((delta >> 23) & 0x7FFFFFFF)
    return base64.b64encode(above + block.to_bytes(4, "big") + os.urandom(1)).decode()


def under(parent: Outbound | None) -> list[str]:
    """RFC 5322 §3.6.4: a child's References are the parent's References plus the parent's Message-ID."""
    if parent is None:
        return []
    return [*parent.references.split(), parent.message_id]


def find(session: Session, key: str) -> Outbound | None:
    return session.scalar(select(Outbound).where(Outbound.key == key))


def _own_index(session: Session, message_id: str | None) -> str | None:
    """The Thread-Index of one of our sends, found by its Message-ID."""
    if not message_id:
        return None
    return session.scalar(select(Outbound.thread_index).where(Outbound.message_id == message_id.strip("<>")))


def plan(
    session: Session, key: str, kind: str, to: str, domain: str, subject: str,
    parent: str | None = None, chain: list[str] | None = None, due_at: datetime | None = None,
    parent_index: str | None = None, **links,
) -> Outbound:
    """The one constructor of a ledger row: its key, a new Message-ID, and its place in a thread.

    `parent` is the Message-ID it answers, `chain` the thread above it (oldest first), `parent_index`
    the answered mail's Thread-Index (ours are looked up). Planning the same key twice returns the
    first row, so a message processed twice is sent once.
    """
    row = find(session, key)
    if row:
        return row
    row = Outbound(
        key=key, kind=kind, to_address=to, message_id=new_message_id(domain), subject=subject,
        in_reply_to=parent.strip("<>") if parent else None, references=references([*(chain or []), parent or ""]),
        thread_index=thread_index(parent_index or _own_index(session, parent)), due_at=due_at or utcnow(), **links,
    )
    session.add(row)
    session.flush()
    return row


def recent_magnet(session: Session, contact_id: int, days: int) -> Outbound | None:
    """The magnet sent (or on its way) to this person within `days`, if any."""
    since = utcnow() - timedelta(days=days)
    query = (
        select(Outbound)
        .where(
            Outbound.contact_id == contact_id, Outbound.kind == "magnet",
            Outbound.state.in_((PENDING, SENDING, SENT, UNKNOWN)), Outbound.created_at >= since,
        )
        .order_by(Outbound.id.desc())
    )
    return session.scalars(query).first()


def magnets_since(
    session: Session, since: datetime, from_address: str | None = None, from_domain: str | None = None,
    to_domain: str | None = None,
) -> int:
    """Magnets planned since `since`, for requests from one address or domain, or to one domain."""
    query = select(func.count(Outbound.id)).where(Outbound.kind == "magnet", Outbound.created_at >= since)
    if from_address or from_domain:
        query = query.join(InboundMessage, InboundMessage.id == Outbound.inbound_id)
    if from_address:
        query = query.where(InboundMessage.from_address == from_address)
    if from_domain:
        query = query.where(InboundMessage.from_address.like(f"%@{_like(from_domain)}", escape="\\"))
    if to_domain:
        query = query.where(Outbound.to_address.like(f"%@{_like(to_domain)}", escape="\\"))
    return session.scalar(query)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def last_sent(session: Session, enrollment_id: int) -> Outbound | None:
    return session.scalars(
        select(Outbound).where(Outbound.enrollment_id == enrollment_id, Outbound.state == SENT)
        .order_by(Outbound.sent_at.desc())
    ).first()


def last_magnet(session: Session, enrollment_id: int) -> Outbound | None:
    return session.scalars(
        select(Outbound).where(Outbound.enrollment_id == enrollment_id, Outbound.kind == "magnet")
        .order_by(Outbound.id.desc())
    ).first()


def count_keys(session: Session, prefix: str) -> int:
    return session.scalar(select(func.count(Outbound.id)).where(Outbound.key.like(f"{prefix}%")))


def pending_followups(session: Session, enrollment_id: int) -> list[Outbound]:
    query = select(Outbound).where(
        Outbound.enrollment_id == enrollment_id, Outbound.state == PENDING, Outbound.kind == "followup"
    )
    return list(session.scalars(query))


def cancel_followups(session: Session, enrollment_id: int, why: str) -> None:
    """Only follow-ups: a magnet someone asked for still goes (the claim re-checks suppression)."""
    session.execute(
        update(Outbound)
        .where(Outbound.enrollment_id == enrollment_id, Outbound.state == PENDING, Outbound.kind == "followup")
        .values(state=CANCELLED, note=why)
    )


def claim(session: Session, row_id: int, now: datetime | None = None) -> Outbound | None:
    """Atomically take a due pending row; only one worker can ever win it."""
    now = now or utcnow()
    won = session.execute(
        update(Outbound)
        .where(Outbound.id == row_id, Outbound.state == PENDING, Outbound.due_at <= now)
        .values(state=SENDING, claimed_at=now, attempts=Outbound.attempts + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        return None
    row = session.get(Outbound, row_id)
    session.refresh(row)
    return row


def breaker(session: Session, settings: dict, now: datetime | None = None) -> str | None:
    """Why all sending should pause (too many hard bounces or complaints in 24 h), or None.

    A mailbox that keeps sending into bad addresses or spam complaints loses its reputation
    for every prospect; better to stop and let the consultant look (the dashboard says why).
    """
    now = now or utcnow()
    since = now - timedelta(hours=24)
    sends = session.scalar(select(func.count(Outbound.id)).where(Outbound.state == SENT, Outbound.sent_at >= since))
    if sends < settings["BREAKER_MIN_SENDS"]:
        return None
    kinds = dict(session.execute(
        select(Event.kind, func.count(Event.id))
        .where(Event.kind.in_(("bounce_hard", "complaint")), Event.created_at >= since).group_by(Event.kind)
    ).all())
    bounces, complaints = kinds.get("bounce_hard", 0), kinds.get("complaint", 0)
    if bounces * 100 > settings["BREAKER_BOUNCE_PERCENT"] * sends:
        return f"sending paused: {bounces} hard bounces for {sends} sends in 24 h"
    if complaints * 1000 > settings["BREAKER_COMPLAINT_PER_THOUSAND"] * sends:
        return f"sending paused: {complaints} spam complaints for {sends} sends in 24 h"
    return None


def cancel(row: Outbound, why: str) -> None:
    row.state = CANCELLED
    row.note = why


def revive(row: Outbound, why: str) -> None:
    """A cancelled, never-sent row goes again (a resumed sequence), not a copy of it."""
    row.state, row.note, row.due_at = PENDING, why, max(row.due_at, utcnow())


def mark_sent(row: Outbound, response: str) -> None:
    row.state = SENT
    row.sent_at = utcnow()
    row.smtp_response = response


def retry_later(row: Outbound, error: str, limit: int, base: float = 30) -> bool:
    """Put a temporarily failed row back with exponential backoff and jitter; False when out of tries."""
    row.smtp_response = error
    if row.attempts >= limit:
        row.state = FAILED
        return False
    row.state = PENDING
    delay = min(3600, base * 2 ** (row.attempts - 1)) * random.uniform(0.8, 1.2)
    row.due_at = utcnow() + timedelta(seconds=delay)
    return True


def defer(row: Outbound, until: datetime, why: str) -> None:
    """Hand a claimed row back untouched, to go at `until` (window closed, pace reached)."""
    row.state = PENDING
    row.attempts -= 1
    row.due_at = until
    row.note = why


def mark_unknown(row: Outbound, why: str) -> None:
    """The server may or may not have the message: show it, never resend it blindly."""
    row.state = UNKNOWN
    row.note = why


def skip(row: Outbound, why: str) -> None:
    """Never sent, on purpose, and shown with the failures so someone looks."""
    row.state = FAILED
    row.note = why


def fail(row: Outbound, error: str) -> None:
    row.state = FAILED
    row.smtp_response = error


def due(session: Session, now: datetime | None = None, limit: int = 500) -> list[Outbound]:
    """Pending rows whose time has come (the reconciler queues them again after a Redis loss)."""
    query = (
        select(Outbound)
        .where(Outbound.state == PENDING, Outbound.due_at <= (now or utcnow()))
        .order_by(Outbound.due_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def expire_stuck(session: Session, older_than: timedelta) -> list[Outbound]:
    """Rows left in `sending` by a crashed worker become `unknown`: shown, never resent blindly."""
    cutoff = utcnow() - older_than
    rows = list(
        session.scalars(select(Outbound).where(Outbound.state == SENDING, Outbound.claimed_at < cutoff))
    )
    for row in rows:
        mark_unknown(row, "worker stopped mid-send; the server may or may not have accepted it")
    return rows


def sent_ids(session: Session, message_ids: tuple[str, ...]) -> list[Outbound]:
    """Our rows that an inbound message refers to (In-Reply-To / References), oldest first."""
    if not message_ids:
        return []
    query = select(Outbound).where(Outbound.message_id.in_(message_ids)).order_by(Outbound.id)
    return list(session.scalars(query))

"""The admin's read side of contacts: search, keyset pages, the timeline and "why did or didn't this send?".

Nothing here changes a contact; `contacts` does that.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, String, and_, func, literal, literal_column, or_, select
from sqlalchemy.orm import Session, defer, selectinload

from .contacts import normalise_tags, suppression
from .enrollments import STATES as ENROLLMENT_STATES
from .models import Contact, Enrollment, Event, InboundMessage, Outbound, Suppression, utcnow

PAGE_SIZE = 50
COUNT_BOUND = 10_000
# sort name → (column, newest/largest first?)
SORTS = {
    "recent": ("last_activity_at", True),
    "newest": ("created_at", True),
    "email": ("email", False),
    "name": ("name", False),
}


@dataclass(frozen=True)
class Filters:
    """What the contact list is narrowed to: free text, an enrollment state, a campaign, a tag."""

    text: str = ""
    state: str = ""
    campaign_id: int | None = None
    tag: str = ""
    sort: str = "recent"


@dataclass
class Page:
    """One page of contacts, the cursors around it, and how many match (counted up to a bound)."""

    contacts: list[Contact]
    after: str | None
    before: str | None
    count: int

    @property
    def count_is_bounded(self) -> bool:
        return self.count > COUNT_BOUND


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_text():
    """The one expression free-text search runs on (address, which holds the domain, and name).

    One expression so one trigram index (PostgreSQL pg_trgm) can serve it.
    """
    # The space is inlined, not bound: a bind parameter would not match the index's expression.
    return Contact.email.op("||")(literal_column("' '")).op("||")(func.lower(Contact.name))


_DOMAIN = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)+$")


def _text_match(text: str):
    """A substring of the address or name (trigram index); text shaped like a domain ("acme.co")
    also matches company domains by prefix (btree index)."""
    anywhere = search_text().like(_pattern(f"%{_like(text)}%"), escape="\\")
    if _DOMAIN.match(text):  # "john.smith" looks like a domain too: match either way
        return or_(Contact.domain.like(_pattern(f"{_like(text)}%"), escape="\\"), anywhere)
    return anywhere


def _pattern(value: str):
    # Inlined into the SQL (safely quoted): PostgreSQL's generic plan for a prepared `LIKE $1` cannot use
    # the prefix or trigram index, and psycopg prepares a statement after five runs.
    return literal(value, String, literal_execute=True)


def matching(filters: Filters) -> Select:
    """Contacts that match the filters, unordered."""
    query = select(Contact)
    if filters.text.strip():
        query = query.where(_text_match(filters.text.strip().lower()))
    if filters.state == "hot":
        query = query.where(Contact.hot)
    elif filters.state == "suppressed":
        query = query.where(Contact.email.in_(select(Suppression.email).where(Suppression.email.is_not(None))))
    if filters.state in ENROLLMENT_STATES or filters.campaign_id:
        enrolled = select(Enrollment.id).where(Enrollment.contact_id == Contact.id)
        if filters.state in ENROLLMENT_STATES:
            enrolled = enrolled.where(Enrollment.state == filters.state)
        if filters.campaign_id:
            enrolled = enrolled.where(Enrollment.campaign_id == filters.campaign_id)
        query = query.where(enrolled.exists())
    tags = normalise_tags(filters.tag)
    if tags:
        query = query.where((literal(",") + Contact.tags + literal(",")).like(f"%,{_like(tags[0])},%", escape="\\"))
    return query


def page(session: Session, filters: Filters, after: str | None = None, before: str | None = None,
         size: int = PAGE_SIZE) -> Page:
    """A keyset page: no OFFSET and no unbounded COUNT, so it stays fast at any size."""
    name, descending = SORTS.get(filters.sort, SORTS["recent"])
    column = getattr(Contact, name)
    cursor = _read_cursor(before or after, name)
    backwards = before is not None and cursor is not None
    query = matching(filters).options(selectinload(Contact.enrollments))
    if cursor is not None:
        query = query.where(_beyond(column, cursor, descending != backwards))
    order = (column.desc(), Contact.id.desc()) if descending != backwards else (column.asc(), Contact.id.asc())
    rows = list(session.scalars(query.order_by(*order).limit(size + 1)))
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
    has_next, has_prev = (True, more) if backwards else (more, cursor is not None)
    return Page(
        contacts=rows,
        after=_cursor(rows[-1], name) if rows and has_next else None,
        before=_cursor(rows[0], name) if rows and has_prev else None,
        count=count(session, filters),
    )


def count(session: Session, filters: Filters, bound: int = COUNT_BOUND) -> int:
    """How many contacts match, counted no further than `bound` + 1."""
    ids = matching(filters).with_only_columns(Contact.id).limit(bound + 1).subquery()
    return session.scalar(select(func.count()).select_from(ids))


def _beyond(column, cursor: tuple, descending: bool):
    """Rows strictly after the cursor; the plain `column <=`/`>=` bound lets the index do the work."""
    value, last_id = cursor
    if descending:
        return and_(column <= value, or_(column < value, and_(column == value, Contact.id < last_id)))
    return and_(column >= value, or_(column > value, and_(column == value, Contact.id > last_id)))


def _cursor(contact: Contact, name: str) -> str:
    value = getattr(contact, name)
    raw = json.dumps([value.isoformat() if isinstance(value, datetime) else value, contact.id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _read_cursor(text: str | None, name: str) -> tuple | None:
    """The (value, id) a cursor points at; None for a missing or tampered cursor."""
    if not text:
        return None
    try:
        value, last_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if name.endswith("_at"):
            value = datetime.fromisoformat(value)
        if not isinstance(last_id, int) or not isinstance(value, str | datetime):
            return None
    except (ValueError, TypeError):
        return None
    return value, last_id


@dataclass
class Entry:
    """One line of a contact's timeline: mail in, mail out, or an event."""

    at: datetime
    kind: str
    item: InboundMessage | Outbound | Event


def timeline(session: Session, contact: Contact, limit: int = 200) -> list[Entry]:
    """Everything that happened to and for the contact, newest first (raw bytes left unloaded)."""
    inbound = session.scalars(
        select(InboundMessage).options(defer(InboundMessage.raw))
        .where(InboundMessage.contact_id == contact.id).order_by(InboundMessage.id.desc()).limit(limit)
    )
    sent = session.scalars(
        select(Outbound).options(defer(Outbound.raw))
        .where(Outbound.contact_id == contact.id).order_by(Outbound.id.desc()).limit(limit)
    )
    events = session.scalars(
        select(Event).where(Event.contact_id == contact.id).order_by(Event.id.desc()).limit(limit)
    )
    entries = [Entry(m.arrived_at or m.stored_at, "in", m) for m in inbound]
    entries += [Entry(o.sent_at or o.created_at, "out", o) for o in sent]
    entries += [Entry(e.created_at, "event", e) for e in events]
    return sorted(entries, key=lambda e: e.at, reverse=True)[:limit]


def explain(session: Session, contact: Contact, repeat_days: int) -> list[str]:
    """Plain sentences answering "why did or didn't this send?" for the contact, most decisive first."""
    lines = []
    held = suppression(session, contact.email)
    if held:
        lines.append(f"Nothing is sent to this address: suppressed on {held.created_at:%Y-%m-%d} "
                     f"({held.reason}{': ' + held.detail if held.detail else ''}).")
    for enrollment in contact.enrollments:
        lines.append(_explain_enrollment(session, enrollment))
    last = _last_magnet(session, contact)
    if last and last.created_at >= utcnow() - timedelta(days=repeat_days):
        until = last.created_at + timedelta(days=repeat_days)
        lines.append(f"A magnet was planned on {last.created_at:%Y-%m-%d %H:%M} UTC: a new request before "
                     f"{until:%Y-%m-%d %H:%M} UTC gets no second copy ({repeat_days}-day limit).")
    if not lines:
        lines.append("Not in any campaign yet: nothing is planned for this address.")
    return lines


def _explain_enrollment(session: Session, enrollment: Enrollment) -> str:
    campaign = enrollment.campaign
    head = f"{campaign.name}: {enrollment.state}"
    if enrollment.stopped_reason and enrollment.state != "active":
        head += f" ({enrollment.stopped_reason})"
    if not campaign.active:
        return f"{head}. The campaign is paused, so nothing of it goes out."
    pending = session.scalars(
        select(Outbound).options(defer(Outbound.raw))
        .where(Outbound.enrollment_id == enrollment.id, Outbound.state == "pending").order_by(Outbound.due_at)
    ).first()
    if pending:
        window = f", inside the window {campaign.window} {campaign.timezone}" if campaign.window else ""
        return f"{head}. Next: {pending.kind} due {pending.due_at:%Y-%m-%d %H:%M} UTC{window}."
    if enrollment.state == "active":
        return f"{head}. {enrollment.steps_sent} of {len(campaign.steps)} follow-ups sent; nothing is scheduled."
    return f"{head}. No further follow-ups will be sent."


def _last_magnet(session: Session, contact: Contact) -> Outbound | None:
    return session.scalars(
        select(Outbound).options(defer(Outbound.raw))
        .where(Outbound.contact_id == contact.id, Outbound.kind == "magnet",
               Outbound.state.in_(("pending", "sending", "sent", "unknown")))
        .order_by(Outbound.id.desc()).limit(1)
    ).first()

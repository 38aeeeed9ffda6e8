"""The daily digest: once a day, at the hour an admin picked on their own clock, what needs them.

New hot leads with their own words, requests, sends that failed or whose fate is unknown, Review
items waiting, and the day's funnel, with links into the admin. A day with nothing to say sends
nothing. A digest is a ledger row keyed by admin and local day, so it goes once, through the same
claim, pace and retries as every other send; its bytes are built when it is planned (what the
consultant reads is that moment's picture) and sent as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import render_template
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import mailer, stats
from .models import Contact, Event, InboundMessage, Outbound, User, utcnow

KIND = "digest"
WORDS_SHOWN = 400  # characters of a hot lead's latest words
LEADS_SHOWN = 10


@dataclass
class Lead:
    contact: Contact
    words: str


@dataclass
class Digest:
    """What one admin's digest says for one local day."""

    day: str
    leads: list[Lead] = field(default_factory=list)
    requests: int = 0
    problems: int = 0
    review: int = 0
    funnel: list[tuple[str, int]] = field(default_factory=list)

    def says_anything(self) -> bool:
        return bool(self.leads or self.requests or self.problems or self.review)

    def subject(self) -> str:
        parts = [(len(self.leads), "hot lead", "hot leads"), (self.requests, "request", "requests"),
                 (self.problems, "send to check", "sends to check"), (self.review, "in Review", "in Review")]
        said = ", ".join(f"{n} {one if n == 1 else many}" for n, one, many in parts if n)
        return f"Follow-Through, {self.day}: {said}"


def zone_of(user: User, settings: dict) -> ZoneInfo:
    try:
        return ZoneInfo(getattr(user, "timezone", None) or settings["ADMIN_TIMEZONE"])
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def plan_due(session: Session, settings: dict, now: datetime | None = None) -> list[Outbound]:
    """A digest row for each admin whose digest hour has come today on their clock and who has none yet."""
    now = now or utcnow()
    rows = []
    for user in session.scalars(select(User).where(User.digest_hour.is_not(None)).order_by(User.id)):
        local = now.astimezone(zone_of(user, settings))
        key = f"{KIND}:{user.id}:{local.date().isoformat()}"
        if local.hour < user.digest_hour or session.scalar(select(Outbound.id).where(Outbound.key == key)):
            continue
        found = gather(session, user, settings, now)
        if found.says_anything():
            rows.append(_row(session, user, key, found, settings))
    return rows


def gather(session: Session, user: User, settings: dict, now: datetime) -> Digest:
    """Since this admin's last digest (or a day), and today's funnel on their clock."""
    zone = zone_of(user, settings)
    last = session.scalar(select(func.max(Outbound.created_at))
                          .where(Outbound.kind == KIND, Outbound.to_address == user.email))
    since = last or now - timedelta(days=1)
    found = Digest(
        day=f"{now.astimezone(zone):%a %-d %b}",
        leads=_leads(session, since),
        requests=session.scalar(select(func.count()).select_from(Event)
                                .where(Event.kind == "request", Event.created_at >= since)) or 0,
        problems=stats.problem_count(session),
        review=stats.review_count(session),
    )
    if found.says_anything():  # asked every minute of a quiet day: the funnel only when it will be sent
        activity = stats.activity(session, now, zone)
        found.funnel = [(label, activity.total(label, 1)) for label, _ in stats.FUNNEL[:stats.MAIN_STEPS]]
    return found


def _leads(session: Session, since: datetime) -> list[Lead]:
    hot = session.scalars(select(Contact).where(Contact.hot, Contact.last_activity_at >= since)
                          .order_by(Contact.last_activity_at.desc()).limit(LEADS_SHOWN))
    return [Lead(c, _latest_words(session, c)) for c in hot]


def _latest_words(session: Session, contact: Contact) -> str:
    words = session.scalar(select(InboundMessage.new_text).where(InboundMessage.contact_id == contact.id)
                           .order_by(InboundMessage.id.desc()).limit(1)) or ""
    words = " ".join(words.split())
    return words if len(words) <= WORDS_SHOWN else words[:WORDS_SHOWN].rsplit(" ", 1)[0] + " …"


def _row(session: Session, user: User, key: str, found: Digest, settings: dict) -> Outbound:
    domain = settings["MAIL_DOMAIN"]
    message_id = make_msgid(domain=domain)[1:-1]
    row = Outbound(key=key, kind=KIND, to_address=user.email, subject=found.subject(), message_id=message_id,
                   due_at=utcnow())
    row.raw = mailer.to_bytes(_message(row, found, settings), settings)
    session.add(row)
    session.flush()
    return row


def _message(row: Outbound, found: Digest, settings: dict) -> EmailMessage:
    msg = EmailMessage(policy=mailer.POLICY)
    msg["From"] = settings["MAIL_FROM"]
    msg["To"] = mailer.wire_address(row.to_address)
    msg["Subject"] = mailer.header_text(row.subject, mailer.SUBJECT_MAX)
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = f"<{row.message_id}>"
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no one's auto-reply should answer it
    msg[mailer.LOOP_HEADER] = settings["MAIL_DOMAIN"]
    parts = {"d": found, "admin": settings["BASE_URL"] + "/admin"}
    msg.set_content(mailer.flowed(render_template("email/digest.jinja", html=False, **parts)),
                    params={"format": "flowed"}, cte="quoted-printable")
    msg.add_alternative(render_template("email/digest.jinja", html=True, **parts), subtype="html",
                        cte="quoted-printable")
    return msg

"""Numbers for the admin: the funnel, a daily series, what failed, per-campaign counts.

Every query here is bounded (a date range on an indexed column, a LIMIT, or a
count that stops early), so the dashboard stays fast with 100,000 contacts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer

from .models import Campaign, Contact, Enrollment, Event, InboundMessage, MailboxState, Outbound, utcnow

WINDOWS = (7, 30, 90)
CHART_DAYS = 30
PROBLEM_STATES = ("failed", "unknown")
REVIEW_STATES = ("review", "quarantined")
# The funnel's rows: label → the timeline events it counts.
FUNNEL = (
    ("Requests", ("request",)),
    ("Magnets sent", ("magnet_sent",)),
    ("Follow-ups sent", ("followup_sent",)),
    ("Replies", ("replied",)),
    ("Unsubscribes", ("unsubscribed",)),
    ("Bounces", ("bounce_hard", "bounce_soft")),
)
_FUNNEL_KINDS = tuple(kind for _, kinds in FUNNEL for kind in kinds)


@dataclass
class Activity:
    """Events per kind per UTC day over the longest window, plus complaints per day."""

    today: date
    per_day: dict[str, dict[date, int]] = field(default_factory=dict)

    def total(self, kinds: tuple[str, ...], days: int) -> int:
        since = self.today - timedelta(days=days - 1)
        return sum(n for kind in kinds for day, n in self.per_day.get(kind, {}).items() if day >= since)

    def funnel(self) -> list[tuple[str, list[int]]]:
        rows = [(label, [self.total(kinds, d) for d in WINDOWS]) for label, kinds in FUNNEL]
        return [*rows, ("Complaints", [self.total(("complaint",), d) for d in WINDOWS])]

    def series(self, days: int = CHART_DAYS) -> list[tuple[date, int, int]]:
        """(day, requests, replies) for each of the last `days` days, oldest first."""
        first = self.today - timedelta(days=days - 1)
        requests, replies = self.per_day.get("request", {}), self.per_day.get("replied", {})
        return [(d, requests.get(d, 0), replies.get(d, 0)) for d in (first + timedelta(n) for n in range(days))]


def _day(session: Session, column):
    """The UTC calendar day of a timestamp column, on SQLite and PostgreSQL."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def activity(session: Session, now: datetime | None = None) -> Activity:
    """One grouped scan of the last 90 days of events (and complaints), for the funnel and the chart."""
    now = now or utcnow()
    since = datetime.combine((now - timedelta(days=max(WINDOWS) - 1)).date(), datetime.min.time(), now.tzinfo)
    result = Activity(today=now.date())
    day = _day(session, Event.created_at)
    events = session.execute(
        select(Event.kind, day, func.count())
        .where(Event.created_at >= since, Event.kind.in_(_FUNNEL_KINDS))
        .group_by(Event.kind, day)
    )
    in_day = _day(session, InboundMessage.stored_at)
    complaints = session.execute(
        select(InboundMessage.kind, in_day, func.count())
        .where(InboundMessage.kind == "complaint", InboundMessage.stored_at >= since)
        .group_by(InboundMessage.kind, in_day)
    )
    for kind, when, n in [*events, *complaints]:
        result.per_day.setdefault(kind, {})[_as_date(when)] = n
    return result


def bounded_count(session: Session, query, bound: int = 1000) -> int:
    """Rows matching `query` (a select of one column), counted no further than bound + 1."""
    return session.scalar(select(func.count()).select_from(query.limit(bound + 1).subquery()))


def hot_leads(session: Session, limit: int = 20) -> list[Contact]:
    """Contacts who replied and that nobody has marked handled yet, latest first."""
    query = select(Contact).where(Contact.hot).order_by(Contact.last_activity_at.desc(), Contact.id.desc())
    return list(session.scalars(query.limit(limit)))


def recent_requests(session: Session, limit: int = 10) -> list[Event]:
    """Who asked for a magnet lately."""
    query = select(Event).where(Event.kind == "request").order_by(Event.created_at.desc(), Event.id.desc()).limit(limit)
    return list(session.scalars(query))


def contacts_by_id(session: Session, ids: set[int]) -> dict[int, Contact]:
    """The contacts with these ids, in one query."""
    if not ids:
        return {}
    return {c.id: c for c in session.scalars(select(Contact).where(Contact.id.in_(ids)))}


def problems(session: Session, limit: int = 10) -> list[Outbound]:
    """Ledger rows that failed or whose fate is unknown, newest first: what failed and why."""
    query = (
        select(Outbound).options(defer(Outbound.raw))
        .where(Outbound.state.in_(PROBLEM_STATES)).order_by(Outbound.id.desc()).limit(limit)
    )
    return list(session.scalars(query))


def problem_count(session: Session) -> int:
    return bounded_count(session, select(Outbound.id).where(Outbound.state.in_(PROBLEM_STATES)))


def scheduled(session: Session, limit: int = 10) -> list[Outbound]:
    """What goes out next, soonest first."""
    query = (
        select(Outbound).options(defer(Outbound.raw))
        .where(Outbound.state == "pending").order_by(Outbound.due_at, Outbound.id).limit(limit)
    )
    return list(session.scalars(query))


def scheduled_count(session: Session) -> int:
    return bounded_count(session, select(Outbound.id).where(Outbound.state == "pending"))


def review_count(session: Session) -> int:
    return bounded_count(session, select(InboundMessage.id).where(InboundMessage.state.in_(REVIEW_STATES)))


@dataclass
class Mailbox:
    """The poller's health for one mailbox."""

    name: str
    last_poll_at: datetime | None
    lag_seconds: int | None
    last_error: str
    last_error_at: datetime | None


def mailboxes(session: Session, now: datetime | None = None) -> list[Mailbox]:
    """Every mailbox the poller watches: last poll, lag and last error."""
    now = now or utcnow()
    return [
        Mailbox(
            s.mailbox, s.last_poll_at,
            round((now - s.last_poll_at).total_seconds()) if s.last_poll_at else None,
            s.last_error, s.last_error_at,
        )
        for s in session.scalars(select(MailboxState).order_by(MailboxState.mailbox))
    ]


def enrollment_states(session: Session) -> dict[int, dict[str, int]]:
    """Per campaign: how many enrollments are in each state."""
    columns = (Enrollment.campaign_id, Enrollment.state)
    rows = session.execute(select(*columns, func.count()).group_by(*columns))
    counts: dict[int, dict[str, int]] = {}
    for campaign_id, state, n in rows:
        counts.setdefault(campaign_id, {})[state] = n
    return counts


@dataclass
class CampaignStats:
    """One campaign's numbers: enrollments by state and sends per message of the sequence."""

    states: dict[str, int]
    sends: dict[tuple[str, int | None], dict[str, int]]

    @property
    def enrolled(self) -> int:
        return sum(self.states.values())

    def rate(self, state: str) -> str:
        return f"{100 * self.states.get(state, 0) / self.enrolled:.0f}%" if self.enrolled else "–"


def campaign_stats(session: Session, campaign: Campaign) -> CampaignStats:
    """One campaign's enrollments by state and its sends by message and state."""
    states = session.execute(
        select(Enrollment.state, func.count()).where(Enrollment.campaign_id == campaign.id).group_by(Enrollment.state)
    )
    sends = session.execute(
        select(Outbound.kind, Outbound.step_position, Outbound.state, func.count())
        .join(Enrollment, Outbound.enrollment_id == Enrollment.id)
        .where(Enrollment.campaign_id == campaign.id)
        .group_by(Outbound.kind, Outbound.step_position, Outbound.state)
    )
    by_message: dict[tuple[str, int | None], dict[str, int]] = {}
    for kind, position, state, n in sends:
        by_message.setdefault((kind, position), {})[state] = n
    return CampaignStats(states=dict(states.all()), sends=by_message)


def campaign_names(session: Session) -> dict[int, str]:
    return dict(session.execute(select(Campaign.id, Campaign.name)).all())


@dataclass
class Overview:
    """Everything the dashboard shows, each part from one bounded query."""

    activity: Activity
    hot: list[Contact]
    requests: list[Event]
    people: dict[int, Contact]
    problems: list[Outbound]
    problem_count: int
    scheduled: list[Outbound]
    scheduled_count: int
    review_count: int
    mailboxes: list[Mailbox]


def overview(session: Session) -> Overview:
    """The dashboard's numbers and lists."""
    requests = recent_requests(session)
    return Overview(
        activity=activity(session), hot=hot_leads(session), requests=requests,
        people=contacts_by_id(session, {e.contact_id for e in requests if e.contact_id}),
        problems=problems(session), problem_count=problem_count(session),
        scheduled=scheduled(session), scheduled_count=scheduled_count(session),
        review_count=review_count(session), mailboxes=mailboxes(session),
    )


SEND_FILTERS = ("pending", "sending", "sent", "failed", "unknown", "cancelled", "problem")


def sends(session: Session, state: str = "", before: int | None = None, limit: int = 50) -> list[Outbound]:
    """The ledger, newest first, optionally one state ("problem": failed or unknown); keyset on id."""
    query = select(Outbound).options(defer(Outbound.raw)).order_by(Outbound.id.desc()).limit(limit)
    if state == "problem":
        query = query.where(Outbound.state.in_(PROBLEM_STATES))
    elif state in SEND_FILTERS:
        query = query.where(Outbound.state == state)
    if before:
        query = query.where(Outbound.id < before)
    return list(session.scalars(query))

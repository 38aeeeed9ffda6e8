"""Numbers for the admin: the funnel, a daily series, what failed, per-campaign counts.

Every query here is bounded (a date range on an indexed column, a LIMIT, or a
count that stops early), so the dashboard stays fast with 100,000 contacts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo

from sqlalchemy import String, case, cast, distinct, func, literal, select, union_all
from sqlalchemy.orm import Session, defer

from .models import Campaign, Contact, Enrollment, Event, InboundMessage, MailboxState, Outbound, utcnow

WINDOWS = (7, 30, 90)
CHART_DAYS = 30  # one of WINDOWS, so the chart's summary can quote the funnel's column
PROBLEM_STATES = ("failed", "unknown")
REVIEW_STATES = ("review", "quarantined")
# The funnel's steps: label → the timeline events that put a person on that step. The words match
# the campaign page's counts, which are people too (enrollments).
FUNNEL = (
    ("Asked", ("request",)),
    ("Got the magnet", ("magnet_sent",)),
    ("Downloaded", ("downloaded",)),  # a download link's first GET; an attached file is not counted
    ("Got a follow-up", ("followup_sent",)),
    ("Replied", ("replied",)),
    ("Unsubscribed", ("unsubscribed",)),
    ("Bounced", ("bounce_hard", "bounce_soft")),
    ("Complained", ("complaint",)),
)
MAIN_STEPS = 5  # the first five are the funnel proper; the rest are the ways out
PEOPLE_NOTE = "people, each counted once per step"
CHART_KINDS = {"request": "Asked", "replied": "Replied"}
HOURLY_LIMIT = "over the hourly limit"  # the words intake puts on a request a cap holds back


@dataclass
class Activity:
    """People per funnel step per window, and people per local day who asked or replied (for the chart)."""

    today: date
    people: dict[str, dict[int, int]] = field(default_factory=dict)
    per_day: dict[str, dict[date, int]] = field(default_factory=dict)

    def total(self, label: str, days: int) -> int:
        """People on step `label` in the last `days` local days (each counted once)."""
        return self.people.get(label, {}).get(days, 0)

    def funnel(self) -> list[tuple[str, list[int]]]:
        return [(label, [self.total(label, d) for d in WINDOWS]) for label, _ in FUNNEL]

    def series(self, days: int = CHART_DAYS) -> list[tuple[date, int, int]]:
        """(day, people who asked, people who replied) for each of the last `days` days, oldest first."""
        first = self.today - timedelta(days=days - 1)
        asked, replied = self.per_day.get("Asked", {}), self.per_day.get("Replied", {})
        return [(d, asked.get(d, 0), replied.get(d, 0)) for d in (first + timedelta(n) for n in range(days))]


def _midnight(today: date, days: int, zone: tzinfo = UTC) -> datetime:
    """The start of a window of `days` calendar days ending today, in `zone` (an aware instant)."""
    return datetime.combine(today - timedelta(days=days - 1), datetime.min.time(), zone).astimezone(UTC)


def activity(session: Session, now: datetime | None = None, zone: tzinfo = UTC) -> Activity:
    """The funnel (people per step per window) and the chart (people per day), each bounded to its date range.

    Days are the viewer's calendar days in `zone`, DST included: each is bounded by its own local midnight.
    """
    today = (now or utcnow()).astimezone(zone).date()
    return Activity(today=today, people=_people_per_step(session, today, zone),
                    per_day=_people_per_day(session, today, zone))


def _people_per_step(session: Session, today: date, zone: tzinfo) -> dict[str, dict[int, int]]:
    """People per step per window, one UNION ALL of the steps (PostgreSQL runs them in parallel)."""
    since = _midnight(today, max(WINDOWS), zone)
    rows = session.execute(union_all(*(_step_people(label, kinds, since, today, zone) for label, kinds in FUNNEL)))
    return {label: dict(zip(WINDOWS, (int(n or 0) for n in counts), strict=True)) for label, *counts in rows}


def _step_people(label: str, kinds: tuple[str, ...], since: datetime, today: date, zone: tzinfo):
    """One step: each person's latest such event since `since` (a hash aggregate over one range of the
    (kind, created_at) index), then how many of those fall in each window. No COUNT(DISTINCT) sorts,
    and a person with both a hard and a soft bounce is one person under Bounced.

    Only kind, created_at and contact_id are read, so an index on the three makes it an index-only scan.
    A line without a contact (a complaint about an address we never mailed) is nobody on the funnel.
    """
    latest = (
        select(Event.contact_id, func.max(Event.created_at).label("last"))
        .where(Event.kind.in_(kinds), Event.created_at >= since, Event.contact_id.is_not(None))
        .group_by(Event.contact_id)
        .subquery()
    )
    in_window = [func.sum(case((latest.c.last >= _midnight(today, d, zone), 1), else_=0)) for d in WINDOWS]
    return select(literal(label).label("step"), *in_window)


def _day_number(column, today: date, zone: tzinfo, days: int):
    """Which of the last `days` local days a timestamp falls on (0 = the oldest), bounded by each day's
    own midnight in `zone`: exact across DST, and the same SQL on SQLite and PostgreSQL."""
    starts = [_midnight(today, n, zone) for n in range(1, days + 1)]  # today's midnight first
    return case(*((column >= start, days - n) for n, start in enumerate(starts, 1)), else_=None)


def _people_per_day(session: Session, today: date, zone: tzinfo) -> dict[str, dict[date, int]]:
    """People who asked, and people who replied, per local day of the chart (a person asking twice a day is one)."""
    number = _day_number(Event.created_at, today, zone, CHART_DAYS).label("day")
    rows = session.execute(
        select(Event.kind, number, func.count(distinct(Event.contact_id)))
        .where(Event.kind.in_(tuple(CHART_KINDS)), Event.created_at >= _midnight(today, CHART_DAYS, zone))
        .group_by(Event.kind, number)
    )
    first = today - timedelta(days=CHART_DAYS - 1)
    result: dict[str, dict[date, int]] = {}
    for kind, n, people in rows:
        if n is not None:
            result.setdefault(CHART_KINDS[kind], {})[first + timedelta(days=int(n))] = people
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


def held_by_caps(session: Session, now: datetime | None = None) -> int:
    """Requests of the last day that wait in Review because a sender or domain went over its hourly cap."""
    since = (now or utcnow()) - timedelta(days=1)
    query = select(func.count(InboundMessage.id)).where(
        InboundMessage.state == "review", InboundMessage.stored_at >= since,
        cast(InboundMessage.reasons, String).like(f"%{HOURLY_LIMIT}%"),
    )
    return session.scalar(query)


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
    """One campaign's numbers, in people: enrollments by state, and per mail of the sequence how many
    people it reached in each ledger state (a magnet sent twice to one person counts once)."""

    states: dict[str, int]
    sends: dict[tuple[str, int | None], dict[str, int]]

    @property
    def enrolled(self) -> int:
        return sum(self.states.values())

    def rate(self, state: str) -> str:
        return f"{100 * self.states.get(state, 0) / self.enrolled:.0f}%" if self.enrolled else "–"


def campaign_stats(session: Session, campaign: Campaign) -> CampaignStats:
    """One campaign's people by enrollment state and by mail and send state (an enrollment is one person)."""
    states = session.execute(
        select(Enrollment.state, func.count()).where(Enrollment.campaign_id == campaign.id).group_by(Enrollment.state)
    )
    sends = session.execute(
        select(Outbound.kind, Outbound.step_position, Outbound.state, func.count(distinct(Outbound.enrollment_id)))
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
    held: int
    mailboxes: list[Mailbox]


def overview(session: Session, zone: tzinfo = UTC) -> Overview:
    """The dashboard's numbers and lists; days in the viewer's `zone`."""
    requests = recent_requests(session)
    return Overview(
        activity=activity(session, zone=zone), hot=hot_leads(session), requests=requests,
        people=contacts_by_id(session, {e.contact_id for e in requests if e.contact_id}),
        problems=problems(session), problem_count=problem_count(session),
        scheduled=scheduled(session), scheduled_count=scheduled_count(session),
        review_count=review_count(session), held=held_by_caps(session), mailboxes=mailboxes(session),
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

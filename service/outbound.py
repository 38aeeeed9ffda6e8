"""The outbound ledger: one row per intended send, claimed atomically, never sent twice.

States: pending → sending → sent | failed | unknown, or pending → cancelled.
A row left in `sending` by a crash becomes `unknown` and is never resent blindly,
because SMTP cannot tell us whether the server already took it (RFC 1047).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from email.utils import make_msgid

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from . import contacts
from .campaigns import next_open, parse_delay
from .enrollments import ACTIVE, COMPLETED, move
from .models import Campaign, Enrollment, Event, InboundMessage, Outbound, Step, utcnow

PENDING, SENDING, SENT, FAILED, CANCELLED, UNKNOWN = (
    "pending", "sending", "sent", "failed", "cancelled", "unknown",
)


def new_message_id(domain: str) -> str:
    return make_msgid(domain=domain).strip("<>")


def _thread_subject(subject: str, fallback: str) -> str:
    """Gmail threads only when the subject stays the same, so answers keep `Re: <theirs>`."""
    subject = " ".join(subject.split())
    if not subject:
        return fallback
    return subject if subject.lower().startswith(("re:", "aw:", "sv:")) else f"Re: {subject}"


def find(session: Session, key: str) -> Outbound | None:
    return session.scalar(select(Outbound).where(Outbound.key == key))


def plan_magnet(
    session: Session, inbound: InboundMessage, enrollment: Enrollment, to: str, domain: str,
    subject: str, references: tuple[str, ...],
) -> Outbound:
    """The reply to a request, in the request's thread; planning twice returns the same row."""
    key = f"reply:{inbound.id}"
    row = find(session, key)
    if row:
        return row
    parent = inbound.message_id
    chain = [*references, parent] if parent else list(references)
    row = Outbound(
        key=key, kind="magnet", contact_id=enrollment.contact_id, enrollment_id=enrollment.id,
        campaign_id=enrollment.campaign_id, inbound_id=inbound.id, to_address=to, message_id=new_message_id(domain),
        subject=_thread_subject(subject, enrollment.campaign.magnet_subject),
        in_reply_to=parent, references=" ".join(f"<{r}>" for r in chain[-20:]), due_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


class LimitError(ValueError):
    """A send that the per-recipient limit forbids right now."""


def recent_magnet(session: Session, contact_id: int, days: int) -> Outbound | None:
    """The magnet sent (or on its way) to this contact within `days`, if any."""
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


def plan_resend(session: Session, enrollment: Enrollment, domain: str, repeat_days: int) -> Outbound:
    """Send the magnet again, in the same thread as the last one, unless the limit forbids it."""
    if recent_magnet(session, enrollment.contact_id, repeat_days):
        raise LimitError(f"a magnet already went to this address in the last {repeat_days} days")
    last = session.scalars(
        select(Outbound).where(Outbound.enrollment_id == enrollment.id, Outbound.kind == "magnet")
        .order_by(Outbound.id.desc())
    ).first()
    count = session.scalar(select(func.count(Outbound.id)).where(Outbound.key.like(f"resend:{enrollment.id}:%")))
    row = Outbound(
        key=f"resend:{enrollment.id}:{count + 1}", kind="magnet", contact_id=enrollment.contact_id,
        enrollment_id=enrollment.id, campaign_id=enrollment.campaign_id, to_address=enrollment.contact.email,
        message_id=new_message_id(domain),
        subject=last.subject if last else enrollment.campaign.magnet_subject,
        in_reply_to=last.message_id if last else None,
        references=_under(last),
        due_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def plan_next_step(
    session: Session, enrollment: Enrollment, previous: Outbound, domain: str, after: datetime | None = None
) -> Outbound | None:
    """Plan the follow-up after `previous` (its delay counted from `after`, default its sending), threaded
    under it, or complete the sequence."""
    step = _step(enrollment, enrollment.steps_sent + 1)
    if step is None:
        move(session, enrollment, COMPLETED, "all follow-ups sent")
        return None
    key = f"step:{enrollment.id}:{step.position}"
    row = find(session, key)
    if row:
        return row
    campaign = enrollment.campaign
    due = next_open((after or previous.sent_at) + parse_delay(step.after), campaign.window, campaign.timezone)
    row = Outbound(
        key=key, kind="followup", contact_id=enrollment.contact_id, enrollment_id=enrollment.id,
        campaign_id=enrollment.campaign_id,
        step_position=step.position, to_address=previous.to_address,
        message_id=new_message_id(domain), subject=_thread_subject(previous.subject, step.subject),
        in_reply_to=previous.message_id,
        references=_under(previous),
        due_at=due,
    )
    session.add(row)
    session.flush()
    return row


def _under(parent: Outbound | None) -> str:
    """RFC 5322 §3.6.4: a child's References are the parent's References plus the parent's Message-ID."""
    if parent is None:
        return ""
    return " ".join([*parent.references.split()[-19:], f"<{parent.message_id}>"])


def _step(enrollment: Enrollment, position: int) -> Step | None:
    return next((s for s in enrollment.campaign.steps if s.position == position), None)


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


def stop_reason(session: Session, row: Outbound) -> str | None:
    """Why this row must not go out now, re-checked inside the claiming transaction."""
    if contacts.is_suppressed(session, row.to_address):
        return "address is suppressed"
    if row.enrollment_id is None:
        return None  # a test send to the admin
    enrollment = session.get(Enrollment, row.enrollment_id)
    if row.kind == "followup" and enrollment.state != ACTIVE:
        return f"enrollment is {enrollment.state}"
    return None


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


def stale(row: Outbound, hours: int, now: datetime | None = None) -> str | None:
    """A follow-up far past its time (the worker or Redis was down) is skipped, not sent days late."""
    late = (now or utcnow()) - row.due_at
    if row.kind != "followup" or late < timedelta(hours=hours):
        return None
    return f"skipped: {late.total_seconds() / 3600:.0f} h late (was the worker or Redis down?)"


def paused_campaign(session: Session, row: Outbound) -> bool:
    """A paused campaign holds its sends (they wait, and go when it is active again)."""
    campaign = session.get(Campaign, row.campaign_id) if row.campaign_id else None
    return campaign is not None and not campaign.active and row.kind != "test"


def _last_sent(session: Session, enrollment: Enrollment) -> Outbound | None:
    return session.scalars(
        select(Outbound).where(Outbound.enrollment_id == enrollment.id, Outbound.state == SENT)
        .order_by(Outbound.sent_at.desc())
    ).first()


def resume(session: Session, enrollment: Enrollment, domain: str) -> Outbound | None:
    """After a pause, plan the next follow-up again (a cancelled, never-sent row is revived, not copied)."""
    previous = _last_sent(session, enrollment)
    if previous is None or enrollment.state != ACTIVE:
        return None
    row = plan_next_step(session, enrollment, previous, domain)
    if row is not None and row.state == CANCELLED:
        row.state, row.note, row.due_at = PENDING, "resumed", max(row.due_at, utcnow())
    return row


def skip_and_go_on(session: Session, row: Outbound, why: str, domain: str) -> Outbound | None:
    """Skip a follow-up on purpose (shown with the failures); the sequence goes on from now."""
    skip(row, why)
    enrollment = session.get(Enrollment, row.enrollment_id)
    enrollment.steps_sent = max(enrollment.steps_sent, row.step_position or 0)
    previous = _last_sent(session, enrollment)
    if previous is None or enrollment.state != ACTIVE:
        return None
    return plan_next_step(session, enrollment, previous, domain, after=utcnow())


def cancel(row: Outbound, why: str) -> None:
    row.state = CANCELLED
    row.note = why


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
    """Our sent rows that an inbound message refers to (In-Reply-To / References)."""
    if not message_ids:
        return []
    return list(session.scalars(select(Outbound).where(Outbound.message_id.in_(message_ids))))

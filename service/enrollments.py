"""Enrollments: one person in one campaign, and the sequence it sends, as an explicit state machine.

This module owns the sequence: the magnet that starts it, planning the next follow-up, resuming,
skipping and going on, postponing for an out-of-office, cancelling, completing, the `steps_sent`
count, the verdict a send job asks for before it sends, and an admin putting people in a campaign by hand
(`enrol`, at its magnet or at a chosen follow-up). The ledger itself is `outbound`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import contacts, outbound
from .campaigns import next_open, parse_delay, zone
from .contacts import record
from .models import (
    Campaign,
    Contact,
    Enrollment,
    InboundMessage,
    Outbound,
    Step,
    Suppression,
    address_hash,
    utcnow,
)

ACTIVE, PAUSED = "active", "paused"
REPLIED, UNSUBSCRIBED, BOUNCED, COMPLETED = "replied", "unsubscribed", "bounced", "completed"
# An admin's "stop the sequence": final, like replied, but said by the consultant, not the prospect.
HALTED = "stopped"
STATES = (ACTIVE, PAUSED, HALTED, REPLIED, UNSUBSCRIBED, BOUNCED, COMPLETED)

# Which states each transition may leave from; anything else is a no-op, so a
# late duplicate event never resurrects or re-stops a sequence.
_ALLOWED = {
    PAUSED: (ACTIVE,),
    ACTIVE: (PAUSED,),
    REPLIED: (ACTIVE, PAUSED),
    # An unsubscribe or a bounce is the final word, even after an admin's stop.
    UNSUBSCRIBED: (ACTIVE, PAUSED, REPLIED, COMPLETED, HALTED),
    BOUNCED: (ACTIVE, PAUSED, REPLIED, COMPLETED, HALTED),
    COMPLETED: (ACTIVE,),
    HALTED: (ACTIVE, PAUSED),
}


class EnrollmentError(ValueError):
    """A transition that the state machine does not allow."""


def enroll(session: Session, contact: Contact, campaign: Campaign) -> tuple[Enrollment, bool]:
    """The contact's enrollment in the campaign, and whether it is new."""
    found = session.scalar(
        select(Enrollment).where(
            Enrollment.contact_id == contact.id, Enrollment.campaign_id == campaign.id
        )
    )
    if found:
        return found, False
    enrollment = Enrollment(contact=contact, campaign=campaign, state=ACTIVE)
    session.add(enrollment)
    session.flush()
    return enrollment, True


def move(session: Session, enrollment: Enrollment, state: str, reason: str, cause: int | None = None) -> bool:
    """Move to `state` if allowed from the current one; stopping cancels pending follow-ups.

    `cause` is the inbound message that made the move, so that a correction of it can take it back.
    """
    if enrollment.state == state or enrollment.state not in _ALLOWED[state]:
        return False
    enrollment.state_before, enrollment.moved_by_inbound_id = enrollment.state, cause
    _set_state(session, enrollment, state, reason)
    return True


def _set_state(session: Session, enrollment: Enrollment, state: str, reason: str) -> None:
    enrollment.state = state
    enrollment.stopped_reason = reason
    if state != ACTIVE:
        outbound.cancel_followups(session, enrollment.id, f"enrollment {state}: {reason}")
    record(session, enrollment.contact, f"enrollment_{state}", f"{enrollment.campaign.name}: {reason}")


def undo(session: Session, inbound_id: int, domain: str) -> list[Outbound]:
    """Take back the moves an inbound message made (an admin corrected it): each sequence returns to the
    state it left, and one that is active again gets its next follow-up planned (returned, to queue).

    A later move by another message (a bounce after a reply) is that message's, and stays.
    """
    moved = session.scalars(select(Enrollment).where(Enrollment.moved_by_inbound_id == inbound_id))
    rows = [_restore(session, enrollment, domain) for enrollment in moved]
    return [row for row in rows if row is not None]


def _restore(session: Session, enrollment: Enrollment, domain: str) -> Outbound | None:
    back = enrollment.state_before or ACTIVE
    enrollment.state_before, enrollment.moved_by_inbound_id = None, None
    _set_state(session, enrollment, back, "an admin corrected the classifier")
    return resume(session, enrollment, domain) if back == ACTIVE else None


def stop_all(session: Session, contact: Contact, state: str, reason: str, cause: int | None = None) -> int:
    """Stop every enrollment of the contact (unsubscribe, bounce); returns how many moved."""
    return sum(move(session, e, state, reason, cause) for e in contact.enrollments)


def open_for(session: Session, contact: Contact) -> list[Enrollment]:
    """Enrollments that a reply from this contact would stop."""
    return [e for e in contact.enrollments if e.state in (ACTIVE, PAUSED)]


# --------------------------------------------------------------------------- the sequence


def start(
    session: Session, inbound: InboundMessage, enrollment: Enrollment, to: str, domain: str,
    subject: str, thread: tuple[str, ...], thread_index: str | None = None,
) -> Outbound:
    """The magnet, answering a request in the request's thread (and Outlook's, by its Thread-Index);
    planning twice returns the same row."""
    return outbound.plan(
        session, f"reply:{inbound.id}", "magnet", to, domain,
        outbound.thread_subject(subject, enrollment.campaign.magnet_subject),
        parent=inbound.message_id, chain=list(thread), parent_index=thread_index,
        **_links(enrollment), inbound_id=inbound.id,
    )


def _links(enrollment: Enrollment) -> dict:
    return {"contact_id": enrollment.contact_id, "enrollment_id": enrollment.id,
            "campaign_id": enrollment.campaign_id}


def resend_magnet(session: Session, enrollment: Enrollment, domain: str, repeat_days: int) -> Outbound:
    """Plan the magnet again for an admin; raises EnrollmentError or outbound.LimitError with the reason."""
    if contacts.is_suppressed(session, enrollment.contact.email):
        raise EnrollmentError("the address is suppressed (unsubscribed, bounced or erased): nothing can be sent")
    if outbound.recent_magnet(session, enrollment.contact_id, repeat_days):
        raise outbound.LimitError(f"a magnet already went to this address in the last {repeat_days} days")
    last = outbound.last_magnet(session, enrollment.id)
    number = outbound.count_keys(session, f"resend:{enrollment.id}:") + 1
    row = outbound.plan(
        session, f"resend:{enrollment.id}:{number}", "magnet", enrollment.contact.email, domain,
        last.subject if last else enrollment.campaign.magnet_subject,
        parent=last.message_id if last else None, chain=outbound.under(last)[:-1], **_links(enrollment),
    )
    record(session, enrollment.contact, "resend_planned", f"{enrollment.campaign.name}: by an admin",
           outbound_id=row.id)
    return row


def fresh_magnet(session: Session, enrollment: Enrollment, previous: Outbound, domain: str) -> Outbound:
    """Plan the magnet again, threaded under `previous` and to the same address, for a person whose
    download link expired; raises EnrollmentError for a suppressed address.

    No repeat limit: the person asked for it by a click (the caller limits how often).
    """
    if any(contacts.is_suppressed(session, a) for a in {previous.to_address, enrollment.contact.email}):
        raise EnrollmentError("the address is suppressed (unsubscribed, bounced or erased): nothing can be sent")
    number = outbound.count_keys(session, f"fresh:{enrollment.id}:") + 1
    return outbound.plan(
        session, f"fresh:{enrollment.id}:{number}", "magnet", previous.to_address, domain, previous.subject,
        parent=previous.message_id, chain=outbound.under(previous)[:-1], **_links(enrollment),
    )


def plan_next(
    session: Session, enrollment: Enrollment, previous: Outbound, domain: str, after: datetime | None = None
) -> Outbound | None:
    """Plan the follow-up after `previous` (its delay counted from `after`, default its sending), threaded
    under it, or complete the sequence."""
    step = _step(enrollment, enrollment.steps_sent + 1)
    if step is None:
        move(session, enrollment, COMPLETED, "all follow-ups sent")
        return None
    campaign = enrollment.campaign
    due = due_after(campaign, step, after or previous.sent_at)
    return outbound.plan(
        session, f"step:{enrollment.id}:{step.position}", "followup", previous.to_address, domain,
        outbound.thread_subject(previous.subject, step.subject), parent=previous.message_id,
        chain=outbound.under(previous)[:-1], due_at=due, step_position=step.position, **_links(enrollment),
    )


def due_after(campaign: Campaign, step: Step, previous: datetime) -> datetime:
    """When a follow-up is due: its delay after the mail before it, then the first open moment of the window."""
    return next_open(previous + parse_delay(step.after), campaign.window, campaign.timezone)


@dataclass(frozen=True)
class PlannedSend:
    """One mail of a campaign's plan, in the campaign's timezone: `asked` is where its delay alone puts it,
    `at` where the window moves it; `day` counts calendar days from the request (the magnet is day 0)."""

    position: int  # 0: the magnet
    after: str | None
    asked: datetime
    at: datetime
    day: int

    @property
    def moved(self) -> bool:
        return self.at != self.asked


def plan_dates(campaign: Campaign, start: datetime, magnet_in_window: bool = False) -> list[PlannedSend]:
    """When a request at `start` (aware) gets the magnet and each follow-up if nobody answers, by the
    computation plan_next uses; each mail is taken to go when it is due (no pace or outage delays it).

    `magnet_in_window` is the MAGNET_IN_WINDOW setting: the magnet then waits for the window too.
    Raises CampaignError for a delay, window or timezone that does not parse.
    """
    tz, start = zone(campaign.timezone), start.astimezone(UTC)
    first = next_open(start, campaign.window, campaign.timezone) if magnet_in_window else start
    plan = [_planned(0, None, start, first, start, tz)]
    for step in sorted(campaign.steps, key=lambda s: s.position):
        # In UTC, as the ledger keeps sent_at: a local wall clock plus 3 days is off by an hour across DST.
        previous = plan[-1].at.astimezone(UTC)
        due = due_after(campaign, step, previous)
        plan.append(_planned(step.position, step.after, previous + parse_delay(step.after), due, start, tz))
    return plan


def _planned(
    position: int, after: str | None, asked: datetime, at: datetime, start: datetime, tz: tzinfo
) -> PlannedSend:
    local = at.astimezone(tz)
    return PlannedSend(position, after, asked.astimezone(tz), local, (local.date() - start.astimezone(tz).date()).days)


def _step(enrollment: Enrollment, position: int) -> Step | None:
    return next((s for s in enrollment.campaign.steps if s.position == position), None)


def advance(session: Session, row: Outbound, domain: str) -> Outbound | None:
    """After a send: count the follow-up, then plan the next one (or complete)."""
    enrollment = session.get(Enrollment, row.enrollment_id) if row.enrollment_id else None
    if enrollment is None:
        return None
    if row.kind == "followup":
        enrollment.steps_sent = max(enrollment.steps_sent, row.step_position or 0)
    if enrollment.state != ACTIVE:
        return None
    return plan_next(session, enrollment, row, domain)


def resume(session: Session, enrollment: Enrollment, domain: str) -> Outbound | None:
    """After a pause, plan the next follow-up again (a cancelled, never-sent row is revived, not copied)."""
    previous = outbound.last_sent(session, enrollment.id)
    if previous is None or enrollment.state != ACTIVE:
        return None
    row = plan_next(session, enrollment, previous, domain)
    if row is not None and row.state == outbound.CANCELLED:
        outbound.revive(row, "resumed")
    return row


def skip_and_go_on(session: Session, row: Outbound, why: str, domain: str) -> Outbound | None:
    """Skip a follow-up on purpose (shown with the failures); the sequence goes on from now."""
    outbound.skip(row, why)
    enrollment = session.get(Enrollment, row.enrollment_id)
    enrollment.steps_sent = max(enrollment.steps_sent, row.step_position or 0)
    previous = outbound.last_sent(session, enrollment.id)
    if previous is None or enrollment.state != ACTIVE:
        return None
    return plan_next(session, enrollment, previous, domain, after=utcnow())


def postpone(session: Session, contact: Contact, until: date) -> None:
    """An out-of-office with a return date: the next follow-up waits until the day after, 09:00 local."""
    for enrollment in open_for(session, contact):
        campaign = enrollment.campaign
        back = datetime.combine(until + timedelta(days=1), time(9, 0), zone(campaign.timezone))
        for row in outbound.pending_followups(session, enrollment.id):
            if row.due_at < back:
                row.due_at = next_open(back, campaign.window, campaign.timezone)


# --------------------------------------------------------------------------- an admin enrolling people

# Why a person was not enrolled, as the confirmation and the report count them.
SUPPRESSED, RECENT, ENROLLED = "suppressed", "recent", "enrolled"


@dataclass(frozen=True)
class Outcome:
    """What enrolling one person did: the first mail planned (to queue), or why they were skipped."""

    contact_id: int
    row: Outbound | None = None
    skip: str | None = None  # SUPPRESSED, RECENT or ENROLLED
    reason: str = ""


def starts(campaign: Campaign) -> list[tuple[int | None, str]]:
    """Where an admin may start someone in the campaign: its magnet (None), or one of its follow-ups."""
    return [(None, "the magnet"), *((s.position, f"follow-up {s.position}: {s.subject}") for s in campaign.steps)]


def check_start(campaign: Campaign, start_at: int | None) -> None:
    """Raises EnrollmentError when the campaign has no such follow-up."""
    if start_at is not None and _step_of(campaign, start_at) is None:
        raise EnrollmentError(f"{campaign.name} has no follow-up {start_at}")


def refusals(session: Session, people: list, campaign: Campaign, settings: dict) -> dict[int, Outcome]:
    """Who of `people` (contacts, or rows with an id and an email) may not be enrolled in `campaign` now, and
    why, by contact id: suppressed, a magnet inside the repeat limit, or in the campaign already. A few
    queries for the whole batch."""
    days = settings["MAGNET_REPEAT_DAYS"]
    checks = (
        (SUPPRESSED, _suppressed(session, people)),
        (ENROLLED, _enrolled(session, people, campaign)),
        (RECENT, _mailed_since(session, people, utcnow() - timedelta(days=days))),
    )
    found: dict[int, Outcome] = {}
    for skip, reasons in checks:
        for contact_id, reason in reasons.items():
            found.setdefault(contact_id, Outcome(contact_id, skip=skip, reason=reason))
    return found


def _enrolled(session: Session, people: list, campaign: Campaign) -> dict[int, str]:
    rows = session.execute(select(Enrollment.contact_id, Enrollment.state).where(
        Enrollment.campaign_id == campaign.id, Enrollment.contact_id.in_([p.id for p in people])))
    return {contact_id: f"already in {campaign.name} ({state})" for contact_id, state in rows}


def _suppressed(session: Session, people: list) -> dict[int, str]:
    """The send job refuses an address, or its plain form, on the suppression list: so do we, up front."""
    keys = {p.id: {address_hash(p.email), address_hash(contacts.base_address(p.email))} for p in people}
    wanted = set().union(*keys.values()) if keys else set()
    held = dict(session.execute(
        select(Suppression.address_hash, Suppression.reason).where(Suppression.address_hash.in_(wanted))).all())
    return {contact_id: f"suppressed ({', '.join(sorted({held[k] for k in mine if k in held}))})"
            for contact_id, mine in keys.items() if mine & held.keys()}


def _mailed_since(session: Session, people: list, since: datetime) -> dict[int, str]:
    """A magnet sent (or on its way) since `since`: the repeat limit, as `outbound.recent_magnet` applies it."""
    rows = session.execute(
        select(Outbound.contact_id, func.max(Outbound.created_at))
        .where(Outbound.contact_id.in_([p.id for p in people]), Outbound.kind == "magnet",
               Outbound.state.in_((outbound.PENDING, outbound.SENDING, outbound.SENT, outbound.UNKNOWN)),
               Outbound.created_at >= since)
        .group_by(Outbound.contact_id))
    return {person: f"a magnet went to them on {last:%Y-%m-%d}, inside the repeat limit" for person, last in rows}


@dataclass
class Tally:
    """What enrolling a selection does: how many are mailed, how many skipped and why, and whom it skips first."""

    mailed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # SUPPRESSED, RECENT or ENROLLED → how many
    examples: list[tuple[int, str, str]] = field(default_factory=list)  # (contact id, address, why)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def add(self, person, refused: Outcome | None, shown: int) -> None:
        if refused is None:
            self.mailed += 1
            return
        self.skipped[refused.skip] = self.skipped.get(refused.skip, 0) + 1
        if len(self.examples) < shown:
            self.examples.append((person.id, person.email, refused.reason))


def tally(
    session: Session, batches: Iterable[list], campaign: Campaign, settings: dict, since: datetime | None = None,
    shown: int = 50,
) -> Tally:
    """What enrolling everyone in `batches` (lists of anything with an id and an email) would do now; with
    `since`, what a run that started then did: people who joined the campaign since count as mailed."""
    result = Tally()
    for people in batches:
        ours = _joined_since(session, people, campaign, since) if since else set()
        refused = refusals(session, people, campaign, settings)
        for person in people:
            result.add(person, None if person.id in ours else refused.get(person.id), shown)
    return result


def _joined_since(session: Session, people: list, campaign: Campaign, since: datetime) -> set[int]:
    return set(session.scalars(select(Enrollment.contact_id).where(
        Enrollment.campaign_id == campaign.id, Enrollment.contact_id.in_([p.id for p in people]),
        Enrollment.created_at >= since)))


def enrol(
    session: Session, contact: Contact, campaign: Campaign, start_at: int | None, settings: dict,
    who: str = "an admin",
) -> Outcome:
    """Put one person in a campaign at its magnet (`start_at` None) or at follow-up `start_at`, planning the
    first mail through the ledger; suppressed people, people inside the repeat limit and people in the
    campaign already are skipped with the reason. Raises EnrollmentError for a follow-up that does not exist."""
    return enrol_many(session, [contact], campaign, start_at, settings, who)[0]


def enrol_many(
    session: Session, people: list[Contact], campaign: Campaign, start_at: int | None, settings: dict,
    who: str = "an admin",
) -> list[Outcome]:
    """`enrol` for a batch, with one round of checks for all of it."""
    check_start(campaign, start_at)
    refused = refusals(session, people, campaign, settings)
    return [refused.get(p.id) or _enrol_one(session, p, campaign, start_at, settings, who) for p in people]


def _enrol_one(
    session: Session, contact: Contact, campaign: Campaign, start_at: int | None, settings: dict, who: str,
) -> Outcome:
    try:
        # Another request may enrol them meanwhile (a reload, the person's own request): the unique key says.
        with session.begin_nested():
            enrollment = Enrollment(contact_id=contact.id, campaign_id=campaign.id, state=ACTIVE)
            session.add(enrollment)
    except IntegrityError:
        return Outcome(contact.id, skip=ENROLLED, reason=f"already in {campaign.name}")
    row = _first_mail(session, enrollment, contact, campaign, start_at, settings["MAIL_DOMAIN"])
    where = "the magnet" if start_at is None else f"follow-up {start_at}"
    record(session, contact, "enrolled", f"{campaign.name}: by {who}, starting at {where}", outbound_id=row.id)
    return Outcome(contact.id, row=row)


def _first_mail(
    session: Session, enrollment: Enrollment, contact: Contact, campaign: Campaign, start_at: int | None,
    domain: str,
) -> Outbound:
    """The magnet, in a thread of its own (nobody asked in one); or follow-up `start_at`, keyed as the sequence
    keys it, so that step can never be planned twice, and the sequence goes on from it."""
    links = {"contact_id": contact.id, "enrollment_id": enrollment.id, "campaign_id": campaign.id}
    if start_at is None:
        return outbound.plan(session, f"enrol:{enrollment.id}", "magnet", contact.email, domain,
                             campaign.magnet_subject, **links)
    step = _step_of(campaign, start_at)
    enrollment.steps_sent = start_at - 1  # the ones before are skipped: advance plans the next after this
    due = next_open(utcnow(), campaign.window, campaign.timezone)
    return outbound.plan(session, f"step:{enrollment.id}:{start_at}", "followup", contact.email, domain,
                         step.subject, due_at=due, step_position=start_at, **links)


def _step_of(campaign: Campaign, position: int) -> Step | None:
    return next((s for s in campaign.steps if s.position == position), None)


ADMIN_MOVES = {"pause": PAUSED, "resume": ACTIVE, "stop": HALTED}


def by_id(session: Session, enrollment_id: int) -> Enrollment | None:
    return session.get(Enrollment, enrollment_id)


def admin_move(session: Session, enrollment: Enrollment, action: str, who: str, domain: str) -> Outbound | None:
    """Pause, resume or stop a sequence for an admin; a resume returns the follow-up to queue again.

    Raises EnrollmentError when the state forbids the move.
    """
    state = ADMIN_MOVES[action]
    if not move(session, enrollment, state, f"{action} by {who}"):
        raise EnrollmentError(f"cannot {action} a sequence that is {enrollment.state}")
    return resume(session, enrollment, domain) if action == "resume" else None


# --------------------------------------------------------------------------- the send job's verdict

GO, CANCEL, SKIP, WAIT = "go", "cancel", "skip", "wait"


@dataclass(frozen=True)
class Verdict:
    """What a claimed row should do now, and why: go, cancel, skip (and go on), or wait until `until`."""

    action: str
    reason: str = ""
    until: datetime | None = None


def verdict(session: Session, row: Outbound, settings: dict, now: datetime | None = None) -> Verdict:
    """Everything the database knows about whether this row may go now (the pace, in Redis, comes after)."""
    now = now or utcnow()
    campaign = session.get(Campaign, row.campaign_id) if row.campaign_id else None
    for rule in (_stopped, _pointless, _held):
        found = rule(session, row, campaign, settings, now)
        if found is not None:
            return found
    return Verdict(GO)


def _stopped(session: Session, row: Outbound, campaign: Campaign | None, settings: dict, now) -> Verdict | None:
    person = session.get(Contact, row.contact_id) if row.contact_id else None
    # The person's main address counts too: a magnet to an alias of someone who unsubscribed must not go.
    addresses = {row.to_address, person.email} if person else {row.to_address}
    if any(contacts.is_suppressed(session, a) for a in addresses):
        return Verdict(CANCEL, "address is suppressed")
    enrollment = session.get(Enrollment, row.enrollment_id) if row.enrollment_id else None
    if row.kind == "followup" and enrollment is not None and enrollment.state != ACTIVE:
        return Verdict(CANCEL, f"enrollment is {enrollment.state}")
    return None


def _pointless(session: Session, row: Outbound, campaign: Campaign | None, settings: dict, now) -> Verdict | None:
    """A follow-up far past its time (the worker or Redis was down), or whose step was removed."""
    if row.kind != "followup" or campaign is None:
        return None
    late = now - row.due_at
    if late >= timedelta(hours=settings["STALE_FOLLOWUP_HOURS"]):
        return Verdict(SKIP, f"skipped: {late.total_seconds() / 3600:.0f} h late (was the worker or Redis down?)")
    if not any(s.position == row.step_position for s in campaign.steps):
        return Verdict(SKIP, f"skipped: follow-up {row.step_position} no longer exists in {campaign.name}")
    return None


def _held(session: Session, row: Outbound, campaign: Campaign | None, settings: dict, now) -> Verdict | None:
    """A paused campaign, a closed window or the breaker: the row waits, and goes later."""
    if campaign is not None and not campaign.active and row.kind != "test":
        return Verdict(WAIT, "campaign paused: waiting for it to be active again", now + timedelta(hours=1))
    if campaign is not None and (row.kind == "followup" or (row.kind == "magnet" and settings["MAGNET_IN_WINDOW"])):
        opens = next_open(now, campaign.window, campaign.timezone)
        if opens > now + timedelta(seconds=1):
            return Verdict(WAIT, f"waiting for the sending window ({campaign.window}, {campaign.timezone})", opens)
    tripped = outbound.breaker(session, settings, now) if row.kind != "test" else None
    if tripped:
        return Verdict(WAIT, tripped, now + timedelta(hours=1))
    return None

"""Enrollments: one contact in one campaign, as an explicit state machine."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .contacts import record
from .models import Campaign, Contact, Enrollment, Outbound

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


def move(session: Session, enrollment: Enrollment, state: str, reason: str) -> bool:
    """Move to `state` if allowed from the current one; stopping cancels pending follow-ups."""
    if enrollment.state == state or enrollment.state not in _ALLOWED[state]:
        return False
    enrollment.state = state
    enrollment.stopped_reason = reason
    if state != ACTIVE:
        cancel_pending(session, enrollment, f"enrollment {state}: {reason}")
    record(session, enrollment.contact, f"enrollment_{state}", f"{enrollment.campaign.name}: {reason}")
    return True


def cancel_pending(session: Session, enrollment: Enrollment, why: str) -> None:
    session.execute(
        update(Outbound)
        # Only follow-ups: a magnet someone asked for still goes (the claim re-checks suppression).
        .where(Outbound.enrollment_id == enrollment.id, Outbound.state == "pending", Outbound.kind == "followup")
        .values(state="cancelled", note=why)
    )


def stop_all(session: Session, contact: Contact, state: str, reason: str) -> int:
    """Stop every enrollment of the contact (unsubscribe, bounce); returns how many moved."""
    return sum(move(session, e, state, reason) for e in contact.enrollments)


def open_for(session: Session, contact: Contact) -> list[Enrollment]:
    """Enrollments that a reply from this contact would stop."""
    return [e for e in contact.enrollments if e.state in (ACTIVE, PAUSED)]


# --------------------------------------------------------------------------- admin actions

ADMIN_MOVES = {"pause": PAUSED, "resume": ACTIVE, "stop": HALTED}


def by_id(session: Session, enrollment_id: int) -> Enrollment | None:
    return session.get(Enrollment, enrollment_id)


def admin_move(session: Session, enrollment: Enrollment, action: str, who: str, domain: str) -> Outbound | None:
    """Pause, resume or stop a sequence for an admin; a resume returns the follow-up to queue again.

    Raises EnrollmentError when the state forbids the move.
    """
    from . import outbound  # outbound imports this module; importing late breaks the cycle

    state = ADMIN_MOVES[action]
    if not move(session, enrollment, state, f"{action} by {who}"):
        raise EnrollmentError(f"cannot {action} a sequence that is {enrollment.state}")
    return outbound.resume(session, enrollment, domain) if action == "resume" else None


def resend_magnet(session: Session, enrollment: Enrollment, domain: str, repeat_days: int) -> Outbound:
    """Plan the magnet again for an admin; raises EnrollmentError or outbound.LimitError with the reason."""
    from . import contacts, outbound  # outbound imports this module; importing late breaks the cycle

    if contacts.is_suppressed(session, enrollment.contact.email):
        raise EnrollmentError("the address is suppressed (unsubscribed, bounced or erased): nothing can be sent")
    row = outbound.plan_resend(session, enrollment, domain, repeat_days)
    detail = f"{enrollment.campaign.name}: by an admin"
    record(session, enrollment.contact, "resend_planned", detail, outbound_id=row.id)
    return row

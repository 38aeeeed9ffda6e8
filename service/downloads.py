"""The magnet as a link: what a `/d/<token>` URL leads to, who downloaded what, and fresh links.

The tokens themselves are `signing`'s, like every signed token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import contacts
from .campaigns import attachment_name
from .enrollments import EnrollmentError, fresh_magnet
from .models import Asset, Contact, Enrollment, Event, Outbound, utcnow
from .signing import read_download_token

# --------------------------------------------------------------------------- what a token leads to

OK, EXPIRED, FORGED, VOID, REMOVED = "ok", "expired", "forged", "void", "removed"
DOWNLOADED, FRESH_LINK_REQUESTED = "downloaded", "fresh_link_requested"
FRESH_LINK_HOURS = 24


@dataclass(frozen=True)
class Found:
    """Where a download token leads: `state` is OK (the file), EXPIRED, FORGED, VOID (its send or its person
    is gone) or REMOVED (the file is no longer offered); `row` is the send that carried the link."""

    state: str
    row: Outbound | None = None
    asset: Asset | None = None


def find(session: Session, settings: dict, text: str) -> Found:
    """Read a token from a `/d/<token>` link and look up what it names."""
    value, expired = read_download_token(settings["SECRET_KEY"], text, settings["DOWNLOAD_LINK_DAYS"])
    if value is None:
        return Found(FORGED)
    row = session.get(Outbound, value[0])
    # Erasure deletes a person's ledger rows; a row with no person that is not a test send was theirs too.
    if row is None or (row.contact_id is None and row.kind != "test"):
        return Found(VOID)
    if expired:
        return Found(EXPIRED, row)
    asset = session.get(Asset, value[1])
    if asset is None or asset.campaign_id != row.campaign_id:
        return Found(REMOVED, row)
    return Found(OK, row, asset)


def record_download(session: Session, row: Outbound, asset: Asset) -> Event | None:
    """Put the person's first download of the campaign's magnet on their timeline (and so in the funnel);
    a later one, or one from a test send, records nothing."""
    if row.contact_id is None:
        return None
    before = (
        select(Event.id).join(Outbound, Event.outbound_id == Outbound.id)
        .where(Event.kind == DOWNLOADED, Event.contact_id == row.contact_id, Outbound.campaign_id == row.campaign_id)
        .limit(1)
    )
    if session.scalar(before) is not None:
        return None
    detail = f"{asset.campaign.name}: {attachment_name(asset)}"
    return contacts.record(session, session.get(Contact, row.contact_id), DOWNLOADED, detail, outbound_id=row.id)


# --------------------------------------------------------------------------- a fresh link for an expired one


def refusal(session: Session, row: Outbound) -> str | None:
    """Why no fresh link can go to the person an expired link was for, or None when one can."""
    if row.enrollment_id is None:
        return "this link came with a test send; send yourself a new test from the campaign page"
    contact = session.get(Contact, row.contact_id)
    if any(contacts.is_suppressed(session, a) for a in {row.to_address, contact.email}):
        return "this address unsubscribed or cannot be mailed, so nothing can be sent to it"
    return None


def request_fresh(session: Session, row: Outbound, domain: str) -> Outbound | None:
    """Plan the magnet again, with fresh links, for the person whose link (`row`'s) expired; None when they
    asked within FRESH_LINK_HOURS already. Raises EnrollmentError when nothing can be sent.

    The limit is read from the timeline, not Redis, so it holds across processes and a Redis flush.
    """
    why = refusal(session, row)
    if why:
        raise EnrollmentError(why)
    since = utcnow() - timedelta(hours=FRESH_LINK_HOURS)
    asked = select(Event.id).where(
        Event.kind == FRESH_LINK_REQUESTED, Event.created_at >= since, Event.contact_id == row.contact_id
    )
    if session.scalar(asked.limit(1)) is not None:
        return None
    enrollment = session.get(Enrollment, row.enrollment_id)
    fresh = fresh_magnet(session, enrollment, row, domain)
    contacts.record(session, enrollment.contact, FRESH_LINK_REQUESTED,
                    f"{enrollment.campaign.name}: from an expired download link", outbound_id=fresh.id)
    return fresh

"""Intake: store each inbound message first, then classify it and apply the consequence.

Classify first, act second: only mail a human wrote triggers anything, and
processing a message twice is harmless because every send goes through a
uniquely keyed ledger row.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime, time, timedelta
from email.utils import parseaddr

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import campaigns, contacts, enrollments, outbound
from .inbound import Classification, Identity, Parsed, classify, machine_address, parse
from .mailer import unsubscribe_address
from .models import Contact, Enrollment, Event, InboundMessage, Outbound, utcnow
from .signing import read_unsubscribe_token, read_verp_token

log = logging.getLogger(__name__)


def identity(settings: dict) -> Identity:
    """Who we are, so our own mail coming back is recognised as a loop."""
    own = parseaddr(settings["MAIL_FROM"])[1].lower()
    return Identity(
        addresses=(own,),
        domains=(settings["MAIL_DOMAIN"],),
        bounce_address=settings.get("BOUNCE_ADDRESS"),
        unsubscribe_address=unsubscribe_address(settings),
    )


def store(
    session: Session, mailbox: str, uidvalidity: int, uid: int | None, raw: bytes,
    arrived_at: datetime | None, backlog: bool = False, source_key: str | None = None, role: str = "inbox",
) -> InboundMessage | None:
    """Insert the raw message under its unique key; None if it is already stored.

    `role` "sent" marks mail the consultant sent (read from the Sent folder), which may stop a sequence.
    """
    row = InboundMessage(
        mailbox=mailbox, folder_role=role, uidvalidity=uidvalidity, uid=uid, source_key=source_key, raw=raw,
        sha256=hashlib.sha256(raw).hexdigest(), size=len(raw), arrived_at=arrived_at,
        state="backlog" if backlog else "new",
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return None
    return row


def stored_before(session: Session, mailbox: str, raw: bytes) -> bool:
    """After a UIDVALIDITY change the same bytes come back under new UIDs."""
    digest = hashlib.sha256(raw).hexdigest()
    query = select(InboundMessage.id).where(
        InboundMessage.mailbox == mailbox, InboundMessage.sha256 == digest
    )
    return session.scalar(query.limit(1)) is not None


def process(session: Session, message: InboundMessage, settings: dict) -> list[Outbound]:
    """Classify a stored message and apply its consequence; returns ledger rows to queue."""
    parsed = parse(message.raw)
    result = classify(parsed, campaigns.rules(session), identity(settings))
    _describe(message, parsed, result)
    message.processed_at = utcnow()
    if message.state == "backlog":  # first-connect history: described for the admin, never acted on
        return []
    rows = _HANDLERS[result.kind](session, message, parsed, result, settings)
    if message.state != "review":
        message.state = "review" if result.review else "processed"
    return rows


def _describe(message: InboundMessage, parsed: Parsed, result: Classification) -> None:
    message.kind = result.kind
    message.campaign_slug = result.campaign
    message.reasons = list(result.reasons)
    message.message_id = (parsed.message_id or "")[:998] or None
    message.from_address = parsed.from_address
    message.subject = (parsed.subject or "")[:998]
    message.new_text = parsed.new_text[:20000]


def _review(message: InboundMessage, reason: str) -> None:
    message.state = "review"
    message.reasons = [*message.reasons, reason]


def _sender(parsed: Parsed, settings: dict) -> str | None:
    """RFC 3834 §4: answer the Reply-To if given, else the From; never ourselves or a machine (§1.12)."""
    for address in (parsed.reply_to, parsed.from_address):
        if address and "@" in address and not machine_address(address) and (
            address.rsplit("@", 1)[1] != settings["MAIL_DOMAIN"]
        ):
            return address
    return None


def _failed_authentication(parsed: Parsed) -> str | None:
    """Our own MTA's verdict (RFC 8601): a forged From must not make us mail a stranger."""
    for header in parsed.headers.get_all("Authentication-Results") or []:
        if re.search(r"\bdmarc\s*=\s*fail\b", str(header), re.I):
            return "Authentication-Results: dmarc=fail"
    return None


def on_request(session, message, parsed, result, settings) -> list[Outbound]:
    if _answered_us(session, message, parsed, result):
        return []
    to = _sender(parsed, settings)
    campaign = campaigns.by_slug(session, result.campaign)
    forged = _failed_authentication(parsed)
    if not to or campaign is None or forged:
        _review(message, forged or "request without a usable sender address or campaign")
        return []
    if _suppressed_request(session, message, to):
        return []
    contact = contacts.upsert(session, to, parsed.from_name)
    # One request at a time per contact (PostgreSQL row lock), so two workers can't both send a magnet.
    session.execute(select(Contact.id).where(Contact.id == contact.id).with_for_update())
    message.contact_id = contact.id
    contacts.record(session, contact, "request", f"asked for {campaign.name}", inbound_id=message.id)
    enrollment, _ = enrollments.enroll(session, contact, campaign)
    if outbound.recent_magnet(session, contact.id, settings["MAGNET_REPEAT_DAYS"]):
        _review(message, f"repeat request within {settings['MAGNET_REPEAT_DAYS']} days: no second magnet")
        contacts.record(session, contact, "repeat_request", "magnet already sent recently", inbound_id=message.id)
        return []
    threaded_under = parsed.references or parsed.in_reply_to
    return [outbound.plan_magnet(session, message, enrollment, to, settings["MAIL_DOMAIN"], parsed.subject,
                                 threaded_under)]


def _answered_us(session: Session, message: InboundMessage, parsed: Parsed, result: Classification) -> bool:
    """An enrolled prospect writing again is answering us: their sequence stops either way, and
    unless they name the campaign again it is a reply, not a new request."""
    known = _known_contact(session, parsed)
    if known is None or not enrollments.open_for(session, known):
        return False
    _replied(session, message, known, parsed.new_text)
    if _asks_again(session, parsed, result):
        return False
    message.kind = "human"
    message.reasons = [*message.reasons, "sender is enrolled already: treated as a reply"]
    return True


def _suppressed_request(session: Session, message: InboundMessage, address: str) -> bool:
    """Checked before any contact is created: an erased person must not come back by asking again."""
    if not contacts.is_suppressed(session, address):
        return False
    known = contacts.find(session, address)
    message.contact_id = known.id if known else None
    message.reasons = [*message.reasons, "address is suppressed: nothing sent"]
    contacts.record(session, known, "request_ignored", "address is suppressed", inbound_id=message.id)
    return True


def _asks_again(session: Session, parsed: Parsed, result: Classification) -> bool:
    """A fresh message (not in our thread) that names the campaign's keywords is a repeat request."""
    if outbound.sent_ids(session, (*parsed.in_reply_to, *parsed.references)):
        return False
    campaign = campaigns.by_slug(session, result.campaign)
    words = f"{parsed.subject}\n{parsed.new_text}".lower()
    return campaign is not None and any(k.lower() in words for k in campaign.keywords)


def _known_contact(session: Session, parsed: Parsed) -> Contact | None:
    """Who wrote this: matched through our Message-IDs first (aliases), then by address."""
    rows = outbound.sent_ids(session, (*parsed.in_reply_to, *parsed.references))
    if rows:
        return session.get(Contact, rows[-1].contact_id)
    return contacts.find(session, parsed.from_address) if parsed.from_address else None


def on_human(session, message, parsed, result, settings) -> list[Outbound]:
    contact = _known_contact(session, parsed)
    if contact is None:
        _review(message, "human mail from someone we don't know, matching no campaign")
        return []
    _replied(session, message, contact, parsed.new_text)
    return []


def _replied(session: Session, message: InboundMessage, contact: Contact, text: str) -> None:
    """A human answered: a hot lead, and every open sequence of theirs stops."""
    message.contact_id = contact.id
    contact.hot = True
    contact.last_activity_at = utcnow()
    contacts.record(session, contact, "replied", text[:500], inbound_id=message.id)
    for enrollment in enrollments.open_for(session, contact):
        enrollments.move(session, enrollment, enrollments.REPLIED, "the prospect wrote back")


def on_unsubscribe(session, message, parsed, result, settings) -> list[Outbound]:
    contact = _token_contact(session, parsed.subject, settings) or _known_contact(session, parsed)
    address = contact.email if contact else parsed.from_address
    if not address:
        _review(message, "unsubscribe request without a sender address")
        return []
    unsubscribe(session, address, "asked by email", inbound_id=message.id)
    message.contact_id = contact.id if contact else None
    return []


def _token_contact(session: Session, subject: str, settings: dict) -> Contact | None:
    """The contact named by the signed token our List-Unsubscribe mailto puts in the subject."""
    for word in subject.split():
        contact_id = read_unsubscribe_token(settings["SECRET_KEY"], word)
        if contact_id:
            return session.get(Contact, contact_id)
    return None


def unsubscribe(session: Session, address: str, how: str, inbound_id: int | None = None) -> None:
    """Suppress the address and end all its sequences at once."""
    contacts.suppress(session, address, "unsubscribed", how)
    contact = contacts.find(session, address)
    if contact:
        contacts.record(session, contact, "unsubscribed", how, inbound_id=inbound_id)
        enrollments.stop_all(session, contact, enrollments.UNSUBSCRIBED, how)


def on_bounce(session, message, parsed, result, settings) -> list[Outbound]:
    bounce = result.bounce or {}
    original = _bounced_row(session, bounce, settings)
    recipients = bounce.get("recipients", [])
    for rcpt in recipients:
        if rcpt.get("action") not in ("failed", "", None):
            continue  # RFC 3464 §2.3.3: delayed, relayed or delivered changes nothing
        tied = original if len(recipients) == 1 else None
        contact = _bounced_contact(session, rcpt.get("address"), tied)
        if contact is None:
            continue
        message.contact_id = contact.id
        _apply_bounce(session, contact, rcpt, settings, message.id, tied)
    if message.contact_id is None:
        message.reasons = [*message.reasons, "bounce for mail we never sent: nothing changed"]
    return []


def _bounced_row(session: Session, bounce: dict, settings: dict) -> Outbound | None:
    """Tie a bounce to what we sent: signed VERP token, then the enclosed Message-ID."""
    row_id = read_verp_token(settings["SECRET_KEY"], bounce.get("verp_token"))
    if row_id:
        return session.get(Outbound, row_id)
    original = (bounce.get("original_message_id") or "").strip("<>")
    if original:
        return session.scalar(select(Outbound).where(Outbound.message_id == original))
    return None


def _bounced_contact(session: Session, address: str | None, original: Outbound | None) -> Contact | None:
    if original is not None:
        return session.get(Contact, original.contact_id)
    if not address:
        return None
    contact = contacts.find(session, address)
    sent = contact and session.scalar(
        select(Outbound.id).where(Outbound.contact_id == contact.id, Outbound.state == "sent").limit(1)
    )
    return contact if sent else None


def _apply_bounce(
    session, contact: Contact, rcpt: dict, settings: dict, inbound_id: int, original: Outbound | None
) -> None:
    status = rcpt.get("status") or "?"
    if rcpt.get("permanent"):
        contacts.suppress(session, contact.email, "bounced", f"permanent bounce {status}")
        contacts.record(session, contact, "bounce_hard", f"status {status}", inbound_id=inbound_id)
        enrollments.stop_all(session, contact, enrollments.BOUNCED, f"address bounced ({status})")
        return
    contacts.record(session, contact, "bounce_soft", f"status {status}", inbound_id=inbound_id)
    # A mailbox full or a policy block: this sequence stops, the address stays usable for now.
    stopped = [session.get(Enrollment, original.enrollment_id)] if original and original.enrollment_id else None
    for enrollment in stopped or enrollments.open_for(session, contact):
        enrollments.move(session, enrollment, enrollments.BOUNCED, f"delivery failed ({status}), address kept")
    limit = settings.get("SOFT_BOUNCE_LIMIT", 5)
    if _count_events(session, contact, "bounce_soft") >= limit:
        contacts.suppress(session, contact.email, "bounced", f"{limit} soft bounces")
        enrollments.stop_all(session, contact, enrollments.BOUNCED, f"{limit} soft bounces")


def _count_events(session: Session, contact: Contact, kind: str) -> int:
    query = select(func.count(Event.id)).where(Event.contact_id == contact.id, Event.kind == kind)
    return session.scalar(query)


def on_complaint(session, message, parsed, result, settings) -> list[Outbound]:
    report = result.bounce or {}
    # What we sent (VERP, enclosed Message-ID) names the person even when the report is redacted.
    original = _bounced_row(session, report, settings)
    contact = session.get(Contact, original.contact_id) if original and original.contact_id else None
    addresses = [contact.email] if contact else [r["address"] for r in report.get("recipients", []) if r.get("address")]
    for address in addresses:
        contacts.suppress(session, address, "complaint", "spam complaint (ARF)")
        complained = contacts.find(session, address)
        message.contact_id = complained.id if complained else message.contact_id
        contacts.record(session, complained, "complaint", "spam complaint (ARF)", inbound_id=message.id)
        unsubscribe(session, address, "spam complaint", inbound_id=message.id)
    if not addresses:
        _review(message, "complaint that names no address we know")
    return []


def on_auto_reply(session, message, parsed, result, settings) -> list[Outbound]:
    contact = _known_contact(session, parsed)
    if contact is None:
        return []
    message.contact_id = contact.id
    detail = f"away until {result.ooo_until}" if result.ooo_until else "auto-reply"
    contacts.record(session, contact, "auto_reply", detail, inbound_id=message.id)
    if result.ooo_until:
        _postpone(session, contact, result.ooo_until)
    return []


def _postpone(session: Session, contact: Contact, until) -> None:
    """An out-of-office with a return date: the next follow-up waits until the day after."""
    for enrollment in enrollments.open_for(session, contact):
        campaign = enrollment.campaign
        tz = campaigns.zone(campaign.timezone)
        back = datetime.combine(until + timedelta(days=1), time(9, 0), tz)
        for row in session.scalars(
            select(Outbound).where(Outbound.enrollment_id == enrollment.id, Outbound.state == "pending")
        ):
            if row.kind == "followup" and row.due_at < back:
                row.due_at = campaigns.next_open(back, campaign.window, campaign.timezone)


CORRECTIONS = ("request", "auto_reply", "human", "bulk")


def correct(
    session: Session, message: InboundMessage, kind: str, settings: dict,
    campaign_slug: str | None = None, contact: Contact | None = None,
) -> list[Outbound]:
    """An admin's override of the classifier, with the same consequences; recorded as a correction."""
    if kind not in CORRECTIONS:
        raise ValueError(f"cannot correct a message to {kind!r}")
    parsed = parse(message.raw)
    was = message.kind
    message.kind, message.state, message.campaign_slug = kind, "processed", campaign_slug
    message.reasons = [*message.reasons, f"corrected by an admin: {was} → {kind}"]
    rows: list[Outbound] = []
    if kind == "request":
        result = Classification(kind="request", campaign=campaign_slug)
        rows = on_request(session, message, parsed, result, settings)
    elif kind == "human" and contact is not None:
        _replied(session, message, contact, parsed.new_text)
    who = contact or (session.get(Contact, message.contact_id) if message.contact_id else None)
    contacts.record(session, who, "correction", f"{was} → {kind}", inbound_id=message.id)
    return rows


def on_nothing(session, message, parsed, result, settings) -> list[Outbound]:
    if result.kind == "loop":
        log.critical("our own mail came back into the mailbox: inbound #%s (%s)", message.id, result.reasons)
    return []


_HANDLERS = {
    "request": on_request,
    "human": on_human,
    "unsubscribe": on_unsubscribe,
    "bounce": on_bounce,
    "complaint": on_complaint,
    "auto_reply": on_auto_reply,
    "bulk": on_nothing,
    "loop": on_nothing,
}

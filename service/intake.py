"""Intake: store each inbound message first, then classify it and apply the consequence.

Classify first, act second: only mail a human wrote triggers anything, and
processing a message twice is harmless because every send goes through a
uniquely keyed ledger row.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import campaigns, contacts, enrollments, inbound, mailboxes, outbound, stats
from .inbound import Classification, Identity, Parsed, classify, machine_address, parse
from .mailer import unsubscribe_address
from .models import Contact, Enrollment, Event, InboundMessage, Outbound, Suppression, utcnow
from .signing import read_unsubscribe_token, read_verp_token

log = logging.getLogger(__name__)
UNVERIFIED = "no authentication results for the sender: follow-ups wait until they write again or you resume"


def identity(settings: dict, session: Session | None = None) -> Identity:
    """Who we are, so our own mail coming back is recognised as a loop: with a session, every mailbox."""
    own = mailboxes.own_addresses(session, settings) if session else [parseaddr(settings["MAIL_FROM"])[1].lower()]
    return Identity(
        addresses=tuple(own),
        # Only the deployment's domain: our Message-IDs are on it, whichever mailbox sends. A mailbox on a
        # public provider's domain (gmail.com) must not make everyone's mail there look like our own.
        domains=(settings["MAIL_DOMAIN"],),
        bounce_address=settings.get("BOUNCE_ADDRESS"),
        unsubscribe_address=unsubscribe_address(settings),
    )


def store(
    session: Session, mailbox: str, uidvalidity: int, uid: int | None, raw: bytes,
    arrived_at: datetime | None, backlog: bool = False, source_key: str | None = None, role: str = "inbox",
    slug: str = "default",
) -> InboundMessage | None:
    """Insert the raw message under its unique key; None if it is already stored.

    `role` "sent" marks mail the consultant sent (read from the Sent folder), which may stop a sequence.
    """
    row = InboundMessage(
        mailbox=mailbox, mailbox_slug=slug, folder_role=role, uidvalidity=uidvalidity, uid=uid, source_key=source_key,
        raw=raw, sha256=hashlib.sha256(raw).hexdigest(), size=len(raw), arrived_at=arrived_at,
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


@dataclass(frozen=True)
class Understood:
    """A message parsed and classified: pure work on its bytes, done outside any transaction.

    `result` is None for mail from the consultant's Sent folder, which is not classified.
    """

    parsed: Parsed
    result: Classification | None


def understand(raw: bytes, role: str, rules: list[inbound.CampaignRule], who: Identity) -> Understood:
    parsed = parse(raw)
    return Understood(parsed, None if role == "sent" else classify(parsed, rules, who))


def process(session: Session, message: InboundMessage, settings: dict) -> list[Outbound]:
    """Classify a stored message and apply its consequence; returns ledger rows to queue."""
    rules = campaigns.rules(session, message.mailbox_slug)
    understood = understand(message.raw, message.folder_role, rules, identity(settings, session))
    return apply(session, message, understood, settings)


def apply(session: Session, message: InboundMessage, understood: Understood, settings: dict) -> list[Outbound]:
    """The consequence of what a message is; the caller commits (one short transaction)."""
    parsed, result = understood.parsed, understood.result
    if result is None:
        return _consultant_sent(session, message, parsed)
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


def _note(message: InboundMessage, reason: str) -> None:
    message.reasons = [*message.reasons, reason]


# --------------------------------------------------------------------------- the consultant's own mail


def _consultant_sent(session: Session, message: InboundMessage, parsed: Parsed) -> list[Outbound]:
    """Mail in the Sent folder: one the consultant wrote to a prospect means they took over."""
    _describe(message, parsed, Classification("sent"))
    message.processed_at = utcnow()
    if message.state == "backlog":  # Sent history from before the first connect changes nothing
        return []
    message.state = "processed"
    if parsed.message_id and outbound.sent_ids(session, (parsed.message_id,)):
        _note(message, "our own copy of what Follow-Through sent: nothing to do")
        return []
    for address in parsed.recipients:
        contact = contacts.find(session, address)
        if contact is not None:
            _taken_over(session, message, contact, address)
    if message.contact_id is None:
        _note(message, "sent by the consultant to no contact: nothing to do")
    return []


def _taken_over(session: Session, message: InboundMessage, contact: Contact, address: str) -> None:
    message.contact_id = contact.id
    stopped = [e for e in enrollments.open_for(session, contact)
               if enrollments.move(session, e, enrollments.HALTED, "the consultant answered personally", message.id)]
    contacts.record(session, contact, "consultant_replied", f"to {address}: {message.subject}"[:500],
                    inbound_id=message.id)
    contact.hot = False  # the lead is handled: the consultant is on it
    contact.last_activity_at = utcnow()
    what = f"{len(stopped)} sequence(s) stopped" if stopped else "no running sequence"
    _note(message, f"the consultant wrote to {address} personally: {what}")


# --------------------------------------------------------------------------- requests


def _usable(address: str | None, settings: dict) -> bool:
    """RFC 3834 §1.12: never answer ourselves or a machine."""
    return bool(address and "@" in address and not machine_address(address)
                and address.rsplit("@", 1)[1] != settings["MAIL_DOMAIN"])


def _domain(address: str | None) -> str:
    return address.rsplit("@", 1)[1].lower() if address and "@" in address else ""


def _sender(parsed: Parsed, settings: dict) -> str | None:
    """Whom to answer: the Reply-To when we may trust it (RFC 3834 §4), else the From."""
    if _usable(parsed.reply_to, settings) and _trusted_reply_to(parsed, settings):
        return parsed.reply_to
    return parsed.from_address if _usable(parsed.from_address, settings) else None


def _trusted_reply_to(parsed: Parsed, settings: dict) -> bool:
    """A Reply-To elsewhere than the From's domain could aim our mail at anyone: it counts only when the
    From's domain vouches for the message (DMARC pass at our server) or it is on that domain."""
    sender, reply = _domain(parsed.from_address), _domain(parsed.reply_to)
    if not sender:
        return False
    if reply == sender or reply.endswith(f".{sender}") or parsed.reply_to == parsed.from_address:
        return True
    return _dmarc(parsed, settings) == ("pass", sender)


def _redirected(parsed: Parsed, settings: dict) -> str | None:
    """Why the Reply-To was not used, when it names someone else."""
    if not _usable(parsed.reply_to, settings) or parsed.reply_to == parsed.from_address:
        return None
    if _trusted_reply_to(parsed, settings):
        return None
    return f"asks us to reply to someone else ({parsed.reply_to}, not the sender {parsed.from_address})"


# RFC 8601: our own server's verdict comes first in the message (receivers prepend); AUTHSERV_ID, when
# set, names it, so a verdict the sender wrote into the message is never believed.
_AUTH_BOUND = 4000  # characters of one Authentication-Results header that are read
_DMARC = re.compile(r"\bdmarc\s*=\s*([a-z]+)", re.I)
_HEADER_FROM = re.compile(r"\bheader\.from\s*=\s*\"?([^\s;\"]+)", re.I)


def _trusted_results(parsed: Parsed, settings: dict) -> str | None:
    found = [str(h)[:_AUTH_BOUND] for h in parsed.headers.get_all("Authentication-Results") or []]
    authserv = (settings.get("AUTHSERV_ID") or "").lower()
    if authserv:
        found = [h for h in found if h.split(";", 1)[0].strip().lower() == authserv]
    return found[0] if found else None


def _dmarc(parsed: Parsed, settings: dict) -> tuple[str, str] | None:
    """(result, header.from domain) of DMARC in our server's Authentication-Results, if it says."""
    results = _trusted_results(parsed, settings)
    for clause in (results or "").split(";")[1:]:
        verdict = _DMARC.search(clause)
        if verdict:
            domain = _HEADER_FROM.search(clause)
            return verdict.group(1).lower(), (domain.group(1).lower() if domain else _domain(parsed.from_address))
    return None


def _failed_authentication(parsed: Parsed) -> str | None:
    """Our own MTA's verdict (RFC 8601): a forged From must not make us mail a stranger."""
    for header in parsed.headers.get_all("Authentication-Results") or []:
        if re.search(r"\bdmarc\s*=\s*fail\b", str(header)[:_AUTH_BOUND], re.I):
            return "Authentication-Results: dmarc=fail"
    return None


def _unauthenticated(parsed: Parsed, settings: dict) -> bool:
    """No verdict from our server at all: the From may be anyone's, so we answer but do not follow up."""
    return _trusted_results(parsed, settings) is None and not settings.get("FOLLOW_UP_UNAUTHENTICATED")


def _over_cap(session: Session, parsed: Parsed, to: str, settings: dict) -> str | None:
    """A flood (or someone aiming us at one domain) waits in Review: magnets per hour per sender address,
    per sending domain and per recipient domain."""
    since = utcnow() - timedelta(hours=1)
    checks = (
        ("sender", parsed.from_address, settings["REQUEST_CAP_SENDER_HOUR"],
         lambda: outbound.magnets_since(session, since, from_address=parsed.from_address)),
        ("sending domain", _domain(parsed.from_address), settings["REQUEST_CAP_DOMAIN_HOUR"],
         lambda: outbound.magnets_since(session, since, from_domain=_domain(parsed.from_address))),
        ("recipient domain", _domain(to), settings["REQUEST_CAP_DOMAIN_HOUR"],
         lambda: outbound.magnets_since(session, since, to_domain=_domain(to))),
    )
    for label, value, cap, count in checks:
        if value and cap and (found := count()) >= cap:
            return f"{stats.HOURLY_LIMIT}: {found} magnets for {label} {value} in the last hour (cap {cap})"
    return None


def on_request(session, message, parsed, result, settings) -> list[Outbound]:
    known, _ = _known_contact(session, parsed)
    enrolled = known is not None and enrollments.open_for(session, known)
    if enrolled and not _names_again(session, parsed, result):
        # An enrolled prospect writing to the trigger address without asking for the magnet is answering us.
        message.kind = "human"
        _note(message, "sender is enrolled already: treated as a reply")
        _replied(session, message, known, parsed)
        return []
    return _request(session, message, parsed, result.campaign, settings, contact=known)


def _names_again(session: Session, parsed: Parsed, result: Classification) -> bool:
    """Asked by name, not only by writing to the trigger address: a request again, not a reply."""
    if result.via == "asked":
        return True
    campaign = campaigns.by_slug(session, result.campaign) if result.campaign else None
    return campaign is not None and inbound.asks_for_magnet(parsed, campaigns.rule(campaign)) is not None


def _request(
    session: Session, message: InboundMessage, parsed: Parsed, slug: str | None, settings: dict,
    again: bool = False, contact: Contact | None = None,
) -> list[Outbound]:
    """Answer a request with the magnet, once per person per period (`again`: an admin said send it anyway).

    `contact` is the person when we know them already (they wrote in our thread, perhaps from another address).
    """
    to = _sender(parsed, settings)
    campaign = campaigns.by_slug(session, slug) if slug else None
    forged = _failed_authentication(parsed)
    if not to or campaign is None or forged:
        _review(message, forged or "request without a usable sender address or campaign")
        return []
    if _suppressed_request(session, message, to, contact, again):
        return []
    held = None if again else (_redirected(parsed, settings) or _over_cap(session, parsed, to, settings))
    if held:
        _review(message, held)
        log.warning("inbound #%s waits in Review: %s", message.id, held)
        return []
    contact = contact or contacts.upsert(session, to, parsed.from_name)
    _learn_addresses(session, contact, parsed, to)
    # One request at a time per contact (PostgreSQL row lock), so two workers can't both send a magnet.
    session.execute(select(Contact.id).where(Contact.id == contact.id).with_for_update())
    message.contact_id = contact.id
    enrollment, _ = enrollments.enroll(session, contact, campaign)
    contacts.record(session, contact, "request", f"asked for {campaign.name}", inbound_id=message.id)
    if not again and _unauthenticated(parsed, settings) and enrollment.state == enrollments.ACTIVE:
        enrollments.move(session, enrollment, enrollments.PAUSED, UNVERIFIED, message.id)
    days = settings["MAGNET_REPEAT_DAYS"]
    if not again and outbound.recent_magnet(session, contact.id, days):
        _review(message, f"asked again: repeat request within {days} days: no second magnet")
        contacts.record(session, contact, "repeat_request", "magnet already sent recently", inbound_id=message.id)
        return []
    thread = parsed.references or parsed.in_reply_to
    index = parsed.headers.get("Thread-Index")
    return [enrollments.start(
        session, message, enrollment, to, settings["MAIL_DOMAIN"], parsed.subject, thread, str(index or "") or None,
    )]


def _learn_addresses(session: Session, contact: Contact, parsed: Parsed, to: str) -> None:
    """The addresses one request shows for a person: the Reply-To it asked us to use, its From, a +tag form."""
    if to != contact.email:
        contacts.add_address(session, contact, to, "reply-to" if to == parsed.reply_to else "plus-tag")
    if contacts.base_address(to) != to:  # asked from leo+work@: a later leo@ is the same person
        contacts.add_address(session, contact, contacts.base_address(to), "plus-tag")
    if parsed.from_address and parsed.from_address != to:
        contacts.add_address(session, contact, parsed.from_address, "from")


# A suppression's reason, as Review says what the person asked after.
_ASKED_AFTER = {"unsubscribed": "an unsubscribe", "erased": "an erase", "bounced": "their address bounced",
                "complaint": "a spam complaint"}


def _suppressed_request(
    session: Session, message: InboundMessage, address: str, contact: Contact | None, again: bool,
) -> bool:
    """Checked before any contact is created: an erased or unsubscribed person must not come back by asking
    again. Their request waits in Review, saying what the consultant may do; an admin who then says "a
    request" (`again`) has decided, so the suppression is lifted and the request answered."""
    addresses = list(dict.fromkeys([address, *([contact.email] if contact else [])]))
    held = next(filter(None, (_suppression(session, a) for a in addresses)), None)
    if held is None:
        return False
    if again:
        for each in addresses:
            contacts.resubscribe(session, each, f"an admin answered their request (inbound #{message.id})")
        _note(message, f"resubscribed by an admin (was: {held.reason}), so the request is answered")
        return False
    known = contact or contacts.find(session, address)
    # No contact on the message: Review would show a known one as "asked again inside the repeat limit".
    message.contact_id = None
    _review(message, _asked_after(held, known is not None))
    contacts.record(session, known, "request_ignored",
                    f"asked again after {_ASKED_AFTER.get(held.reason, held.reason)}: waits in Review",
                    inbound_id=message.id)
    return True


def _suppression(session: Session, address: str) -> Suppression | None:
    """Why the address, or its plain form (leo@ for leo+news@), may not be mailed, if it may not."""
    return contacts.suppression(session, address) or contacts.suppression(session, contacts.base_address(address))


def _asked_after(held: Suppression, known: bool) -> str:
    """Review's reason for a suppressed person's request: what happened before, and what the consultant may do."""
    why = f": {held.detail}" if held.detail and held.reason != "erased" else ""
    made, kept = ("", "; their stopped sequences stay stopped") if known else (" and no contact was made", "")
    return (f"asked again after {_ASKED_AFTER.get(held.reason, held.reason)} (on {held.created_at:%Y-%m-%d}{why}): "
            f"nothing was sent{made}. You may send the magnet (“This is a request”, which resubscribes the "
            f"address{kept}), or leave it (“Nothing to do”).")


# --------------------------------------------------------------------------- people answering


def _known_contact(session: Session, parsed: Parsed) -> tuple[Contact | None, bool]:
    """Who wrote this, and whether they wrote inside one of our threads (matched by our Message-IDs first,
    so an alias counts), else by any of their addresses."""
    rows = outbound.sent_ids(session, (*parsed.in_reply_to, *parsed.references))
    ours = [r for r in rows if r.contact_id]
    if ours:
        return session.get(Contact, ours[-1].contact_id), True
    return (contacts.find(session, parsed.from_address) if parsed.from_address else None), False


def on_human(session, message, parsed, result, settings) -> list[Outbound]:
    contact, in_thread = _known_contact(session, parsed)
    if contact is None:
        if not (result.review or result.campaign):
            _note(message, "from someone who is not a contact: nothing to do")
        return []
    if in_thread and parsed.from_address and _sender(parsed, settings) == parsed.from_address:
        contacts.add_address(session, contact, parsed.from_address, "replied in thread")
    resend = inbound.asks_to_resend(parsed) if enrollments.open_for(session, contact) else None
    if resend:
        return _asked_again(session, message, parsed, contact, resend, settings)
    _replied(session, message, contact, parsed)
    return []


def _asked_again(session, message, parsed: Parsed, contact: Contact, why: str, settings: dict) -> list[Outbound]:
    """"Could you send it again?" inside our thread is a repeat request, never a reply."""
    slug = _last_campaign(session, contact)
    message.kind, message.campaign_slug = "request", slug
    message.reasons = [r for r in message.reasons if not r.startswith("person-written reply")]
    _note(message, f"asks for the magnet again: {why}")
    return _request(session, message, parsed, slug, settings, contact=contact)


def _last_campaign(session: Session, contact: Contact) -> str | None:
    opened = enrollments.open_for(session, contact)
    return opened[-1].campaign.slug if opened else None


def _replied(session: Session, message: InboundMessage, contact: Contact, parsed: Parsed) -> None:
    """A human answered: a hot lead, and every open sequence of theirs stops; the timeline says from where."""
    message.contact_id = contact.id
    contact.hot = True
    contact.last_activity_at = utcnow()
    address = parsed.from_address or "an unknown address"
    via = "" if address == contact.email else f" (from {address})"
    contacts.record(session, contact, "replied", f"{parsed.new_text[:480]}{via}", inbound_id=message.id)
    for enrollment in enrollments.open_for(session, contact):
        enrollments.move(session, enrollment, enrollments.REPLIED, f"the prospect wrote back{via}", message.id)


# --------------------------------------------------------------------------- stopping


def on_unsubscribe(session, message, parsed, result, settings) -> list[Outbound]:
    contact = _token_contact(session, parsed.subject, settings) or _known_contact(session, parsed)[0]
    address = contact.email if contact else parsed.from_address
    if not address:
        _review(message, "unsubscribe request without a sender address")
        return []
    # Opting out must stay easy, so even a From that fails DMARC unsubscribes; the timeline says so.
    how = "asked by email" + ("; its From failed DMARC, so it may not be theirs" if _failed_authentication(parsed)
                              else "")
    unsubscribe(session, address, how, inbound_id=message.id)
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
    contacts.suppress(session, address, "unsubscribed", how, inbound_id=inbound_id)
    contact = contacts.find(session, address)
    if contact:
        contacts.record(session, contact, "unsubscribed", how, inbound_id=inbound_id)
        enrollments.stop_all(session, contact, enrollments.UNSUBSCRIBED, how, inbound_id)


def on_bounce(session, message, parsed, result, settings) -> list[Outbound]:
    """Only a bounce tied to one of our sends to that address (signed VERP token, or our Message-ID
    enclosed) changes anything; any other goes to Review, so no stranger can silence a prospect."""
    bounce = result.bounce or {}
    failed = [r for r in bounce.get("recipients", []) if r.get("action") in ("failed", "", None)]
    if not failed:
        _note(message, "delivery notice that failed nothing: nothing changed")  # RFC 3464 §2.3.3: delayed etc.
        return []
    original = _bounced_row(session, bounce, settings)
    contact = session.get(Contact, original.contact_id) if original and original.contact_id else None
    # The signed VERP token names the very send, even when the remote MTA rewrote the address beyond
    # recognition; an enclosed Message-ID must also name the address we sent to.
    by_token = read_verp_token(settings["SECRET_KEY"], bounce.get("verp_token")) is not None
    tied = [r for r in failed
            if contact and (by_token or _names_our_send(session, original, contact, r.get("address")))]
    if not tied:
        return _untied(session, message, "bounce", [r.get("address") for r in failed])
    message.contact_id = contact.id
    for rcpt in tied:
        _apply_bounce(session, contact, rcpt, settings, message.id, original)
    return []


def _names_our_send(session: Session, original: Outbound, contact: Contact, address: str | None) -> bool:
    """The report is about the address we sent to (or names none, as redacted reports do)."""
    if not address:
        return True
    address = contacts.normalise(address)
    return address == original.to_address or (found := contacts.find(session, address)) is not None and (
        found.id == contact.id
    )


def _untied(session: Session, message: InboundMessage, what: str, addresses: list[str | None]) -> list[Outbound]:
    """A report that names an address but none of our sends: shown in Review with one click to apply it
    (the person is put on the message when we know them), never applied, never counted by the breaker."""
    named = [a for a in addresses if a]
    if not named:
        _note(message, f"{what} for mail we never sent: nothing changed")
        return []
    known = next((c for c in (contacts.find(session, a) for a in named) if c is not None), None)
    message.contact_id = known.id if known else None
    _review(message, f"{what} for {', '.join(named[:3])}, not tied to anything we sent")
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


def _apply_bounce(
    session, contact: Contact, rcpt: dict, settings: dict, inbound_id: int, original: Outbound | None
) -> None:
    status = rcpt.get("status") or "?"
    if rcpt.get("permanent"):
        contacts.suppress(session, contact.email, "bounced", f"permanent bounce {status}", inbound_id)
        contacts.record(session, contact, "bounce_hard", f"status {status}", inbound_id=inbound_id)
        enrollments.stop_all(session, contact, enrollments.BOUNCED, f"address bounced ({status})", inbound_id)
        return
    contacts.record(session, contact, "bounce_soft", f"status {status}", inbound_id=inbound_id)
    # A mailbox full or a policy block: this sequence stops, the address stays usable for now.
    stopped = [session.get(Enrollment, original.enrollment_id)] if original and original.enrollment_id else None
    for enrollment in stopped or enrollments.open_for(session, contact):
        why = f"delivery failed ({status}), address kept"
        enrollments.move(session, enrollment, enrollments.BOUNCED, why, inbound_id)
    limit = settings.get("SOFT_BOUNCE_LIMIT", 5)
    if _count_events(session, contact, "bounce_soft") >= limit:
        contacts.suppress(session, contact.email, "bounced", f"{limit} soft bounces", inbound_id)
        enrollments.stop_all(session, contact, enrollments.BOUNCED, f"{limit} soft bounces", inbound_id)


def _count_events(session: Session, contact: Contact, kind: str) -> int:
    query = select(func.count(Event.id)).where(Event.contact_id == contact.id, Event.kind == kind)
    return session.scalar(query)


def on_complaint(session, message, parsed, result, settings) -> list[Outbound]:
    """Like a bounce, a complaint counts only when it encloses one of our sends (VERP, our Message-ID):
    that also names the person when the report is redacted."""
    report = result.bounce or {}
    original = _bounced_row(session, report, settings)
    contact = session.get(Contact, original.contact_id) if original and original.contact_id else None
    named = [r.get("address") for r in report.get("recipients", [])]
    if contact is None:  # the enclosed send names the person; a report's own addresses are often redacted
        if not any(named):
            _review(message, "complaint that names no address we know")
            return []
        return _untied(session, message, "complaint", named)
    contacts.suppress(session, contact.email, "complaint", "spam complaint (ARF)", message.id)
    message.contact_id = contact.id
    contacts.record(session, contact, "complaint", "spam complaint (ARF)", inbound_id=message.id)
    unsubscribe(session, contact.email, "spam complaint", inbound_id=message.id)
    return []


def on_auto_reply(session, message, parsed, result, settings) -> list[Outbound]:
    contact, _ = _known_contact(session, parsed)
    if contact is None:
        return []
    message.contact_id = contact.id
    detail = f"away until {result.ooo_until}" if result.ooo_until else "auto-reply"
    contacts.record(session, contact, "auto_reply", detail, inbound_id=message.id)
    if result.ooo_until:
        enrollments.postpone(session, contact, result.ooo_until)
    return []


# --------------------------------------------------------------------------- an admin's corrections

CORRECTIONS = ("request", "auto_reply", "human", "bulk", "unsubscribe", "bounce_hard", "bounce_soft", "not_bounce")
_KIND_AFTER = {"bounce_hard": "bounce", "bounce_soft": "bounce", "not_bounce": "human"}


def correct(
    session: Session, message: InboundMessage, kind: str, settings: dict,
    campaign_slug: str | None = None, contact: Contact | None = None, who: str = "an admin",
) -> list[Outbound]:
    """An admin's override of the classifier: the earlier consequence is undone, then the new one applied.

    Returns ledger rows to queue. Raises ValueError when the correction cannot tell whom it is about.
    """
    if kind not in CORRECTIONS:
        raise ValueError(f"cannot correct a message to {kind!r}")
    parsed = parse(message.raw)
    own = _person_of(session, message, parsed)
    person = contact or own
    if kind.startswith("bounce") and person is None:
        raise ValueError("say whose address bounced: no contact is tied to this message")
    was = message.kind
    undone, revived = _undo(session, message, own, settings)
    message.kind, message.state = _KIND_AFTER.get(kind, kind), "processed"
    if kind == "request":
        message.campaign_slug = campaign_slug
    detail = f"{was} → {kind} by {who}" + (f"; undone: {', '.join(undone)}" if undone else "")
    _note(message, f"corrected: {detail}")
    contacts.record(session, person, "correction", detail, inbound_id=message.id)
    # "Just a person" replies only for the contact an admin named; otherwise it does nothing more.
    acting = contact if kind == "human" else person
    return revived + _CORRECTED[kind](session, message, parsed, acting, campaign_slug, settings)


def _person_of(session: Session, message: InboundMessage, parsed: Parsed) -> Contact | None:
    if message.contact_id:
        return session.get(Contact, message.contact_id)
    return _known_contact(session, parsed)[0]


def _undo(
    session: Session, message: InboundMessage, person: Contact | None, settings: dict
) -> tuple[list[str], list[Outbound]]:
    """Take back what this message caused: every sequence it moved returns to the state it left, every
    suppression it made is lifted, a magnet still waiting is cancelled. Returns what was undone and the
    follow-ups to queue again."""
    since = session.scalar(
        select(func.max(Event.id)).where(Event.inbound_id == message.id, Event.kind == "correction")
    ) or 0
    kinds = list(session.scalars(
        select(Event.kind).where(Event.inbound_id == message.id, Event.id > since).order_by(Event.id)
    ))
    undone = [k for k in dict.fromkeys(kinds) if k in _UNDONE]
    revived = enrollments.undo(session, message.id, settings["MAIL_DOMAIN"])
    contacts.unsuppress(session, message.id)
    if "replied" in undone and person is not None:
        person.hot = _replied_elsewhere(session, person, message.id)
    if "request" in undone:
        _not_a_request(session, message)
    return undone, revived


# What a correction can take back, by the timeline event that recorded it.
_UNDONE = ("replied", "unsubscribed", "complaint", "bounce_hard", "bounce_soft", "request", "consultant_replied")


def _replied_elsewhere(session: Session, person: Contact, inbound_id: int) -> bool:
    """Still a hot lead: another message of theirs was a real reply."""
    query = select(Event.id).where(Event.contact_id == person.id, Event.kind == "replied",
                                   Event.inbound_id != inbound_id)
    return session.scalar(query.limit(1)) is not None


def _not_a_request(session: Session, message: InboundMessage) -> None:
    """Not a request after all: a magnet still waiting is cancelled, and no follow-up goes."""
    row = outbound.find(session, f"reply:{message.id}")
    if row is None:
        return
    if row.state == outbound.PENDING:
        outbound.cancel(row, "an admin corrected the request: not a request")
    enrollment = session.get(Enrollment, row.enrollment_id)
    enrollments.move(session, enrollment, enrollments.HALTED, "an admin corrected the request: not a request",
                     message.id)


def _as_request(session, message, parsed, person, slug, settings) -> list[Outbound]:
    rows = _request(session, message, parsed, slug, settings, again=True, contact=person)
    for row in rows:
        if row.state == outbound.CANCELLED:  # "not a request", then "a request" after all
            outbound.revive(row, "an admin said: a request")
    return rows


def _as_reply(session, message, parsed, person, slug, settings) -> list[Outbound]:
    if person is not None:
        _replied(session, message, person, parsed)
    return []


def _as_auto_reply(session, message, parsed, person, slug, settings) -> list[Outbound]:
    if person is not None:
        contacts.record(session, person, "auto_reply", "auto-reply (an admin said)", inbound_id=message.id)
    return []


def _as_unsubscribe(session, message, parsed, person, slug, settings) -> list[Outbound]:
    address = person.email if person else parsed.from_address
    if not address:
        raise ValueError("say who asked to unsubscribe: the message has no sender address")
    unsubscribe(session, address, "asked by email (an admin said)", inbound_id=message.id)
    return []


def _as_bounce(permanent: bool):
    status = "5.1.1" if permanent else "4.2.2"

    def apply(session, message, parsed, person, slug, settings) -> list[Outbound]:
        message.contact_id = person.id
        rcpt = {"address": person.email, "status": status, "action": "failed", "permanent": permanent}
        _apply_bounce(session, person, rcpt, settings, message.id, None)
        return []

    return apply


def _nothing_more(session, message, parsed, person, slug, settings) -> list[Outbound]:
    return []


_CORRECTED = {
    "request": _as_request,
    "human": _as_reply,
    "auto_reply": _as_auto_reply,
    "bulk": _nothing_more,
    "unsubscribe": _as_unsubscribe,
    "bounce_hard": _as_bounce(permanent=True),
    "bounce_soft": _as_bounce(permanent=False),
    "not_bounce": _nothing_more,
}


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

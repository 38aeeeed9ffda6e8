"""Contacts, their addresses and the suppression list: the code that changes them.

The admin's read side (search, pages, timeline, "why") is `roster`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from types import MappingProxyType

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from .models import (
    Contact,
    ContactAddress,
    Enrollment,
    Event,
    InboundMessage,
    Outbound,
    Suppression,
    address_hash,
    utcnow,
)

TAG_LENGTH = 500
COMPANY_LENGTH = 200
# A field name is a Jinja attribute (contact.fields.NAME), so it must read as one in the sandbox.
FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
FIELD_VALUE_LENGTH = 500
FIELDS_MAX = 30
# Templates see the fields as a read-only mapping: contact.fields.keys would be its method, never a field.
RESERVED_FIELDS = frozenset(n for n in dir(MappingProxyType) if not n.startswith("_"))
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def normalise(address: str) -> str:
    return address.strip().lower()


def base_address(address: str) -> str:
    """leo+work@x → leo@x: plus-addressing delivers to the same person."""
    local, at, domain = normalise(address).partition("@")
    return f"{local.split('+', 1)[0]}{at}{domain}"


def find(session: Session, address: str) -> Contact | None:
    """The person who owns `address`: their main address, one they are known by, or its plain (+tag-less) form."""
    candidates = list(dict.fromkeys((normalise(address), base_address(address))))
    owners = dict(session.execute(select(Contact.email, Contact.id).where(Contact.email.in_(candidates))).all())
    owners.update({a: c for a, c in session.execute(
        select(ContactAddress.address, ContactAddress.contact_id).where(ContactAddress.address.in_(candidates))
    ).all() if a not in owners})
    found = next((owners[c] for c in candidates if c in owners), None)
    return session.get(Contact, found) if found else None


def add_address(session: Session, contact: Contact, address: str, how: str) -> bool:
    """Know the person by another address too; False when it is theirs already or someone else's."""
    address = normalise(address)
    if "@" not in address or address == contact.email:
        return False
    taken = session.scalar(select(Contact.id).where(Contact.email == address)) or session.scalar(
        select(ContactAddress.id).where(ContactAddress.address == address)
    )
    if taken:
        return False
    session.add(ContactAddress(contact=contact, address=address, how=how))
    session.flush()
    record(session, contact, "address_added", f"{address} ({how})")
    return True


def upsert(session: Session, address: str, name: str = "") -> Contact:
    """The contact for `address`, created if new; a known name is never blanked."""
    contact = find(session, address)
    if contact is None:
        email = normalise(address)
        contact = Contact(email=email, name=name.strip(), domain=email.rsplit("@", 1)[-1])
        session.add(contact)
        session.flush()
    elif name.strip() and not contact.name:
        contact.name = name.strip()
    contact.last_activity_at = utcnow()
    return contact


def is_suppressed(session: Session, address: str) -> bool:
    """Never mail this address: it, or its plain form (leo@ for leo+news@), unsubscribed, bounced or was erased."""
    keys = list({address_hash(address), address_hash(base_address(address))})
    return session.scalar(select(Suppression.id).where(Suppression.address_hash.in_(keys)).limit(1)) is not None


def suppress(
    session: Session, address: str, reason: str, detail: str = "", inbound_id: int | None = None
) -> Suppression:
    """Never mail `address` again; repeats keep the first reason (and the message that caused it, if any)."""
    key = address_hash(address)
    row = session.scalar(select(Suppression).where(Suppression.address_hash == key))
    if row is None:
        row = Suppression(address_hash=key, email=normalise(address), reason=reason, detail=detail,
                          inbound_id=inbound_id)
        session.add(row)
        session.flush()
    return row


def unsuppress(session: Session, inbound_id: int) -> int:
    """Lift the suppressions one inbound message caused (an admin corrected it); an unsubscribe by link,
    a refusal at send time or another message's bounce stays. Returns how many were lifted."""
    return session.execute(delete(Suppression).where(Suppression.inbound_id == inbound_id)).rowcount


def record(session: Session, contact: Contact | None, kind: str, detail: str = "", **links) -> Event:
    """Add a line to the contact's timeline."""
    event = Event(contact_id=contact.id if contact else None, kind=kind, detail=detail, **links)
    session.add(event)
    return event


def normalise_tags(text: str) -> list[str]:
    """'VIP; Webinar 2024, vip' → ['vip', 'webinar-2024']: lower case, no duplicates, in order."""
    seen: list[str] = []
    for raw in re.split(r"[,;]", text or ""):
        tag = "-".join(raw.strip().lower().split())
        if tag and tag not in seen:
            seen.append(tag)
    return seen


def set_tags(session: Session, contact: Contact, text: str) -> list[str]:
    """Replace the contact's tags; returns them."""
    tags = normalise_tags(text)
    joined = ",".join(tags)
    if len(joined) > TAG_LENGTH:
        raise ValueError(f"tags are limited to {TAG_LENGTH} characters in all")
    contact.tags = joined
    record(session, contact, "tagged", joined or "(no tags)")
    return tags


def add_tags(contact: Contact, text: str) -> None:
    """Add tags without removing any (imports); silently stops at the column's length."""
    merged = ",".join(normalise_tags(f"{contact.tags or ''},{text}"))
    if len(merged) <= TAG_LENGTH:
        contact.tags = merged


def field_name(label: str) -> str:
    """'Job Title' → 'job_title': the field a column header or a typed label names; raises ValueError."""
    plain = unicodedata.normalize("NFKD", label.casefold()).encode("ascii", "ignore").decode()  # ß → ss, é → e
    name = re.sub(r"[^a-z0-9]+", "_", plain).strip("_")
    if not FIELD_NAME.fullmatch(name):
        raise ValueError(f"{label[:60]!r} cannot name a field: a letter, then letters, digits or _, at most 40")
    if name in RESERVED_FIELDS:
        raise ValueError(f"{name!r} cannot name a field: templates read it as something else")
    return name


def clean_text(what: str, value: str | None, limit: int) -> str:
    """A company or a field value as stored: trimmed, one line, no control characters; raises ValueError."""
    value = (value or "").strip()
    if len(value) > limit:
        raise ValueError(f"the {what} is longer than {limit} characters")
    odd = _CONTROL.search(value)
    if odd:
        raise ValueError(f"the {what} contains a control character (U+{ord(odd[0]):04X})")
    return value


def clean_fields(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Fields as stored, from (label, value) pairs: names made fit, values trimmed, empty ones left out;
    raises ValueError naming the first that cannot be stored."""
    cleaned: dict[str, str] = {}
    for label, value in pairs:
        name = field_name(label)
        if name in cleaned:
            raise ValueError(f"two fields are named {name!r}")
        text = clean_text(f"value of {name}", value, FIELD_VALUE_LENGTH)
        if text:
            cleaned[name] = text
    if len(cleaned) > FIELDS_MAX:
        raise ValueError(f"a contact has at most {FIELDS_MAX} fields")
    return cleaned


def set_details(session: Session, contact: Contact, company: str, pairs: Iterable[tuple[str, str]]) -> None:
    """Replace the contact's company and custom fields (an admin edited them); raises ValueError."""
    contact.company = clean_text("company", company, COMPANY_LENGTH) or None
    contact.fields = clean_fields(pairs)  # a new dict: an edit in place would not be saved
    shown = ", ".join(contact.fields) or "no fields"
    record(session, contact, "details_saved", f"company {contact.company or '(none)'}; {shown}")


def complete(contact: Contact, company: str, fields: dict[str, str]) -> bool:
    """What an import knows fills what the contact lacks, and overwrites nothing; True if anything was filled."""
    filled = False
    if company and not contact.company:
        contact.company, filled = company, True
    have = dict(contact.fields or {})
    for name, value in fields.items():
        if name not in have and len(have) < FIELDS_MAX:
            have[name], filled = value, True
    contact.fields = have
    return filled


def resubscribe(session: Session, address: str, why: str) -> list[str]:
    """Mail the address again (an admin decided): its suppressions, and its plain form's, are lifted, and the
    person's timeline says so; returns the reasons lifted. Sequences it stopped stay stopped."""
    keys = list({address_hash(address), address_hash(base_address(address))})
    held = list(session.scalars(select(Suppression).where(Suppression.address_hash.in_(keys))))
    for row in held:
        session.delete(row)
    session.flush()
    reasons = [row.reason for row in held]
    if reasons:
        record(session, find(session, address), "resubscribed", f"was {', '.join(reasons)}: {why}")
    return reasons


def mark_handled(session: Session, contact: Contact) -> bool:
    """A hot lead the consultant has dealt with leaves the hot list; False if it was not hot."""
    if not contact.hot:
        return False
    contact.hot = False
    record(session, contact, "handled", "marked handled by an admin")
    return True


def by_id(session: Session, contact_id: int) -> Contact | None:
    return session.get(Contact, contact_id)


def suppression(session: Session, address: str) -> Suppression | None:
    """Why the address is suppressed, if it is."""
    return session.scalar(select(Suppression).where(Suppression.address_hash == address_hash(address)))


def erase(session: Session, contact: Contact) -> Suppression:
    """GDPR erasure: delete the contact's personal data; keep only the hashed address, so they aren't re-added."""
    # Mail about them too: bounces and complaints are tied through their timeline events.
    about = select(Event.inbound_id).where(Event.contact_id == contact.id, Event.inbound_id.is_not(None))
    inbound_ids = list(session.scalars(
        select(InboundMessage.id).where(or_(
            InboundMessage.contact_id == contact.id,
            InboundMessage.from_address.in_([contact.email, *(a.address for a in contact.addresses)]),
            InboundMessage.id.in_(about),
        ))
    ))
    outbound_ids = list(session.scalars(select(Outbound.id).where(Outbound.contact_id == contact.id)))
    session.execute(delete(Event).where(or_(
        Event.contact_id == contact.id, Event.inbound_id.in_(inbound_ids), Event.outbound_id.in_(outbound_ids),
    )))
    session.execute(update(Outbound).where(Outbound.inbound_id.in_(inbound_ids)).values(inbound_id=None))
    session.execute(delete(Outbound).where(Outbound.id.in_(outbound_ids)))
    session.execute(delete(InboundMessage).where(InboundMessage.id.in_(inbound_ids)))
    session.execute(delete(Enrollment).where(Enrollment.contact_id == contact.id))
    # Every address they wrote from is kept as a hash only, so none of them brings them back.
    for other in [contact.email, *(a.address for a in contact.addresses)]:
        kept = suppress(session, other, "erased")
        # The detail may quote the address (an SMTP reply does), so it goes too.
        kept.email, kept.detail = None, "personal data erased"
    kept = suppression(session, contact.email)
    number = contact.id
    session.delete(contact)
    session.flush()
    session.add(Event(contact_id=None, kind="erased", detail=f"contact #{number} erased on request"))
    return kept

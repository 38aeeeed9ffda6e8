"""Contacts, their addresses and the suppression list: the code that changes them.

The admin's read side (search, pages, timeline, "why") is `roster`.
"""

from __future__ import annotations

import re

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

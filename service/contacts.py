"""Contacts and the suppression list."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Contact, Event, Suppression, address_hash, utcnow


def normalise(address: str) -> str:
    return address.strip().lower()


def find(session: Session, address: str) -> Contact | None:
    return session.scalar(select(Contact).where(Contact.email == normalise(address)))


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
    key = address_hash(address)
    return session.scalar(select(Suppression.id).where(Suppression.address_hash == key)) is not None


def suppress(session: Session, address: str, reason: str, detail: str = "") -> Suppression:
    """Never mail `address` again; repeats keep the first reason."""
    key = address_hash(address)
    row = session.scalar(select(Suppression).where(Suppression.address_hash == key))
    if row is None:
        row = Suppression(address_hash=key, email=normalise(address), reason=reason, detail=detail)
        session.add(row)
        session.flush()
    return row


def record(session: Session, contact: Contact | None, kind: str, detail: str = "", **links) -> Event:
    """Add a line to the contact's timeline."""
    event = Event(contact_id=contact.id if contact else None, kind=kind, detail=detail, **links)
    session.add(event)
    return event

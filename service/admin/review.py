"""Mail that needs a human: possible requests, repeat requests, unmatched and quarantined mail; corrections."""

from __future__ import annotations

from dataclasses import dataclass

from flask import abort, current_app, flash, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from .. import campaigns, contacts, intake, queue, stats
from ..extensions import db
from ..models import Campaign, Contact, InboundMessage, Outbound, utcnow
from ..stats import REVIEW_STATES
from . import back, bp
from .forms import ReplyFromForm

PAGE = 25
# What a correction made of the message, for the flash ("… is now treated as a hard bounce").
LABELS = {
    "request": "a request", "auto_reply": "an auto-reply", "human": "a person's reply", "bulk": "bulk mail",
    "unsubscribe": "an unsubscribe", "bounce_hard": "a hard bounce", "bounce_soft": "a soft bounce",
    "not_bounce": "a person's mail, not a bounce",
}
# Corrections that may name the person they are about; without one, intake takes the message's own.
ABOUT_SOMEONE = ("human", "unsubscribe", "bounce_hard", "bounce_soft")


class ReviewError(ValueError):
    """A correction that cannot be applied; the message says why."""


@dataclass(frozen=True)
class Item:
    """A message waiting in Review and what the desk thinks it is, in the consultant's words."""

    message: InboundMessage
    what: str  # "asked_again", "maybe", "quarantined" or "other"
    campaign: Campaign | None
    contact: Contact | None


def waiting(session: Session, before: int | None = None, limit: int = PAGE) -> list[InboundMessage]:
    """Messages in review or quarantine, newest first (keyset on id)."""
    query = (
        select(InboundMessage).options(defer(InboundMessage.raw))
        .where(InboundMessage.state.in_(REVIEW_STATES)).order_by(InboundMessage.id.desc()).limit(limit)
    )
    if before:
        query = query.where(InboundMessage.id < before)
    return list(session.scalars(query))


def items(session: Session, messages: list[InboundMessage], known: list[Campaign]) -> list[Item]:
    """Each message with its verdict, its campaign and its contact (one query for all the contacts)."""
    people = stats.contacts_by_id(session, {m.contact_id for m in messages if m.contact_id})
    by_slug = {c.slug: c for c in known}
    return [_item(m, by_slug.get(m.campaign_slug or ""), people.get(m.contact_id or 0)) for m in messages]


def _item(message: InboundMessage, campaign: Campaign | None, contact: Contact | None) -> Item:
    return Item(message, verdict(message, campaign, contact), campaign, contact)


def verdict(message: InboundMessage, campaign: Campaign | None, contact: Contact | None) -> str:
    """Which kind of decision the consultant faces.

    An enrolled person asking again (intake held it: a magnet went out inside the limit) is a request
    with a contact; a request held for another reason (no usable sender, failed DMARC) has none.
    """
    if message.state == "quarantined":
        return "quarantined"
    if message.state == "review" and campaign is not None:
        if message.kind == "request" and contact is not None:
            return "asked_again"
        if message.kind == "human":
            return "maybe"
    return "other"


def correct(session: Session, message: InboundMessage, kind: str, form, settings: dict, who: str) -> list[Outbound]:
    """Apply an admin's correction through intake.correct, so it has the classifier's consequences."""
    if not kind:  # Enter in a form's address field: no button said what the message is
        raise ReviewError("press the button that says what this message is")
    if kind not in intake.CORRECTIONS:
        raise ReviewError(f"cannot mark a message as {kind!r}")
    slug = form.get("campaign") or None
    if kind == "request" and campaigns.by_slug(session, slug or "") is None:
        raise ReviewError("choose the campaign this is a request for")
    contact = _about(session, message, kind, (form.get("email") or "").strip())
    try:
        return intake.correct(session, message, kind, settings, campaign_slug=slug, contact=contact, who=who)
    except ValueError as exc:  # intake says whom it could not tell, in words meant for the admin
        raise ReviewError(str(exc).rstrip(".")) from exc
    except Exception as exc:  # a poison message may not parse at all: say so instead of a 500
        raise ReviewError(f"the correction failed: {exc.__class__.__name__}: {exc}") from exc


def _about(session: Session, message: InboundMessage, kind: str, address: str) -> Contact | None:
    """The contact a correction is about: the address the admin typed, else (for "a person's mail",
    which needs one) the message's own contact; None lets intake take the message's own contact or sender."""
    if kind not in ABOUT_SOMEONE:
        return None
    if address:
        found = contacts.find(session, address)
        if found is None:
            raise ReviewError(f"there is no contact with the address {address!r}")
        return found
    own = contacts.by_id(session, message.contact_id) if message.contact_id else None
    if kind == "human" and own is None:
        raise ReviewError("say whose mail this is: the sender is not one of your contacts")
    return own if kind == "human" else None


def dismiss(session: Session, message: InboundMessage, who: str) -> None:
    """Nothing to do for this message: it leaves the review list, with a note of who decided."""
    message.state = "processed"
    message.processed_at = message.processed_at or utcnow()
    message.reasons = [*message.reasons, f"dismissed by {who}"]
    owner = contacts.by_id(session, message.contact_id) if message.contact_id else None
    contacts.record(session, owner, "dismissed", f"inbound #{message.id} by {who}", inbound_id=message.id)


def requeue(message: InboundMessage) -> None:
    """Give a quarantined message three fresh tries (after a fix was deployed)."""
    if message.state != "quarantined":
        raise ReviewError("only a quarantined message can be retried")
    message.state, message.attempts, message.error, message.processed_at = "new", 0, "", None


def _message(message_id: int) -> InboundMessage:
    return db.session.get(InboundMessage, message_id) or abort(404)


@bp.get("/review")
def review_list():
    messages = waiting(db.session, before=request.args.get("before", type=int))
    known = campaigns.all_campaigns(db.session)
    return render_template("admin/review.html", items=items(db.session, messages, known), campaigns=known,
                           reply_form=ReplyFromForm(), page=PAGE, last_id=messages[-1].id if messages else None,
                           repeat_days=current_app.config["MAGNET_REPEAT_DAYS"])


@bp.post("/inbound/<int:message_id>/correct")
def inbound_correct(message_id: int):
    message, kind = _message(message_id), request.form.get("kind", "")
    try:
        rows = correct(db.session, message, kind, request.form, current_app.config, current_user.email)
    except ReviewError as exc:
        db.session.rollback()
        flash(f"Not corrected: {exc}.", "error")
        return back(url_for("admin.review_list"))
    db.session.commit()
    for row in rows:
        queue.queue_send(row)
    queued = f" {len(rows)} mail queued." if rows else ""
    flash(f"Message #{message_id} is now treated as {LABELS.get(kind, kind)}.{queued}", "ok")
    return back(url_for("admin.review_list"))


@bp.post("/inbound/<int:message_id>/dismiss")
def inbound_dismiss(message_id: int):
    dismiss(db.session, _message(message_id), current_user.email)
    db.session.commit()
    flash(f"Message #{message_id} dismissed.", "ok")
    return back(url_for("admin.review_list"))


@bp.post("/inbound/<int:message_id>/retry")
def inbound_retry(message_id: int):
    message = _message(message_id)
    try:
        requeue(message)
    except ReviewError as exc:
        flash(f"Not retried: {exc}.", "error")
        return back(url_for("admin.review_list"))
    db.session.commit()
    queue.queue_inbound(message.id)
    flash(f"Message #{message_id} is queued for processing again.", "ok")
    return back(url_for("admin.review_list"))

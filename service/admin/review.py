"""Mail that needs a human: unmatched, quarantined, repeat requests; one-click corrections."""

from __future__ import annotations

from flask import abort, current_app, flash, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from .. import campaigns, contacts, intake, queue
from ..extensions import db
from ..models import InboundMessage, Outbound, utcnow
from ..stats import REVIEW_STATES
from . import back, bp
from .forms import ReplyFromForm

PAGE = 25
LABELS = {"request": "a request", "auto_reply": "an auto-reply", "human": "a reply", "bulk": "bulk mail"}


class ReviewError(ValueError):
    """A correction that cannot be applied; the message says why."""


def waiting(session: Session, before: int | None = None, limit: int = PAGE) -> list[InboundMessage]:
    """Messages in review or quarantine, newest first (keyset on id)."""
    query = (
        select(InboundMessage).options(defer(InboundMessage.raw))
        .where(InboundMessage.state.in_(REVIEW_STATES)).order_by(InboundMessage.id.desc()).limit(limit)
    )
    if before:
        query = query.where(InboundMessage.id < before)
    return list(session.scalars(query))


def correct(session: Session, message: InboundMessage, kind: str, form, settings: dict) -> list[Outbound]:
    """Apply an admin's correction through intake.correct, so it has the classifier's consequences."""
    slug = form.get("campaign") or None
    if kind == "request" and campaigns.by_slug(session, slug or "") is None:
        raise ReviewError("choose the campaign this is a request for")
    contact = None
    if kind == "human":
        contact = contacts.find(session, form.get("email", ""))
        if contact is None:
            raise ReviewError(f"there is no contact with the address {form.get('email', '')!r}")
    if kind not in intake.CORRECTIONS:
        raise ReviewError(f"cannot mark a message as {kind!r}")
    try:
        return intake.correct(session, message, kind, settings, campaign_slug=slug, contact=contact)
    except Exception as exc:  # a poison message may not parse at all: say so instead of a 500
        raise ReviewError(f"the correction failed: {exc.__class__.__name__}: {exc}") from exc


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
    items = waiting(db.session, before=request.args.get("before", type=int))
    return render_template("admin/review.html", items=items, campaigns=campaigns.all_campaigns(db.session),
                           reply_form=ReplyFromForm(), page=PAGE)


@bp.post("/inbound/<int:message_id>/correct")
def inbound_correct(message_id: int):
    message, kind = _message(message_id), request.form.get("kind", "")
    try:
        rows = correct(db.session, message, kind, request.form, current_app.config)
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

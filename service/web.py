"""Public routes: one-click unsubscribe (RFC 8058) and the health check."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, render_template, request
from sqlalchemy import select, text

from . import queue
from .extensions import csrf, db
from .intake import unsubscribe
from .models import Contact, MailboxState, utcnow
from .signing import read_unsubscribe_token

bp = Blueprint("web", __name__)


def _contact(token: str) -> Contact | None:
    """The token's contact; None when the link is genuine but the person was erased (already suppressed)."""
    contact_id = read_unsubscribe_token(current_app.config["SECRET_KEY"], token)
    if contact_id is None:
        abort(404, "This unsubscribe link is not valid. Reply to any of our emails with 'unsubscribe' instead.")
    return db.session.get(Contact, contact_id)


@bp.get("/u/<token>")
def unsubscribe_page(token: str):
    """A confirmation page only: mail scanners prefetch links, so GET changes nothing."""
    return render_template("unsubscribe.html", contact=_contact(token), token=token, done=False)


@bp.post("/u/<token>")
@csrf.exempt  # RFC 8058 §3.2: the one-click POST carries no cookie and no CSRF token
def unsubscribe_now(token: str):
    """Unsubscribe at once and answer 200, never a redirect (RFC 8058 §3.1)."""
    contact = _contact(token)
    how = "one-click" if request.form.get("List-Unsubscribe") == "One-Click" else "unsubscribe page"
    if contact is not None:
        unsubscribe(db.session, contact.email, how)
        db.session.commit()
    return render_template("unsubscribe.html", contact=contact, token=token, done=True)


@bp.get("/healthz")
def healthz():
    """Database, Redis and the poller's lag, as JSON; 503 when the database is down."""
    report = {"database": _check_db(), "redis": _check_redis(), "poller": _poller()}
    return jsonify(report), 200 if report["database"] == "ok" else 503


def _check_db() -> str:
    try:
        db.session.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:
        return f"error: {exc.__class__.__name__}"


def _check_redis() -> str:
    try:
        queue.connection().ping()
        return "ok"
    except Exception as exc:
        return f"error: {exc.__class__.__name__}"


def _poller() -> list[dict]:
    try:
        states = db.session.scalars(select(MailboxState)).all()
    except Exception:
        return []
    return [
        {
            "mailbox": s.mailbox,
            "last_poll_at": s.last_poll_at.isoformat() if s.last_poll_at else None,
            "lag_seconds": round((utcnow() - s.last_poll_at).total_seconds()) if s.last_poll_at else None,
            "last_error": s.last_error or None,
        }
        for s in states
    ]

"""Public routes: one-click unsubscribe (RFC 8058), the magnet's download links, the health check and metrics."""

from __future__ import annotations

import io

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from . import downloads, mailcheck, metrics, queue
from .campaigns import attachment_name
from .enrollments import EnrollmentError
from .extensions import csrf, db
from .intake import unsubscribe
from .models import Contact
from .signing import read_unsubscribe_token

bp = Blueprint("web", __name__)


@bp.get("/")
def index():
    return redirect(url_for("admin.dashboard"))


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


# What a link that leads nowhere answers: forged or damaged, its send or person erased, its file removed.
_DEAD_ENDS = {downloads.FORGED: 404, downloads.VOID: 404, downloads.REMOVED: 410}


def _private(response):
    """A download or its page is one person's: never cached on the way, never indexed."""
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def _page(state: str, token: str, status: int = 200, **values):
    return _private(make_response(render_template("download.html", state=state, token=token, **values), status))


def _found(token: str) -> downloads.Found:
    found = downloads.find(db.session, current_app.config, token)
    if found.state in _DEAD_ENDS:
        abort(_page(found.state, token, _DEAD_ENDS[found.state]))
    return found


@bp.get("/d/<token>")
def download(token: str):
    """The magnet's file itself, no redirect; the person's first GET is counted (a HEAD, as scanners send, never)."""
    found = _found(token)
    if found.state == downloads.EXPIRED:
        return _page("expired", token, refusal=downloads.refusal(db.session, found.row))
    if request.method == "GET" and downloads.record_download(db.session, found.row, found.asset):
        db.session.commit()
    asset = found.asset
    response = send_file(io.BytesIO(asset.data), mimetype=asset.content_type, as_attachment=True,
                         download_name=attachment_name(asset), etag=False)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return _private(response)


@bp.post("/d/<token>")
@csrf.exempt  # the person has no session here; only a genuine token that has expired does anything
def download_fresh(token: str):
    """The expired page's "Send me a fresh link": plans the magnet again, at most once a day per person."""
    found = _found(token)
    if found.state != downloads.EXPIRED:
        return _page("valid", token)
    try:
        row = downloads.request_fresh(db.session, found.row, current_app.config["MAIL_DOMAIN"])
        db.session.commit()
    except EnrollmentError as exc:
        db.session.rollback()
        return _page("expired", token, refusal=str(exc))
    except IntegrityError:  # a second click in the same instant planned the same fresh row
        db.session.rollback()
        row = None
    if row is not None:
        queue.queue_send(row)
    return _page("sent" if row else "already", token)


@bp.get("/healthz")
def healthz():
    """Database, Redis, the poller's lag and deployment warnings (no DKIM), as JSON; 503 when the database is down."""
    report = {"database": _check_db(), "redis": _check_redis(), "poller": _poller(),
              "warnings": mailcheck.warnings(current_app.config)}
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
    """Each folder by mailbox slug: anyone may read this page, so no user, host or error text."""
    try:
        return [p.as_json() for p in metrics.pollers(db.session, current_app.config)]
    except SQLAlchemyError:
        db.session.rollback()
        return []


@bp.get("/metrics")
def metrics_page():
    """Prometheus' scrape: with METRICS_TOKEN set it needs the token, without it only this machine may read it."""
    refused = metrics.refusal(request, current_app.config["METRICS_TOKEN"])
    if refused is not None:
        return refused
    return metrics.page(request, db.session, current_app.config)

"""The admin: one blueprint, every route behind a login, CSRF on every form, strict security headers.

Views are thin and live in one module per noun (dashboard, contacts_views, campaigns_views, review,
messages, imports_views, mailboxes_views, settings_views); helpers that shape data for the pages sit next to them.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, Response, current_app, redirect, render_template, request
from flask_login import current_user

from .. import stats
from ..extensions import db, login
from ..models import User, utcnow

bp = Blueprint("admin", __name__, url_prefix="/admin")
PUBLIC_ENDPOINTS = {"admin.login_page"}

login.login_view = "admin.login_page"
login.login_message = "Please sign in to see that page."
login.login_message_category = "info"

# No script runs anywhere in the admin, so scripts are off entirely; frames only from us.
CSP = (
    "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
# A rendered email is shown in its own sandboxed document: its inline styles, no scripts, no remote images.
FRAME_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src 'none'; "
    "form-action 'none'; frame-ancestors 'self'"
)


@login.user_loader
def load_user(user_id: str) -> User | None:
    """The session names a user and a session version; a version from before a sign-out is void."""
    ident, _, version = user_id.partition(":")
    user = db.session.get(User, int(ident)) if ident.isdigit() else None
    return user if user is not None and version == str(user.session_version) else None


@bp.before_request
def require_login():
    """Every admin route needs a signed-in user, so a new view cannot forget it."""
    if request.endpoint in PUBLIC_ENDPOINTS or current_user.is_authenticated:
        return None
    return login.unauthorized()


@bp.after_app_request
def security_headers(response: Response) -> Response:
    """Headers for every response; a view that serves a framed email sets its own CSP first."""
    framed = "sandbox" in response.headers.get("Content-Security-Policy", "")
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "SAMEORIGIN" if framed else "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if current_app.config.get("SESSION_COOKIE_SECURE"):
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.blueprint == "admin":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def framed(response: Response) -> Response:
    """Mark a response as an email shown inside a sandboxed iframe."""
    response.headers["Content-Security-Policy"] = FRAME_CSP
    return response


def back(default: str) -> Response:
    """Redirect to the form's `next` when it is an admin page, else to `default` (no open redirect)."""
    target = request.form.get("next") or request.args.get("next") or ""
    return redirect(target if safe_next(target) else default)


def confirm(title: str, question: str, button: str, cancel: str, detail: list[str] | None = None) -> str:
    """A confirmation step before a destructive action (the CSP allows no script, so no dialog)."""
    return render_template("admin/confirm.html", title=title, question=question, button=button, cancel=cancel,
                           detail=detail or [])


def safe_next(target: str) -> bool:
    return target.startswith("/admin") and "//" not in target and "\\" not in target


def zone() -> ZoneInfo:
    """The viewer's clock: their own timezone if they chose one, else the deployment's ADMIN_TIMEZONE."""
    name = getattr(current_user, "timezone", None) or current_app.config["ADMIN_TIMEZONE"]
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@bp.app_template_global("zone_name")
def zone_name() -> str:
    return zone().key


@bp.app_template_filter("when")
def when(value: datetime | None) -> str:
    """Times are stored in UTC and shown on the viewer's clock, with its abbreviation (CST, CEST, UTC)."""
    if value is None:
        return "–"
    local = value.astimezone(zone())
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


KIND_LABELS = {"magnet": "magnet", "followup": "follow-up", "test": "test"}


@bp.app_template_filter("kind")
def kind_label(value: str | None) -> str:
    """A ledger row's kind as people say it."""
    return KIND_LABELS.get(value or "", (value or "").replace("_", " "))


@bp.app_template_filter("ago")
def ago(value: datetime | None) -> str:
    """'3 min ago', '2 h ago', 'in 5 days': a time relative to now."""
    if value is None:
        return "never"
    seconds = (utcnow() - value).total_seconds()
    text = _span(abs(seconds))
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def _span(seconds: float) -> str:
    """Rounded to the nearest unit: a follow-up due in 3 days less the moment since it was planned is
    "3 days", not "2 days"; 48 hours is "2 days"."""
    for unit, size, slack in (("day", 86400, 60), ("h", 3600, 60), ("min", 60, 0)):
        if seconds >= size - slack:
            n = max(1, round(seconds / size))
            return f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''}"
    return f"{int(seconds)} s"


@bp.context_processor
def nav_helpers() -> dict:
    return {"review_waiting": lambda: stats.review_count(db.session)}


from . import (  # noqa: E402  (views register themselves on `bp`)
    auth,
    campaigns_views,
    clock_views,
    contacts_views,
    dashboard,
    imports_views,
    mailboxes_views,
    messages,
    review,
    settings_views,
)

__all__ = [
    "auth", "bp", "campaigns_views", "clock_views", "contacts_views", "dashboard", "imports_views", "mailboxes_views",
    "messages",
    "review", "settings_views",
]

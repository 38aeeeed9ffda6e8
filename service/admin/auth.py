"""Signing in and out."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from .. import users
from ..extensions import db
from . import bp, safe_next, throttle
from .forms import LoginForm

UNAVAILABLE = "Sign-in is unavailable: the rate limiter (Redis) is down. Try again when Redis is back."


def too_many(seconds: int) -> str:
    return f"Too many attempts; try again in {seconds} second{'' if seconds == 1 else 's'}."


def _control_characters(text: str) -> bool:
    """C0 controls and DEL: no admin link has one, and a CR or LF can't go in a Location header."""
    return any(ord(c) < 32 or c == "\x7f" for c in text)


def _held_back(form: LoginForm, attempt: throttle.Attempt) -> tuple | None:
    """The answer when the limiter holds this attempt back (before any password is checked), else None."""
    try:
        wait = throttle.reserve(attempt)
    except throttle.LimiterDown:  # refused, never unlimited guesses; the limiter logged why
        flash(UNAVAILABLE, "error")
        return render_template("admin/login.html", form=form), 503
    if not wait:
        return None
    flash(too_many(wait), "error")
    return render_template("admin/login.html", form=form), 429, {"Retry-After": str(wait)}


@bp.route("/login", methods=["GET", "POST"])
def login_page():
    target = request.args.get("next", "")
    if _control_characters(target):
        abort(400)
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("admin/login.html", form=form), 200 if request.method == "GET" else 400
    attempt = throttle.Attempt(request.remote_addr or "unknown", form.email.data)
    held = _held_back(form, attempt)
    if held is not None:
        return held
    user = users.authenticate(db.session, form.email.data, form.password.data)
    if user is None:
        flash("Wrong email or password.", "error")
        return render_template("admin/login.html", form=form), 401
    throttle.cleared(attempt)
    session.clear()  # a fresh session at sign-in: nothing planted before it survives (session fixation)
    login_user(user)
    session.permanent = True  # so PERMANENT_SESSION_LIFETIME ends it
    return redirect(target if safe_next(target) else url_for("admin.dashboard"))


@bp.post("/logout")
def logout():
    users.end_sessions(db.session, current_user)
    db.session.commit()
    logout_user()
    session.clear()
    flash("Signed out.", "info")
    return redirect(url_for("admin.login_page"))

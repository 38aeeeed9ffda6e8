"""Signing in and out, and changing one's own password."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField
from wtforms.validators import DataRequired, EqualTo, Length

from .. import users
from ..extensions import db
from ..models import User
from . import bp, safe_next, throttle
from .forms import LoginForm

LOGIN_PAGE = "admin/login.html"
PASSWORD_PAGE = "admin/password.html"
UNAVAILABLE = "Sign-in is unavailable: the rate limiter (Redis) is down. Try again when Redis is back."


def too_many(seconds: int) -> str:
    return f"Too many attempts; try again in {seconds} second{'' if seconds == 1 else 's'}."


def _control_characters(text: str) -> bool:
    """C0 controls and DEL: no admin link has one, and a CR or LF can't go in a Location header."""
    return any(ord(c) < 32 or c == "\x7f" for c in text)


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", [DataRequired(), Length(max=users.MAX_PASSWORD)])
    new = PasswordField("New password", [DataRequired(), Length(
        users.MIN_PASSWORD, users.MAX_PASSWORD,
        f"the password must have at least {users.MIN_PASSWORD} characters (and at most {users.MAX_PASSWORD})",
    )], description=f"At least {users.MIN_PASSWORD} characters.")
    repeat = PasswordField("New password again", [DataRequired(), EqualTo("new", "the two new passwords differ")])


def _held_back(template: str, form: FlaskForm, attempt: throttle.Attempt) -> tuple | None:
    """The answer when the limiter holds this attempt back (before any password is checked), else None."""
    try:
        wait = throttle.reserve(attempt)
    except throttle.LimiterDown:  # refused, never unlimited guesses; the limiter logged why
        flash(UNAVAILABLE, "error")
        return render_template(template, form=form), 503
    if not wait:
        return None
    flash(too_many(wait), "error")
    return render_template(template, form=form), 429, {"Retry-After": str(wait)}


def _start_session(user: User) -> None:
    session.clear()  # a fresh session: nothing planted before it survives (session fixation)
    login_user(user)
    session.permanent = True  # so PERMANENT_SESSION_LIFETIME ends it


@bp.route("/login", methods=["GET", "POST"])
def login_page():
    target = request.args.get("next", "")
    if _control_characters(target):
        abort(400)
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template(LOGIN_PAGE, form=form), 200 if request.method == "GET" else 400
    attempt = throttle.Attempt(request.remote_addr or "unknown", form.email.data)
    held = _held_back(LOGIN_PAGE, form, attempt)
    if held is not None:
        return held
    user = users.authenticate(db.session, form.email.data, form.password.data)
    if user is None:
        flash("Wrong email or password.", "error")
        return render_template(LOGIN_PAGE, form=form), 401
    throttle.cleared(attempt)
    _start_session(user)
    return redirect(target if safe_next(target) else url_for("admin.dashboard"))


@bp.post("/logout")
def logout():
    users.end_sessions(db.session, current_user)
    db.session.commit()
    logout_user()
    session.clear()
    flash("Signed out.", "info")
    return redirect(url_for("admin.login_page"))


@bp.route("/password", methods=["GET", "POST"])
def password_page():
    form = PasswordForm()
    if not form.validate_on_submit():
        return render_template(PASSWORD_PAGE, form=form), 200 if request.method == "GET" else 400
    user = current_user._get_current_object()
    # Counted with the sign-in failures: a borrowed session must not become a way to guess the password.
    attempt = throttle.Attempt(request.remote_addr or "unknown", user.email)
    held = _held_back(PASSWORD_PAGE, form, attempt)
    if held is not None:
        return held
    try:
        users.change_password(db.session, user, form.current.data, form.new.data)
    except users.WrongPassword as exc:
        form.current.errors.append(str(exc))
        return render_template(PASSWORD_PAGE, form=form), 400
    db.session.commit()
    throttle.cleared(attempt)
    _start_session(user)  # this session carries the new session version; every other one is void
    flash("Password changed. Every other session is signed out.", "info")
    return redirect(url_for("admin.settings_mail"))

"""Signing in and out."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from .. import users
from ..extensions import db
from . import bp, safe_next, throttle
from .forms import LoginForm

TOO_MANY = "Too many failed sign-ins from here. Wait 15 minutes, then try again."


@bp.route("/login", methods=["GET", "POST"])
def login_page():
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("admin/login.html", form=form), 200 if request.method == "GET" else 400
    attempt = throttle.Attempt(request.remote_addr or "unknown", form.email.data)
    if throttle.reserve(attempt):
        flash(TOO_MANY, "error")
        return render_template("admin/login.html", form=form), 429
    user = users.authenticate(db.session, form.email.data, form.password.data)
    if user is None:
        flash("Wrong email or password.", "error")
        return render_template("admin/login.html", form=form), 401
    throttle.cleared(attempt)
    session.clear()  # a fresh session at sign-in: nothing planted before it survives (session fixation)
    login_user(user)
    session.permanent = True  # so PERMANENT_SESSION_LIFETIME ends it
    target = request.args.get("next", "")
    return redirect(target if safe_next(target) else url_for("admin.dashboard"))


@bp.post("/logout")
def logout():
    users.end_sessions(db.session, current_user)
    db.session.commit()
    logout_user()
    session.clear()
    flash("Signed out.", "info")
    return redirect(url_for("admin.login_page"))

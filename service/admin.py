"""The admin: behind a login, CSRF on every form."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from . import users
from .extensions import db, login
from .models import Contact, InboundMessage, Outbound, User

bp = Blueprint("admin", __name__, url_prefix="/admin")
login.login_view = "admin.login_page"


@login.user_loader
def load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id)) if user_id.isdigit() else None


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])


@bp.route("/login", methods=["GET", "POST"])
def login_page():
    form = LoginForm()
    if form.validate_on_submit():
        user = users.authenticate(db.session, form.email.data, form.password.data)
        if user:
            login_user(user)
            return redirect(url_for("admin.dashboard"))
        flash("Wrong email or password.", "error")
    return render_template("admin/login.html", form=form), 200 if request.method == "GET" else 401


@bp.post("/logout")
@login_required
def logout():
    logout_user()
    return redirect(url_for("admin.login_page"))


@bp.get("/")
@login_required
def dashboard():
    recent = db.session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc()).limit(20)).all()
    hot_leads = select(Contact).where(Contact.hot).order_by(Contact.last_activity_at.desc()).limit(20)
    hot = db.session.scalars(hot_leads).all()
    sends = db.session.scalars(select(Outbound).order_by(Outbound.id.desc()).limit(20)).all()
    return render_template("admin/dashboard.html", recent=recent, hot=hot, sends=sends, user=current_user)

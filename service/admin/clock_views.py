"""Your clock and your digest: the timezone every page shows times in, and the daily digest's hour."""

from __future__ import annotations

import logging

from flask import current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from ..extensions import db
from . import bp, zone
from .forms import ClockForm

log = logging.getLogger(__name__)


@bp.route("/settings/clock", methods=["GET", "POST"])
def settings_clock():
    form = ClockForm(data={"timezone": zone().key, "digest": current_user.digest_hour is not None,
                           "digest_hour": current_user.digest_hour if current_user.digest_hour is not None else 8})
    if form.validate_on_submit():
        current_user.timezone = form.timezone.data
        current_user.digest_hour = form.digest_hour.data if form.digest.data else None
        db.session.commit()
        log.info("admin %s: timezone %s, digest %s", current_user.email, current_user.timezone,
                 f"at {current_user.digest_hour:02d}:00" if current_user.digest_hour is not None else "off")
        flash("Saved: times are shown in " + current_user.timezone + ".", "success")
        return redirect(url_for("admin.settings_clock"))
    return render_template("admin/settings_clock.html", form=form,
                           default_zone=current_app.config["ADMIN_TIMEZONE"]), 400 if form.errors else 200

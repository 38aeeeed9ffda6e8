"""Settings: the mail self-check, the same report `flask --app wsgi check-mail` prints.

The page only builds and reads the messages; it never sends (admin views never talk to SMTP), so
sending them to yourself stays a command: `check-mail --to ADDRESS`.
"""

from __future__ import annotations

from flask import current_app, render_template, request
from flask_login import current_user

from .. import mailcheck
from ..extensions import db
from . import bp


@bp.get("/settings/mail")
def settings_mail():
    settings = current_app.config
    # DNS answers can take seconds each, so they are looked up only when asked for.
    dns = request.args.get("dns") == "1"
    checks = mailcheck.run(db.session, settings, current_user.email, mailcheck.txt_records if dns else None)
    return render_template(
        "admin/settings_mail.html", checks=checks, summary=mailcheck.summary(checks), dns=dns,
        failed=mailcheck.failed(checks), warnings=mailcheck.warnings(settings),
        dkim_domain=mailcheck.dkim_domain(settings),
    )

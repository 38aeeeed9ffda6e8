"""Mailboxes: the list with each one's health, the form, a connection test, and Connect with Google or Microsoft.

The connection test only signs in to IMAP and SMTP (nothing is sent), as `mailboxes test` does. Connect
is OAuth2's authorization code grant with PKCE; the state and the verifier wait in the signed session
cookie for the browser to come back, as Authlib's own Flask client keeps them.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass, field

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import connections, mailboxes, oauth, stats
from ..extensions import db
from ..models import Mailbox
from . import bp, forms
from .forms import MailboxForm

log = logging.getLogger(__name__)

PENDING = "oauth_connect"  # the session key of a Connect waiting for the provider's answer
PROVIDERS = ("google", "microsoft")
NEW_MAILBOX = {"imap_security": "ssl", "imap_folder": "INBOX", "smtp_security": "starttls", "auth_method": "password"}


@dataclass
class Box:
    """One mailbox as the pages show it: its settings (empty when they cannot be read) and its folders' health."""

    slug: str
    stored: bool
    settings: dict
    problem: str = ""
    folders: list[tuple[str, stats.Mailbox]] = field(default_factory=list)


def health(session: Session, settings: dict, rows: list[stats.Mailbox]) -> tuple[list[Box], list[stats.Mailbox]]:
    """Every mailbox with the poller's rows for its folders, and the rows no mailbox claims (older settings)."""
    boxes = [_box(session, slug, settings, rows, stored(session, slug)) for slug in mailboxes.slugs(session)]
    claimed = {row.name for box in boxes for _, row in box.folders}
    return boxes, [row for row in rows if row.name not in claimed]


def stored(session: Session, slug: str) -> bool:
    """Whether a mailbox is a record (only `default` may be the settings instead)."""
    return session.scalar(select(Mailbox.id).where(Mailbox.slug == slug)) is not None


def _box(session: Session, slug: str, settings: dict, rows: list[stats.Mailbox], stored: bool) -> Box:
    try:
        seen = mailboxes.settings_for(session, slug, settings)
    except mailboxes.MailboxError as exc:  # e.g. FT_SECRETS_KEY changed: say so, and show the others
        return Box(slug, stored, {}, str(exc))
    prefix = mailboxes.state_prefix(seen)
    # An IMAP prefix ends in "/" and a folder follows; a Maildir's key is the prefix itself.
    mine = [r for r in rows if r.name == prefix or (prefix.endswith("/") and r.name.startswith(prefix))]
    return Box(slug, stored, seen, "", [(r.name[len(prefix):] or "Maildir", r) for r in mine])


def _redirect_uri() -> str:
    return current_app.config["BASE_URL"] + "/admin/oauth/callback"


def _client_id(provider: str) -> str | None:
    return current_app.config.get(f"{provider.upper()}_CLIENT_ID")


def _known(slug: str) -> str:
    return slug if mailboxes.exists(db.session, slug) else abort(404)


def _list_page(probe: tuple[str, list[tuple[str, str]]] | None = None):
    boxes, _ = health(db.session, current_app.config, stats.mailboxes(db.session))
    return render_template(
        "admin/mailboxes.html", boxes=boxes, probe=probe, redirect_uri=_redirect_uri(),
        campaigns={box.slug: mailboxes.campaigns_of(db.session, box.slug) for box in boxes},
        connectable={name: bool(_client_id(name)) for name in PROVIDERS},
    )


@bp.get("/mailboxes")
def mailbox_list():
    return _list_page()


@bp.route("/mailboxes/new", methods=["GET", "POST"])
def mailbox_new():
    return _edit(MailboxForm(data=NEW_MAILBOX), None)


@bp.route("/mailboxes/<slug>", methods=["GET", "POST"])
def mailbox_edit(slug: str):
    try:
        fields = mailboxes.fields_of(db.session, _known(slug), current_app.config)
    except mailboxes.MailboxError as exc:
        flash(f"Mailbox {slug} cannot be opened: {exc}.", "error")
        return redirect(url_for("admin.mailbox_list"))
    return _edit(MailboxForm(data=forms.mailbox_data(fields)), fields, stored(db.session, slug))


def _edit(form: MailboxForm, current: dict | None, was_stored: bool = True):
    if not form.validate_on_submit():
        if form.is_submitted():
            flash("Not saved: see the fields marked below.", "error")
        return _form_page(form, current, was_stored, status=400 if form.is_submitted() else 200)
    item = {**form.entry(), **({"slug": current["slug"]} if current else {})}  # a slug is for good
    try:
        saved = mailboxes.put(db.session, mailboxes.entry(item), current_app.config, new=current is None)
    except mailboxes.MailboxError as exc:
        db.session.rollback()
        return _form_page(form, current, was_stored, problem=str(exc), status=400)
    db.session.commit()
    replaced = "" if was_stored else " It replaces the IMAP_*, SMTP_* and MAIL_FROM settings now."
    flash(f"Mailbox {saved.slug} is saved.{replaced} Test the connection to be sure it signs in.", "ok")
    return redirect(url_for("admin.mailbox_list"))


def _form_page(form: MailboxForm, current: dict | None, was_stored: bool, problem: str = "", status: int = 200):
    kept = {name: bool(current and current.get(name)) for name in mailboxes.SECRET_NAMES}
    return render_template("admin/mailbox_form.html", form=form, current=current, stored=was_stored, kept=kept,
                           problem=problem), status


@bp.post("/mailboxes/<slug>/test")
def mailbox_test(slug: str):
    lines = _probe(_known(slug))
    failed = [line for line in lines if _verdict(line) == "fail"]
    log.info("mailbox %s: connection test by %s: %s", slug, current_user.email, "; ".join(failed) or "OK")
    return _list_page(probe=(slug, [(_verdict(line), line) for line in lines]))


def _probe(slug: str) -> list[str]:
    try:
        settings = mailboxes.settings_for(db.session, slug, current_app.config)
    except mailboxes.MailboxError as exc:
        return [f"FAIL  {exc}"]
    # No transaction stays open while we talk to servers: an OAuth2 sign-in reads and stores its token in
    # its own, and SQLite would make it wait for ours.
    db.session.rollback()
    try:
        return connections.probe(settings)
    except Exception as exc:  # a server that signs us in and then misbehaves still gets a line, not a 500
        log.warning("mailbox %s: connection test broke off: %s", slug, exc)
        return [f"FAIL  the test broke off after signing in: {type(exc).__name__}: {exc}"]


def _verdict(line: str) -> str:
    word = line.split()[1:2] if line.startswith(("IMAP", "SMTP")) else line.split()[:1]
    return {"OK": "ok", "FAIL": "fail"}.get(word[0] if word else "", "")


@bp.get("/mailboxes/<slug>/connect/<any(google, microsoft):provider>")
def mailbox_connect(slug: str, provider: str):
    client_id = _client_id(provider)
    if not client_id:
        name = provider.upper()
        flash(f"Connect {provider.capitalize()} needs {name}_CLIENT_ID and {name}_CLIENT_SECRET in the settings "
              "first.", "error")
        return redirect(url_for("admin.mailbox_list"))
    verifier, challenge = oauth.new_pkce()
    state = secrets.token_urlsafe(32)
    session[PENDING] = {"state": state, "verifier": verifier, "slug": _known(slug), "provider": provider,
                        "client_id": client_id}
    preset = oauth.provider(provider, current_app.config)
    return redirect(oauth.authorization_url(preset, client_id, _redirect_uri(), state, challenge))


@bp.get("/oauth/callback")
def oauth_callback():
    pending = session.pop(PENDING, None)
    problem = _refusal(pending)
    if problem:
        flash(f"Not connected: {problem}.", "error")
        return redirect(url_for("admin.mailbox_list"))
    settings, slug = current_app.config, pending["slug"]
    preset = oauth.provider(pending["provider"], settings)
    client = (pending["client_id"], settings.get(f"{preset.name.upper()}_CLIENT_SECRET"))
    db.session.rollback()  # hold no transaction (SQLite: the write lock) while the provider answers
    try:
        refresh_token, access = oauth.exchange_code(preset, *client, request.args["code"], _redirect_uri(),
                                                    pending["verifier"])
        mailboxes.connect(db.session, slug, preset, client, refresh_token, access, settings)
    except (oauth.OAuthError, mailboxes.MailboxError) as exc:
        db.session.rollback()
        flash(f"Not connected: {exc}.", "error")
        return redirect(url_for("admin.mailbox_list"))
    db.session.commit()
    log.info("mailbox %s: connected to %s by %s", slug, preset.name, current_user.email)
    flash(f"Mailbox {slug} is connected to {preset.name.capitalize()}: it signs in with OAuth2 now. "
          "Test the connection to be sure.", "ok")
    return redirect(url_for("admin.mailbox_list"))


def _refusal(pending: dict | None) -> str:
    """Why the provider's answer cannot be used, or "" when it can."""
    state = request.args.get("state", "")
    # Bytes: compare_digest refuses str that is not ASCII, and the state comes from anyone's link.
    if not pending or not hmac.compare_digest(pending["state"].encode(), state.encode()):
        return "this answer belongs to no Connect started here, or it came twice; press Connect again"
    if request.args.get("error"):
        said = " ".join(f"{request.args['error']} {request.args.get('error_description', '')}".split())[:300]
        return f"{pending['provider'].capitalize()} said {said}"
    if not request.args.get("code"):
        return "the provider sent no authorization code; press Connect again"
    return ""

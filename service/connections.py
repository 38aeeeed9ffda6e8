"""Signing in to a mailbox's IMAP and SMTP servers, by password or SASL XOAUTH2, and saying what they offer.

Certificates are verified by default (IMAP_CAFILE and SMTP_CAFILE name a private CA). An OAuth2
mailbox keeps one token source per process: its access token is refreshed before it expires and
again when a server refuses it, and every refresh is stored (sealed) for the other processes.
"""

from __future__ import annotations

import logging
import smtplib
import ssl

from flask import current_app, has_app_context
from imapclient import IMAPClient, SocketTimeout

from . import mailboxes, oauth
from .extensions import db

log = logging.getLogger(__name__)

_sources: dict[tuple[str, str], oauth.TokenSource] = {}


def imap(settings: dict) -> IMAPClient:
    """Log in with IMAP_SECURITY ssl, starttls or none; timeouts keep a dead server from hanging us."""
    timeout = SocketTimeout(connect=15, read=settings["IMAP_TIMEOUT"])
    context = ssl.create_default_context(cafile=settings.get("IMAP_CAFILE"))
    use_ssl = settings["IMAP_SECURITY"] == "ssl"
    client = IMAPClient(settings["IMAP_HOST"], port=settings["IMAP_PORT"], ssl=use_ssl, ssl_context=context,
                        timeout=timeout)
    if settings["IMAP_SECURITY"] == "starttls":
        client.starttls(context)
    if settings.get("MAIL_AUTH") == "xoauth2":
        oauth.imap_login(client, settings["IMAP_USERNAME"], token_source(settings))
    else:
        client.login(settings["IMAP_USERNAME"], settings["IMAP_PASSWORD"] or "")
    client.normalise_times = False  # keep INTERNALDATE aware, not local naive time
    return client


def smtp(settings: dict) -> smtplib.SMTP:
    """A connected SMTP session, logged in when the mailbox has a username."""
    host, port, timeout = settings["SMTP_HOST"], settings["SMTP_PORT"], settings["SMTP_TIMEOUT"]
    context = ssl.create_default_context(cafile=settings.get("SMTP_CAFILE"))
    if settings["SMTP_SECURITY"] == "ssl":
        session = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        session = smtplib.SMTP(host, port, timeout=timeout)
        if settings["SMTP_SECURITY"] == "starttls":
            session.starttls(context=context)
    session.ehlo_or_helo_if_needed()
    if settings.get("MAIL_AUTH") == "xoauth2":
        oauth.smtp_login(session, settings["SMTP_USERNAME"] or settings["IMAP_USERNAME"], token_source(settings))
    elif settings.get("SMTP_USERNAME"):
        session.login(settings["SMTP_USERNAME"], settings["SMTP_PASSWORD"] or "")
    return session


def token_source(settings: dict) -> oauth.TokenSource:
    """This process's token source for the mailbox, made once and kept while its refresh token holds."""
    slug, refresh_token = settings["MAILBOX"], settings.get("OAUTH_REFRESH_TOKEN") or ""
    if not refresh_token:
        raise oauth.OAuthError(f"mailbox {slug} signs in with XOAUTH2 but has no refresh token: connect it again")
    key = (slug, refresh_token)
    if key not in _sources:
        token_url = settings.get("OAUTH_TOKEN_URL") or oauth.provider(settings["OAUTH_PROVIDER"], settings).token_url
        _sources[key] = oauth.TokenSource(
            token_url, settings["OAUTH_CLIENT_ID"], settings.get("OAUTH_CLIENT_SECRET"), refresh_token,
            cached=_cached(slug, settings), on_refresh=lambda token, rotated: _store(slug, token, rotated, settings),
        )
    return _sources[key]


# Both in their own short transaction, never the caller's session: sign-in happens outside the caller's
# work (the poller and the worker hold no transaction while they talk to a server).
def _cached(slug: str, settings: dict) -> oauth.AccessToken | None:
    if not has_app_context():
        return None
    with db.engine.begin() as connection, db.Session(bind=connection) as session:
        found = mailboxes.cached_token(session, slug, settings)
    return oauth.AccessToken(*found) if found else None


def _store(slug: str, token: oauth.AccessToken, rotated: str | None, settings: dict) -> None:
    if not has_app_context():
        return
    with db.engine.begin() as connection, db.Session(bind=connection) as session:
        mailboxes.store_token(session, slug, token.token, token.expires_at, settings, rotated)
        session.flush()
    log.info("mailbox %s: access token refreshed, valid until %s", slug, token.expires_at.isoformat())


def probe(settings: dict) -> list[str]:
    """Sign in to IMAP and SMTP and say what each offers; a failure is one line that says what to fix."""
    lines = [f"mailbox {settings['MAILBOX']}: {settings['MAIL_FROM']}"]
    if not settings.get("IMAP_HOST"):
        lines.append(f"IMAP  not set: mail is read from the Maildir {settings['MAILDIR']}")
    else:
        lines += _probe_imap(settings)
    if not settings.get("SMTP_HOST"):
        lines.append(f"SMTP  not set: mail is written to the outbox {settings['OUTBOX']}")
    else:
        lines += _probe_smtp(settings)
    return lines


def _probe_imap(settings: dict) -> list[str]:
    where = f"{settings['IMAP_HOST']}:{settings['IMAP_PORT']} ({settings['IMAP_SECURITY']})"
    try:
        client = imap(settings)
    except Exception as exc:
        return [f"IMAP  FAIL {where}: {_explain(exc, 'IMAP')}"]
    try:
        offered = {c.decode().upper() for c in client.capabilities()}
        folders = [name for _flags, _delim, name in client.list_folders()]
        special = {name: flag.decode() for flags, _d, name in client.list_folders() for flag in flags
                   if flag.decode() in ("\\Sent", "\\Trash", "\\Junk", "\\Drafts", "\\Archive")}
    finally:
        client.logout()
    has = ", ".join(f"{c} {'yes' if c in offered else 'no'}" for c in ("IDLE", "MOVE", "SPECIAL-USE"))
    marked = ", ".join(f"{name} {flag}" for name, flag in sorted(special.items())) or "none marked"
    missing = [f for f in (settings.get("IMAP_FOLDER"), settings.get("IMAP_SENT_FOLDER")) if f and f not in folders]
    lines = [f"IMAP  OK   {where} as {settings['IMAP_USERNAME']} ({settings.get('MAIL_AUTH') or 'password'})",
             f"IMAP  {has}", f"IMAP  {len(folders)} folders; special-use: {marked}"]
    lines += [f"IMAP  FAIL folder {name!r} does not exist on the server" for name in missing]
    return lines


def _probe_smtp(settings: dict) -> list[str]:
    where = f"{settings['SMTP_HOST']}:{settings['SMTP_PORT']} ({settings['SMTP_SECURITY']})"
    try:
        session = smtp(settings)
    except Exception as exc:
        return [f"SMTP  FAIL {where}: {_explain(exc, 'SMTP')}"]
    try:
        extensions = " ".join(sorted(session.esmtp_features)).upper() or "none"
    finally:
        session.quit()
    return [f"SMTP  OK   {where}", f"SMTP  extensions: {extensions}"]


def _explain(exc: Exception, protocol: str) -> str:
    """What went wrong, and what to change, in one line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the certificate is not trusted ({exc.verify_message}): set {protocol}_CAFILE for a private CA"
    if isinstance(exc, oauth.OAuthError):
        return text
    if isinstance(exc, smtplib.SMTPAuthenticationError) or "authentication failed" in text.lower() \
            or "login" in type(exc).__name__.lower():
        return f"the server refused the sign-in ({text}): check the username and password or token"
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing answers there ({text}): check the host, port and security"
    if isinstance(exc, TimeoutError | OSError) and not isinstance(exc, ssl.SSLError):
        return f"cannot reach the server ({text}): check the host and port, and the firewall"
    return f"{type(exc).__name__}: {text}"


def settings_of(slug: str) -> dict:
    """The current app's settings as mailbox `slug` sees them."""
    return mailboxes.settings_for(db.session, slug, current_app.config)

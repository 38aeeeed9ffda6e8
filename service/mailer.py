"""Building the mail we send and handing it to SMTP (or to the local outbox)."""

from __future__ import annotations

import contextlib
import logging
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, parseaddr
from html import escape
from pathlib import Path

from flask import render_template
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from .models import Campaign, Contact, Outbound, Step
from .signing import dkim_sign, unsubscribe_token, verp_address, verp_token

log = logging.getLogger(__name__)
LOOP_HEADER = "X-Follow-Through-Loop"
_sandbox = SandboxedEnvironment(autoescape=False)
# HTML bodies escape what comes from mail (a display name like "<b>Bob</b>") even if the admin forgot |e.
_html_sandbox = SandboxedEnvironment(autoescape=True)


class SendError(Exception):
    """SMTP said no, or could not be reached.

    `permanent`: retrying cannot help. `uncertain`: the message was handed over and no answer
    came, so the server may have accepted it; resending could deliver it twice (RFC 1047).
    """

    def __init__(self, text: str, permanent: bool = False, code: int | None = None, uncertain: bool = False):
        super().__init__(text)
        self.permanent = permanent
        self.code = code
        self.uncertain = uncertain


class _Stale(Exception):
    """The connection was gone before anything was sent."""


def unsubscribe_address(settings: dict) -> str:
    local, domain = parseaddr(settings["MAIL_FROM"])[1].rsplit("@", 1)
    return f"{local}+unsubscribe@{domain}"


def render_content(source: str | None, context: dict, html: bool = False) -> str:
    """Render an admin-editable template in Jinja's sandbox (HTML ones with autoescaping)."""
    return (_html_sandbox if html else _sandbox).from_string(source).render(context) if source else ""


def context(contact: Contact, campaign: Campaign, settings: dict) -> dict:
    return {
        "contact": {"first_name": contact.first_name, "name": contact.name, "email": contact.email},
        "campaign": {"name": campaign.name, "slug": campaign.slug},
        "consultant": {"name": settings["CONSULTANT_NAME"], "company": settings["CONSULTANT_COMPANY"]},
    }


def _html_from_text(text: str) -> str:
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    return "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)


def sample_contact(address: str) -> Contact:
    """Who a test send or a preview pretends to write to."""
    return Contact(id=0, email=address, name="Sample Prospect")


def compose(
    row: Outbound, contact: Contact | None, campaign: Campaign, step: Step | None, settings: dict
) -> EmailMessage:
    """The complete message for a ledger row, with threading and RFC 8058 headers."""
    contact = contact or sample_contact(row.to_address)
    ctx = context(contact, campaign, settings)
    text_src, html_src = (step.text, step.html) if step else (campaign.magnet_text, campaign.magnet_html)
    body = render_content(text_src, ctx)
    html = render_content(html_src, ctx, html=True) if html_src else _html_from_text(body)
    token = unsubscribe_token(settings["SECRET_KEY"], contact.id)
    link = f"{settings['BASE_URL']}/u/{token}"
    # The token rides in the subject: a client may send from another address of the same person.
    mailto = f"mailto:{unsubscribe_address(settings)}?subject=unsubscribe%20{token}"
    footer = {"link": link, "campaign": campaign.name, "consultant": settings["CONSULTANT_NAME"]}
    msg = EmailMessage()
    _headers(msg, row, contact, settings)
    msg["List-Unsubscribe"] = f"<{link}>, <{mailto}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(render_template("email/message.txt", body=body, **footer))
    msg.add_alternative(render_template("email/message.html", body=Markup(html), **footer), subtype="html")
    if row.kind in ("magnet", "test"):
        for asset in campaign.assets:
            maintype, _, subtype = asset.content_type.partition("/")
            msg.add_attachment(asset.data, maintype=maintype, subtype=subtype, filename=asset.filename)
    return msg


def _headers(msg: EmailMessage, row: Outbound, contact: Contact, settings: dict) -> None:
    msg["From"] = settings["MAIL_FROM"]
    msg["To"] = formataddr((contact.name, row.to_address)) if contact.name else row.to_address
    msg["Subject"] = f"[Test] {row.subject}" if row.kind == "test" else row.subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<{row.message_id}>"
    if row.in_reply_to:
        msg["In-Reply-To"] = f"<{row.in_reply_to}>"
    if row.references:
        msg["References"] = row.references
    # RFC 3834 §5: a reply to a request is auto-replied; scheduled follow-ups are auto-generated.
    msg["Auto-Submitted"] = "auto-replied" if row.kind == "magnet" else "auto-generated"
    # MS-OXCMAIL 2.1.3.2.20: ask Exchange not to send OOF/auto-replies back to us.
    msg["X-Auto-Response-Suppress"] = "OOF, AutoReply"
    msg[LOOP_HEADER] = settings["MAIL_DOMAIN"]


def envelope_sender(row: Outbound, settings: dict) -> str:
    """VERP: bounces+<signed row id>@domain when a bounce address is set, else MAIL_FROM."""
    if settings.get("BOUNCE_ADDRESS"):
        token = verp_token(settings["SECRET_KEY"], row.id)
        return verp_address(settings["BOUNCE_ADDRESS"], token)
    return parseaddr(settings["MAIL_FROM"])[1]


def to_bytes(msg: EmailMessage, settings: dict) -> bytes:
    """The final bytes, DKIM-signed when a selector and key are configured."""
    raw = msg.as_bytes(policy=SMTP)
    if settings.get("DKIM_SELECTOR") and settings.get("DKIM_PRIVATE_KEY"):
        domain = settings.get("DKIM_DOMAIN") or settings["MAIL_DOMAIN"]
        raw = dkim_sign(raw, settings["DKIM_SELECTOR"], domain, settings["DKIM_PRIVATE_KEY"].encode())
    return raw


class Transport:
    """One SMTP connection per worker process, reused across jobs and reopened when it dies.

    With no SMTP_HOST, messages are written as .eml files to the outbox folder.
    """

    def __init__(self, settings: dict):
        self.settings = settings
        self.smtp: smtplib.SMTP | None = None

    def send(self, raw: bytes, sender: str, recipient: str, name: str) -> str:
        if not self.settings.get("SMTP_HOST"):
            return self._to_outbox(raw, name)
        for fresh in (self.smtp is None, True):
            try:
                return self._deliver(raw, sender, recipient)
            except _Stale as exc:
                self.close()
                if fresh:  # a kept-alive connection may have died quietly: one try on a new one
                    raise SendError(f"connection lost: {exc}") from exc
        raise AssertionError("unreachable")

    def _deliver(self, raw: bytes, sender: str, recipient: str) -> str:
        """MAIL, RCPT, DATA; a failure after the message was handed over is reported as uncertain."""
        smtp = self._envelope(sender, recipient)
        try:
            code, text = smtp.data(raw)
        except smtplib.SMTPResponseException as exc:  # refused at the 354 step: nothing was sent
            self._reset()
            raise _error(exc.smtp_code, exc.smtp_error) from exc
        except OSError as exc:  # timed out or cut after the bytes went: the server may have taken it
            self.close()
            raise SendError(f"no final answer after DATA: {exc}", uncertain=True) from exc
        if code != 250:  # smtplib.data() only raises for the 354 step, not for the final reply
            raise _error(code, text)
        return f"{code} {text.decode(errors='replace')}"

    def _envelope(self, sender: str, recipient: str) -> smtplib.SMTP:
        smtp = self._session()
        try:
            for command, argument in ((smtp.mail, sender), (smtp.rcpt, recipient)):
                code, text = command(argument)
                if code not in (250, 251):
                    self._reset()
                    raise _error(code, text)
            return smtp
        except smtplib.SMTPServerDisconnected as exc:
            raise _Stale(str(exc)) from exc
        except smtplib.SMTPResponseException as exc:
            self._reset()
            raise _error(exc.smtp_code, exc.smtp_error) from exc
        except OSError as exc:  # refused, unreachable, timed out
            self.close()
            raise SendError(f"cannot reach {self.settings['SMTP_HOST']}: {exc}") from exc

    def _session(self) -> smtplib.SMTP:
        """A connected, greeted (and logged-in) session. Failures here are never the recipient's fault,
        so they are temporary (a wrong password is fixed by the admin, then the send goes)."""
        try:
            smtp = self._connect()
            smtp.ehlo_or_helo_if_needed()
            return smtp
        except smtplib.SMTPServerDisconnected as exc:
            raise _Stale(str(exc)) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise SendError(f"cannot use {self.settings['SMTP_HOST']}: {exc}") from exc

    def _reset(self) -> None:
        try:
            self.smtp.rset()
        except Exception:
            self.close()

    def _connect(self) -> smtplib.SMTP:
        if self.smtp is not None:
            return self.smtp
        s = self.settings
        host, port, timeout = s["SMTP_HOST"], s["SMTP_PORT"], s["SMTP_TIMEOUT"]
        if s["SMTP_SECURITY"] == "ssl":
            smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
            if s["SMTP_SECURITY"] == "starttls":
                smtp.starttls(context=ssl.create_default_context())
        if s.get("SMTP_USERNAME"):
            smtp.login(s["SMTP_USERNAME"], s["SMTP_PASSWORD"] or "")
        self.smtp = smtp
        return smtp

    def close(self) -> None:
        if self.smtp is not None:
            with contextlib.suppress(Exception):  # already dead; nothing to tidy
                self.smtp.quit()
        self.smtp = None

    def _to_outbox(self, raw: bytes, name: str) -> str:
        folder = Path(self.settings["OUTBOX"])
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{name}.eml"
        partial = folder / f".{name}.eml.part"
        partial.write_bytes(raw)
        partial.replace(final)
        return f"written to {final}"


def _error(code: int, text: bytes | str) -> SendError:
    """5xx is final; 4xx (and anything odd) may succeed later."""
    message = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return SendError(f"{code} {message}", permanent=500 <= code < 600, code=code)

"""Helpers for tests: mail written here (never copied from the corpus) and process runners."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from sqlalchemy import text

from service.extensions import db


def mail(
    subject: str = "Roadmap please",
    body: str = "Hi Ken, please send me the Execution Success Roadmap. Thanks, Bob",
    sender: str = "Bob Prospect <bob@prospect.example>",
    to: str = "roadmap@acumen.example",
    authenticated: bool = True,
    **headers: str,
) -> bytes:
    """A message written here, in the project (never copied from the corpus).

    `authenticated`: it carries the verdict the consultant's own server adds (DMARC pass for the From's
    domain), as mail in a real mailbox does; unless the test gives its own Authentication-Results.
    """
    if authenticated and "Authentication_Results" not in headers:
        domain = sender.rsplit("@", 1)[-1].strip(">") if "@" in sender else "prospect.example"
        headers = {"Authentication_Results": f"mx.acumen.example; dmarc=pass header.from={domain}", **headers}
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="prospect.example")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


def parse(raw: bytes) -> EmailMessage:
    return message_from_bytes(raw, policy=policy.default)


def run_poller(app) -> None:
    from workers import poller

    poller.run(app, once=True)


def run_worker(app) -> None:
    from workers import worker

    worker.run(app, burst=True)


def scalar(app, sql: str, **params):
    with app.app_context():
        return db.session.execute(text(sql), params).scalar()


def dsn(
    recipients: list[tuple[str, str, str]],
    original_message_id: str | None = None,
    to: str = "roadmap@acumen.example",
    reporting: str = "mx.prospect.example",
) -> bytes:
    """An RFC 3464 delivery report; recipients are (address, status, action)."""
    groups = "".join(
        f"\nFinal-Recipient: rfc822; {address}\nAction: {action}\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; {'550' if status.startswith('5') else '452'} {status} mailbox problem\n"
        for address, status, action in recipients
    )
    original = f"Message-ID: <{original_message_id}>\n" if original_message_id else ""
    text = f"""From: Mail Delivery System <MAILER-DAEMON@{reporting}>
To: {to}
Subject: Undelivered Mail Returned to Sender
Date: {format_datetime(datetime.now(UTC))}
Message-ID: {make_msgid(domain=reporting)}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; {reporting}
{groups}
--b1
Content-Type: text/rfc822-headers

From: roadmap@acumen.example
To: {recipients[0][0]}
{original}Subject: Re: Roadmap

--b1--
"""
    return text.replace("\n", "\r\n").encode()

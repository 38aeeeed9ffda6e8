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
    **headers: str,
) -> bytes:
    """A message written here, in the project (never copied from the corpus)."""
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

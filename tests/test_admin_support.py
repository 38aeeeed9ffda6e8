"""Helpers shared by the admin tests: a signed-in client, CSRF tokens, mail through the real intake.

No tests live here; the test_admin_*.py files import these.
"""

from __future__ import annotations

import re
import uuid

from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq.job import Job

from service import intake
from service.extensions import db
from service.models import InboundMessage, Outbound, utcnow

ALICE = ("alice@acumen.example", "correct horse battery")
_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def token(client: FlaskClient) -> str:
    """A valid CSRF token for the client's session, read from a real form."""
    html = client.get("/admin/login").get_data(as_text=True)
    return _TOKEN.search(html).group(1)


def signed_in(app: Flask, email: str = ALICE[0], password: str = ALICE[1]) -> FlaskClient:
    client = app.test_client()
    response = client.post("/admin/login", data={"email": email, "password": password, "csrf_token": token(client)})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def post(client: FlaskClient, url: str, data: dict | None = None, **kwargs):
    """POST a form the way the browser does: with the session's CSRF token."""
    return client.post(url, data={"csrf_token": token(client), **(data or {})}, **kwargs)


def text(response) -> str:
    return response.get_data(as_text=True)


def receive(app: Flask, raw: bytes) -> int:
    """Store and process a message through the real intake (no IMAP needed); returns its id."""
    with app.app_context():
        message = intake.store(db.session, "INBOX", 1, None, raw, utcnow(), source_key=f"test-{uuid.uuid4().hex}")
        db.session.commit()
        intake.process(db.session, message, app.config)
        db.session.commit()
        return message.id


def inbound(app: Flask, message_id: int) -> InboundMessage:
    with app.app_context():
        message = db.session.get(InboundMessage, message_id)
        db.session.expunge(message)
        return message


def send_job(redis: Redis, row: Outbound) -> Job:
    """The RQ job queue.queue_send made for a ledger row (its id names the row, then the due time)."""
    [key] = redis.keys(f"rq:job:out-{row.id}-*")
    return Job.fetch(key.decode().removeprefix("rq:job:"), connection=redis)


def held(app: Flask, raw: bytes, **fields) -> int:
    """A message waiting in Review exactly as intake would leave it (state, kind, campaign, reasons, contact),
    built directly so a view test does not depend on the classifier's current wording; returns its id."""
    with app.app_context():
        message = intake.store(db.session, "INBOX", 1, None, raw, utcnow(), source_key=f"held-{uuid.uuid4().hex}")
        values = {"state": "review", "processed_at": utcnow(), **fields}
        for name, value in values.items():
            setattr(message, name, value)
        db.session.commit()
        return message.id


def review_card(page: str, message_id: int) -> str:
    """The HTML of one message's card on the Review page."""
    cards = page.split('<li class="card')[1:]
    return next(c for c in cards if f'href="/admin/inbound/{message_id}"' in c)

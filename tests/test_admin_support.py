"""Helpers shared by the admin tests: a signed-in client, CSRF tokens, mail through the real intake.

No tests live here; the test_admin_*.py files import these.
"""

from __future__ import annotations

import re
import uuid

from flask import Flask
from flask.testing import FlaskClient

from service import intake
from service.extensions import db
from service.models import InboundMessage, utcnow

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

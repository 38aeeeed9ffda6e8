"""Public endpoints: RFC 8058 one-click unsubscribe and the health check."""

from __future__ import annotations

from service import contacts, enrollments
from service.extensions import db
from service.models import Contact, Enrollment
from service.signing import unsubscribe_token
from tests.conftest import DEFAULT_YAML, _load


def _bob(app) -> tuple[int, str]:
    _load(app, DEFAULT_YAML.read_text())
    with app.app_context():
        bob = contacts.upsert(db.session, "bob@prospect.example", "Bob Prospect")
        from service.campaigns import by_slug

        enrollments.enroll(db.session, bob, by_slug(db.session, "execution-roadmap"))
        db.session.commit()
        return bob.id, unsubscribe_token(app.config["SECRET_KEY"], bob.id)


def test_get_shows_a_confirmation_and_changes_nothing(app):
    _, token = _bob(app)
    page = app.test_client().get(f"/u/{token}")
    assert page.status_code == 200
    assert b"Yes, unsubscribe me" in page.data and b"bob@prospect.example" in page.data
    with app.app_context():
        assert not contacts.is_suppressed(db.session, "bob@prospect.example")


def test_one_click_post_needs_no_cookie_answers_200_and_stops_everything(app):
    bob_id, token = _bob(app)
    client = app.test_client(use_cookies=False)
    response = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200 and "Location" not in response.headers
    with app.app_context():
        assert contacts.is_suppressed(db.session, "bob@prospect.example")
        states = [e.state for e in db.session.get(Contact, bob_id).enrollments]
        assert states == ["unsubscribed"]
    assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200


def test_a_forged_or_foreign_token_is_refused(app):
    _, token = _bob(app)
    client = app.test_client()
    assert client.post(f"/u/{token[:-2]}xx").status_code == 404
    assert client.post(f"/u/{unsubscribe_token('another-secret', 1)}").status_code == 404
    with app.app_context():
        assert not contacts.is_suppressed(db.session, "bob@prospect.example")


def test_healthz_reports_database_redis_and_poller(app):
    report = app.test_client().get("/healthz")
    assert report.status_code == 200
    assert report.json["database"] == "ok" and report.json["redis"] == "ok"
    assert report.json["poller"] == []


def test_healthz_warns_when_mail_goes_out_unsigned(make_app, dkim_key):
    unsigned = make_app().test_client().get("/healthz").json
    assert unsigned["warnings"] == [
        "DKIM is not configured (DKIM_SELECTOR and DKIM_PRIVATE_KEY): receivers cannot verify the mail comes from "
        "acumen.example"
    ]
    signed = make_app(DKIM_SELECTOR="ft2026", DKIM_PRIVATE_KEY=dkim_key[0]).test_client().get("/healthz").json
    assert signed["warnings"] == []


def test_healthz_says_when_redis_is_down(make_app):
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    report = app.test_client().get("/healthz")
    assert report.json["redis"].startswith("error")


def test_healthz_names_folders_by_mailbox_and_shows_no_user_host_or_error_text(make_app):
    from datetime import UTC, datetime, timedelta

    from service.mailboxes import folder_key
    from service.models import MailboxState

    app = make_app(IMAP_HOST="imap.acumen.example", IMAP_USERNAME="ken.private@acumen.example")
    now = datetime.now(UTC)
    refused = "LoginError: [AUTHENTICATIONFAILED] ken.private@acumen.example at imap.acumen.example"
    with app.app_context():
        db.session.add_all([
            MailboxState(mailbox=folder_key(app.config, "INBOX"), last_poll_at=now - timedelta(seconds=90),
                         last_error=refused, last_error_at=now - timedelta(seconds=30)),
            MailboxState(mailbox=folder_key(app.config, "Sent"), last_poll_at=now - timedelta(seconds=5),
                         last_error="TimeoutError: imap.acumen.example timed out",
                         last_error_at=now - timedelta(seconds=60)),
            MailboxState(mailbox="imap://old.login@old-imap.example/INBOX", last_poll_at=now, last_error=refused),
        ])
        db.session.commit()
    response = app.test_client().get("/healthz")
    inbox, sent, old = sorted(response.json["poller"], key=lambda p: (p["mailbox"], p["folder"]))
    assert (inbox["mailbox"], inbox["folder"], inbox["failing"]) == ("default", "INBOX", True)
    assert 89 <= inbox["lag_seconds"] <= 100 and inbox["last_poll_at"].startswith(str(now.year))
    assert (sent["folder"], sent["failing"]) == ("Sent", False)  # a pass finished after its error
    assert (old["mailbox"], old["folder"], old["failing"]) == ("unclaimed", "1", True)
    for secret in ("ken.private", "imap.acumen.example", "old.login", "old-imap", "AUTHENTICATIONFAILED", "Error"):
        assert secret not in response.get_data(as_text=True)


def test_the_root_sends_people_to_the_admin(app):
    response = app.test_client().get("/")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"


def test_one_click_for_an_erased_person_still_answers_200(app):
    from service.models import Contact as ContactRow

    bob_id, token = _bob(app)
    with app.app_context():
        db.session.execute(db.delete(Enrollment).where(Enrollment.contact_id == bob_id))
        db.session.execute(db.delete(ContactRow).where(ContactRow.id == bob_id))
        db.session.commit()
    response = app.test_client(use_cookies=False).post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200 and b"this address" in response.data


def test_behind_a_trusted_proxy_the_client_address_comes_from_x_forwarded_for(make_app):
    from flask import request

    app = make_app(TRUSTED_PROXIES=1)
    seen = {}

    @app.get("/_who")
    def who():
        seen["addr"], seen["scheme"] = request.remote_addr, request.scheme
        return ""

    app.test_client().get("/_who", headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
    assert seen == {"addr": "203.0.113.9", "scheme": "https"}
    direct = make_app()

    @direct.get("/_who")
    def who_direct():
        seen["addr"] = request.remote_addr
        return ""

    direct.test_client().get("/_who", headers={"X-Forwarded-For": "203.0.113.9"})
    assert seen["addr"] == "127.0.0.1"  # without a trusted proxy the header is ignored

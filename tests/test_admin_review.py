"""Review: mail that needs a human, with its reasons, and one-click corrections with real consequences."""

from __future__ import annotations

import re

from rq.job import Job
from sqlalchemy import select, update

from service import contacts
from service.extensions import db
from service.models import Enrollment, Event, Outbound, utcnow
from tests.test_admin_support import inbound, post, receive, send_job, signed_in, text
from tests.world import mail

STRANGER = dict(sender="Dana Dee <dana@prospect.example>", subject="that thing you wrote", to="ken@acumen.example",
                body="Ken, could you send me the document from your book?")


def test_unmatched_human_mail_waits_in_review_with_its_reasons(world):
    message_id = receive(world, mail(**STRANGER))
    page = text(signed_in(world).get("/admin/review"))
    assert "that thing you wrote" in page and "person-written mail matching no campaign: needs a look" in page
    assert "could you send me the document" in page
    assert inbound(world, message_id).state == "review"


def test_this_is_a_request_sends_the_magnet_like_the_classifier_would(world, redis_server):
    message_id = receive(world, mail(**STRANGER))
    client = signed_in(world)
    response = post(client, f"/admin/inbound/{message_id}/correct",
                    {"kind": "request", "campaign": "execution-roadmap"}, follow_redirects=True)
    assert f"Message #{message_id} is now treated as a request. 1 mail queued." in text(response)
    message = inbound(world, message_id)
    assert (message.kind, message.state) == ("request", "processed")
    assert "corrected: human → request by alice@acumen.example" in message.reasons
    with world.app_context():
        row = db.session.scalar(select(Outbound))
        assert (row.kind, row.to_address, row.inbound_id) == ("magnet", "dana@prospect.example", message_id)
        correction = db.session.scalar(select(Event.detail).where(Event.kind == "correction"))
        assert correction == "human → request by alice@acumen.example"
        job = send_job(redis_server.client(), row)
    assert job.func_name == "workers.jobs.send" and job.args == (row.id,)
    assert "that thing you wrote" not in text(client.get("/admin/review"))


def test_a_request_needs_a_campaign(world):
    message_id = receive(world, mail(**STRANGER))
    response = post(signed_in(world), f"/admin/inbound/{message_id}/correct", {"kind": "request", "campaign": ""},
                    follow_redirects=True)
    assert "Not corrected: choose the campaign this is a request for." in text(response)
    assert inbound(world, message_id).state == "review"


def test_this_is_a_reply_from_a_contact_makes_them_hot_and_stops_their_sequence(world):
    receive(world, mail())  # bob asks for the roadmap and is enrolled
    message_id = receive(world, mail(**STRANGER))
    post(signed_in(world), f"/admin/inbound/{message_id}/correct", {"kind": "human", "email": "bob@prospect.example"})
    with world.app_context():
        bob = contacts.find(db.session, "bob@prospect.example")
        assert bob.hot and db.session.scalar(select(Enrollment.state)) == "replied"
    assert inbound(world, message_id).contact_id == bob.id


def test_a_reply_from_someone_unknown_is_refused_with_the_reason(world):
    message_id = receive(world, mail(**STRANGER))
    response = post(signed_in(world), f"/admin/inbound/{message_id}/correct",
                    {"kind": "human", "email": "nobody@x.example"}, follow_redirects=True)
    assert "there is no contact with the address &#39;nobody@x.example&#39;" in text(response)


def test_this_was_an_auto_reply_and_dismiss_take_it_off_the_list(world):
    first = receive(world, mail(**STRANGER))
    second = receive(world, mail(**{**STRANGER, "subject": "another"}))
    client = signed_in(world)
    post(client, f"/admin/inbound/{first}/correct", {"kind": "auto_reply"})
    post(client, f"/admin/inbound/{second}/dismiss")
    assert inbound(world, first).kind == "auto_reply"
    assert "dismissed by alice@acumen.example" in inbound(world, second).reasons
    assert "Nothing to review" in text(client.get("/admin/review"))


def test_a_repeat_request_inside_the_limit_is_shown_with_its_reason(world):
    receive(world, mail())
    with world.app_context():
        db.session.execute(update(Outbound).values(state="sent", sent_at=utcnow()))
        db.session.commit()
    message_id = receive(world, mail())
    assert inbound(world, message_id).state == "review"
    page = text(signed_in(world).get("/admin/review"))
    assert "repeat request within 7 days: no second magnet" in page


def test_quarantined_mail_shows_its_error_and_can_be_processed_again(world, redis_server):
    with world.app_context():
        from service import intake

        message = intake.store(db.session, "INBOX", 1, None, b"Subject: x\r\n\r\nbody", utcnow(), source_key="p")
        message.state, message.attempts, message.error = "quarantined", 3, "Traceback...\nKeyError: 'boom'"
        db.session.commit()
        message_id = message.id
    client = signed_in(world)
    assert "KeyError: &#39;boom&#39;" in text(client.get("/admin/review"))
    response = post(client, f"/admin/inbound/{message_id}/retry", follow_redirects=True)
    assert f"Message #{message_id} is queued for processing again." in text(response)
    again = inbound(world, message_id)
    assert (again.state, again.attempts, again.error) == ("new", 0, "")
    job = Job.fetch(f"in-{message_id}", connection=redis_server.client())
    assert job.func_name == "workers.jobs.process_inbound" and job.args == (message_id,)


def test_only_quarantined_mail_can_be_retried(world):
    message_id = receive(world, mail(**STRANGER))
    response = post(signed_in(world), f"/admin/inbound/{message_id}/retry", follow_redirects=True)
    assert "Not retried: only a quarantined message can be retried." in text(response)


HOSTILE = (
    b"From: Eve <eve@x.example>\r\nTo: ken@acumen.example\r\nSubject: look\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n'
    b'<p style="color: red; position: fixed">Hi</p><script>alert(1)</script><img src="https://track.example/p.gif" '
    b'onerror="alert(2)"><a href="javascript:alert(3)">x</a><a href="https://ok.example/">ok</a>'
    b'<form action="https://x.example"><input name=p></form>\r\n'
    b'--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; '
    b'filename="<img src=x onerror=alert(4)>.pdf"\r\n\r\nAAAA\r\n--b--\r\n'
)


def test_a_message_html_is_sanitised_and_shown_only_in_a_sandboxed_frame(world):
    message_id = receive(world, HOSTILE)
    client = signed_in(world)
    page = text(client.get(f"/admin/inbound/{message_id}"))
    assert re.search(rf'<iframe title="The message.s HTML" sandbox="" [^>]*src="/admin/inbound/{message_id}/body"',
                     page)
    assert "&lt;img src=x onerror=alert(4)&gt;.pdf" in page and "<img src=x" not in page
    body = client.get(f"/admin/inbound/{message_id}/body")
    html = text(body)
    csp = body.headers["Content-Security-Policy"]
    assert csp.startswith("sandbox;") and "img-src data:" in csp and "script-src" not in csp
    assert "<script" not in html and "onerror" not in html and "javascript:" not in html and "<form" not in html
    assert "track.example" not in html and "position" not in html
    assert '<p style="color:red">Hi</p>' in html and 'href="https://ok.example/"' in html


def test_what_we_sent_can_be_read_from_the_ledger(world):
    from workers import jobs

    receive(world, mail())
    with world.app_context():
        row_id = db.session.scalar(select(Outbound.id))
    with world.app_context():
        jobs.send(row_id)  # the real send job, to the test SMTP sink
    client = signed_in(world)
    page = text(client.get(f"/admin/outbound/{row_id}"))
    assert "Re: Roadmap please" in page and "250" in page and "Execution-Success-Roadmap.pdf" in page
    assert "Hi Bob" in text(client.get(f"/admin/outbound/{row_id}/body"))

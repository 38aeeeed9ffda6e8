"""The core loop end to end: Dovecot → poller → worker → SMTP sink, and back."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from service.extensions import db
from service.models import Enrollment, InboundMessage, Outbound
from tests.conftest import PDF
from tests.world import mail, parse, run_poller, run_worker, scalar


def _answered(sink, count: int, timeout: float = 10):
    return [parse(m.data) for m in sink.wait_for(count, timeout=timeout)]


def _drive(app, sink, count: int, timeout: float = 15):
    """Run the worker until the sink has `count` messages (follow-ups wait for their time)."""
    deadline = time.monotonic() + timeout
    while len(sink.messages) < count and time.monotonic() < deadline:
        run_worker(app)
        time.sleep(0.3)
    return [parse(m.data) for m in sink.messages]


def test_it_answers_a_request_in_thread_with_the_pdf_then_follows_up_and_stops_on_reply(
    imap_settings, dovecot, sink, world
):
    app = world
    request = mail(Cc="Someone Else <else@prospect.example>, roadmap@acumen.example")
    dovecot.append(request)
    run_poller(app)
    run_worker(app)

    [reply] = _answered(sink, 1)
    request_id = parse(request)["Message-ID"]
    assert sink.messages[0].rcpt_tos == ["bob@prospect.example"]
    assert reply["To"] == "Bob Prospect <bob@prospect.example>" and reply["Cc"] is None
    assert reply["In-Reply-To"] == request_id
    assert reply["References"] == request_id
    assert reply["Subject"] == "Re: Roadmap please"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["Message-ID"].endswith("@acumen.example>")
    assert reply["List-Unsubscribe"].strip().startswith("<https://desk.acumen.example/u/")
    assert "mailto:roadmap+unsubscribe@acumen.example" in reply["List-Unsubscribe"]
    assert reply["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert reply.get_body(("plain",)).get_content().startswith("Hi Bob")
    assert reply.get_body(("html",)) is not None
    [attachment] = list(reply.iter_attachments())
    assert attachment.get_filename() == "Execution-Success-Roadmap.pdf"
    assert attachment.get_content() == PDF

    follow_up = _drive(app, sink, 2)[1]
    assert follow_up["In-Reply-To"] == reply["Message-ID"]
    assert follow_up["References"].split() == [request_id, reply["Message-ID"]]
    assert follow_up["Auto-Submitted"] == "auto-generated"
    assert follow_up["Subject"] == "Re: Roadmap please"
    assert sink.messages[1].rcpt_tos == ["bob@prospect.example"]

    answer = mail(
        subject="Re: Roadmap please", body="Thanks Ken, our Monday meeting is a mess. Can we talk?",
        In_Reply_To=follow_up["Message-ID"], References=f"{request_id} {follow_up['Message-ID']}",
    )
    dovecot.append(answer)
    run_poller(app)
    run_worker(app)
    with app.app_context():
        enrollment = db.session.scalar(select(Enrollment))
        assert enrollment.state == "replied"
        step_two = db.session.scalar(select(Outbound).where(Outbound.step_position == 2))
        assert step_two.state == "cancelled"
        step_two.due_at = datetime.now(UTC) - timedelta(seconds=1)  # its time comes anyway
        db.session.commit()

    run_poller(app)
    run_worker(app)
    time.sleep(0.5)
    assert len(sink.messages) == 2  # no second copy of anything, no step after the reply
    assert scalar(app, "SELECT count(*) FROM inbound_message") == 2
    assert scalar(app, "SELECT count(*) FROM contact WHERE hot") == 1


def test_a_reply_matched_by_address_alone_also_stops_the_sequence(imap_settings, dovecot, sink, world):
    app = world
    dovecot.append(mail())
    run_poller(app)
    run_worker(app)
    _answered(sink, 1)
    dovecot.append(mail(subject="a question", body="Ken, quick question about coaching."))
    run_poller(app)
    run_worker(app)
    assert scalar(app, "SELECT state FROM enrollment") == "replied"
    assert scalar(app, "SELECT count(*) FROM outbound WHERE state = 'pending'") == 0


def test_old_mail_on_first_connect_is_backlog_and_gets_no_answer(imap_settings, dovecot, sink, world):
    app = world
    old = datetime.now(UTC) - timedelta(hours=30)
    dovecot.append(mail(sender="old@prospect.example"), msg_time=old)
    dovecot.append(mail(sender="new@prospect.example"))
    run_poller(app)
    run_worker(app)
    assert [m.rcpt_tos for m in _answered_raw(sink, 1)] == [["new@prospect.example"]]
    old_state = "SELECT state FROM inbound_message WHERE from_address = 'old@prospect.example'"
    assert scalar(app, old_state) == "backlog"


def _answered_raw(sink, count):
    messages = sink.wait_for(count, timeout=10)
    time.sleep(0.5)
    return sink.messages if len(sink.messages) > count else messages


def test_a_new_uidvalidity_rescans_without_answering_twice(imap_settings, dovecot, sink, world):
    app = world
    request = mail()
    dovecot.append(request)
    run_poller(app)
    run_worker(app)
    _answered(sink, 1)
    dovecot.recreate_folder("INBOX")
    dovecot.append(request)
    dovecot.append(mail(sender="dana@prospect.example"))
    run_poller(app)
    run_worker(app)
    sink.wait_for(2, timeout=10)
    time.sleep(0.5)
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == ["bob@prospect.example", "dana@prospect.example"]
    assert scalar(app, "SELECT count(*) FROM inbound_message") == 2


def test_a_poller_that_dies_mid_batch_stores_each_message_once(imap_settings, dovecot, sink, world, monkeypatch):
    from service import intake

    for n in range(5):
        dovecot.append(mail(sender=f"p{n}@prospect.example"))
    real_store, calls = intake.store, []

    def dies_on_the_fourth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("killed mid-batch")
        return real_store(*args, **kwargs)

    app = world
    app.config["IMAP_BATCH"] = 2
    monkeypatch.setattr(intake, "store", dies_on_the_fourth)
    with pytest.raises(RuntimeError, match="killed mid-batch"):
        run_poller(app)
    assert scalar(app, "SELECT count(*) FROM inbound_message") == 2  # the first batch only
    monkeypatch.setattr(intake, "store", real_store)
    run_poller(app)
    run_poller(app)
    run_worker(app)
    sink.wait_for(5, timeout=15)
    time.sleep(0.5)
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == [f"p{n}@prospect.example" for n in range(5)]
    assert scalar(app, "SELECT count(*) FROM inbound_message") == 5


def test_machine_mail_is_stored_but_never_answered(imap_settings, dovecot, sink, world):
    app = world
    machines = [
        mail(Auto_Submitted="auto-replied"),
        mail(Return_Path="<>"),
        mail(sender="MAILER-DAEMON@mx.prospect.example"),
        mail(sender="postmaster@prospect.example"),
        mail(sender="no-reply@prospect.example"),
        mail(Precedence="bulk"),
        mail(Precedence="list"),
        mail(Precedence="junk"),
        mail(List_Id="<news.prospect.example>"),
        mail(List_Unsubscribe="<mailto:leave@prospect.example>"),
    ]
    for raw in machines:
        dovecot.append(raw)
    dovecot.append(mail(sender="human@prospect.example", Auto_Submitted="no"))
    run_poller(app)
    run_worker(app)
    sink.wait_for(1, timeout=10)
    time.sleep(1)
    assert [m.rcpt_tos for m in sink.messages] == [["human@prospect.example"]]
    assert scalar(app, "SELECT count(*) FROM inbound_message") == len(machines) + 1
    with app.app_context():
        kinds = db.session.scalars(select(InboundMessage.kind).order_by(InboundMessage.id)).all()
    assert "request" not in kinds[:-1] and kinds[-1] == "request"


def test_a_suppressed_address_gets_nothing(imap_settings, dovecot, sink, world):
    app = world
    dovecot.append(mail(sender="Carol <carol@prospect.example>"))
    run_poller(app)
    run_worker(app)
    time.sleep(1)
    assert sink.messages == []
    assert scalar(app, "SELECT count(*) FROM event WHERE kind = 'request_ignored'") == 1


def test_requests_are_answered_once_per_period(imap_settings, dovecot, sink, world):
    app = world
    for _ in range(3):
        dovecot.append(mail())
    run_poller(app)
    run_worker(app)
    sink.wait_for(1, timeout=10)
    time.sleep(1)
    assert len(sink.messages) == 1
    assert scalar(app, "SELECT count(*) FROM event WHERE kind = 'repeat_request'") == 2


def test_follow_ups_survive_a_redis_flush_through_the_reconciler(imap_settings, dovecot, sink, world, redis_server):
    app = world
    dovecot.append(mail())
    run_poller(app)
    run_worker(app)
    _answered(sink, 1)
    assert scalar(app, "SELECT count(*) FROM outbound WHERE state = 'pending'") == 1
    redis_server.flushall()  # the scheduled follow-up job is gone from Redis
    time.sleep(2.2)
    run_worker(app)  # the worker reconciles at start: the database says the step is due
    assert len(sink.wait_for(2, timeout=10)) == 2
    run_worker(app)
    time.sleep(0.5)
    assert len(sink.messages) == 2


def test_first_run_loads_the_default_campaign_and_an_admin_once(app):
    from service.cli import first_run

    with app.app_context():
        first_run(app)
        first_run(app)
    assert scalar(app, "SELECT count(*) FROM campaign") == 1
    assert scalar(app, "SELECT count(*) FROM \"user\"") == 1
    assert scalar(app, "SELECT count(*) FROM asset WHERE filename = 'roadmap.pdf'") == 1

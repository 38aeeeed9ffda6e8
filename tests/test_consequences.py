"""What each kind of inbound mail does, end to end through Dovecot, the worker and the SMTP sink."""

from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from service import contacts
from service.extensions import db
from service.models import InboundMessage, Outbound
from tests.world import dsn, mail, parse, run_poller, run_worker, scalar


def _requested(app, dovecot, sink):
    """bob asks and gets the roadmap; returns the Message-ID of our reply."""
    dovecot.append(mail())
    run_poller(app)
    run_worker(app)
    return parse(sink.wait_for(1)[0].data)["Message-ID"].strip("<>")


def _deliver(app, dovecot, raw: bytes) -> InboundMessage:
    dovecot.append(raw)
    run_poller(app)
    run_worker(app)
    with app.app_context():
        message = db.session.scalar(select(InboundMessage).order_by(InboundMessage.id.desc()))
        db.session.expunge(message)
        return message


def _suppressed(app, address: str) -> bool:
    with app.app_context():
        return contacts.is_suppressed(db.session, address)


def test_a_permanent_bounce_suppresses_the_address_and_ends_the_sequence(imap_settings, dovecot, sink, world):
    ours = _requested(world, dovecot, sink)
    bounce = _deliver(world, dovecot, dsn([("bob@prospect.example", "5.1.1", "failed")], ours))
    assert bounce.kind == "bounce"
    assert _suppressed(world, "bob@prospect.example")
    assert scalar(world, "SELECT state FROM enrollment") == "bounced"
    assert scalar(world, "SELECT count(*) FROM outbound WHERE state = 'pending'") == 0


def test_a_full_mailbox_stops_the_sequence_but_keeps_the_address(imap_settings, dovecot, sink, world):
    ours = _requested(world, dovecot, sink)
    _deliver(world, dovecot, dsn([("bob@prospect.example", "5.2.2", "failed")], ours))
    assert not _suppressed(world, "bob@prospect.example")
    assert scalar(world, "SELECT count(*) FROM event WHERE kind = 'bounce_soft'") == 1
    assert scalar(world, "SELECT state FROM enrollment") == "bounced"


def test_delay_notices_change_nothing(imap_settings, dovecot, sink, world):
    world.config["SOFT_BOUNCE_LIMIT"] = 2
    ours = _requested(world, dovecot, sink)
    for _ in range(3):
        _deliver(world, dovecot, dsn([("bob@prospect.example", "4.4.7", "delayed")], ours))
    assert not _suppressed(world, "bob@prospect.example")
    assert scalar(world, "SELECT state FROM enrollment") == "active"
    assert scalar(world, "SELECT count(*) FROM event WHERE kind LIKE 'bounce%'") == 0


def test_a_two_recipient_report_only_suppresses_the_permanent_one(imap_settings, dovecot, sink, world):
    ours = _requested(world, dovecot, sink)
    dovecot.append(mail(sender="Dana <dana@prospect.example>"))
    run_poller(world)
    run_worker(world)
    sink.wait_for(2)
    report = dsn([("bob@prospect.example", "5.1.1", "failed"), ("dana@prospect.example", "4.2.2", "delayed")], ours)
    _deliver(world, dovecot, report)
    assert _suppressed(world, "bob@prospect.example")
    assert not _suppressed(world, "dana@prospect.example")


def test_a_bounce_for_mail_we_never_sent_changes_nothing(imap_settings, dovecot, sink, world):
    bounce = _deliver(world, dovecot, dsn([("stranger@elsewhere.example", "5.1.1", "failed")], "nope@x.example"))
    assert bounce.kind == "bounce"
    assert not _suppressed(world, "stranger@elsewhere.example")
    assert scalar(world, "SELECT count(*) FROM contact") == 0
    assert sink.messages == []


def test_an_out_of_office_with_a_return_date_postpones_the_next_follow_up(imap_settings, dovecot, sink, world):
    _requested(world, dovecot, sink)
    back = date.today() + timedelta(days=7)
    ooo = mail(
        subject="Out of Office: Roadmap please", Auto_Submitted="auto-replied",
        body=f"I am out of the office until {back.day} {back:%B %Y} with limited access to email.",
    )
    message = _deliver(world, dovecot, ooo)
    assert message.kind == "auto_reply"
    with world.app_context():
        row = db.session.scalar(select(Outbound).where(Outbound.kind == "followup"))
        assert row.state == "pending"
        day_after = datetime.combine(back + timedelta(days=1), time_of_day(9), ZoneInfo("America/Chicago"))
        assert row.due_at >= day_after  # 09:00 in Chicago the day after, or the window's next opening
    assert scalar(world, "SELECT state FROM enrollment") == "active"
    time.sleep(2.2)
    run_worker(world)
    time.sleep(0.5)
    assert len(sink.messages) == 1  # the follow-up that was due now waits; the OOO got no answer


def test_please_unsubscribe_me_stops_everything(imap_settings, dovecot, sink, world):
    _requested(world, dovecot, sink)
    message = _deliver(world, dovecot, mail(subject="Re: Roadmap please", body="Please unsubscribe me."))
    assert message.kind == "unsubscribe"
    assert _suppressed(world, "bob@prospect.example")
    assert scalar(world, "SELECT state FROM enrollment") == "unsubscribed"
    time.sleep(2.2)
    run_worker(world)
    assert len(sink.messages) == 1


def test_a_newsletter_asking_for_the_roadmap_gets_nothing(imap_settings, dovecot, sink, world):
    newsletter = mail(
        sender="Sales Weekly <news@weekly.example>", subject="Send me the roadmap, says everyone",
        List_Unsubscribe="<https://weekly.example/u/1>", List_Id="<weekly.example>", Precedence="bulk",
    )
    message = _deliver(world, dovecot, newsletter)
    assert message.kind == "bulk"
    time.sleep(0.5)
    assert sink.messages == []
    assert scalar(world, "SELECT count(*) FROM contact") == 0


def test_unknown_human_mail_is_kept_for_review(imap_settings, dovecot, sink, world):
    message = _deliver(world, dovecot, mail(sender="x@else.example", to="ken@acumen.example", subject="Lunch?",
                                            body="Are you free for lunch on Tuesday?"))
    assert (message.kind, message.state) == ("human", "review")
    assert sink.messages == []


def test_a_message_that_fails_three_times_is_quarantined_with_its_error(imap_settings, dovecot, world, monkeypatch):
    from service import intake
    from workers import jobs

    dovecot.append(mail())
    run_poller(world)
    message_id = scalar(world, "SELECT id FROM inbound_message")

    def broken(*args, **kwargs):
        raise ValueError("a rule blew up")

    monkeypatch.setattr(intake, "apply", broken)
    with world.app_context():
        for _ in range(3):
            with pytest.raises(ValueError):
                jobs.process_inbound(message_id)
        assert jobs.process_inbound(message_id) == "nothing to do"
    assert scalar(world, "SELECT state FROM inbound_message") == "quarantined"
    assert "a rule blew up" in scalar(world, "SELECT error FROM inbound_message")


def test_processed_mail_moves_to_the_done_folder_when_configured(imap_settings, dovecot, sink, world):
    dovecot.create_folder("Processed") if "Processed" not in dovecot.folders() else None
    world.config["IMAP_DONE_FOLDER"] = "Processed"
    _requested(world, dovecot, sink)
    run_poller(world)
    assert dovecot.messages("INBOX") == []
    assert len(dovecot.messages("Processed")) == 1


def test_an_ooo_return_date_is_kept_on_the_timeline(imap_settings, dovecot, sink, world):
    _requested(world, dovecot, sink)
    back = date.today() + timedelta(days=11)
    _deliver(world, dovecot, mail(subject="Automatic reply: Roadmap please", Auto_Submitted="auto-replied",
                                  body=f"I'm away and will be back on {back.day} {back:%B %Y}."))
    detail = scalar(world, "SELECT detail FROM event WHERE kind = 'auto_reply'")
    assert detail == f"away until {back}"


def test_a_verp_bounce_is_tied_to_our_send_without_any_message_id(imap_settings, dovecot, sink, world):
    world.config["BOUNCE_ADDRESS"] = "bounces@acumen.example"
    _requested(world, dovecot, sink)
    sender = sink.messages[0].mail_from
    row_id = scalar(world, "SELECT id FROM outbound WHERE kind = 'magnet'")
    assert re.fullmatch(rf"bounces\+{row_id}-[0-9a-f]{{12}}@acumen\.example", sender)
    # The remote MTA reports an address rewritten beyond recognition; only the VERP token ties it back.
    _deliver(world, dovecot, dsn([("b.prospect@relay.example", "5.1.1", "failed")], to=sender))
    assert _suppressed(world, "bob@prospect.example")


def test_a_forged_verp_token_ties_nothing(imap_settings, dovecot, sink, world):
    world.config["BOUNCE_ADDRESS"] = "bounces@acumen.example"
    _requested(world, dovecot, sink)
    row_id = scalar(world, "SELECT id FROM outbound WHERE kind = 'magnet'")
    forged = f"bounces+{row_id}-deadbeef0000@acumen.example"
    _deliver(world, dovecot, dsn([("b.prospect@relay.example", "5.1.1", "failed")], to=forged))
    assert not _suppressed(world, "bob@prospect.example")


def test_mail_to_the_unsubscribe_address_unsubscribes(imap_settings, dovecot, sink, world):
    _requested(world, dovecot, sink)
    message = _deliver(world, dovecot, mail(to="roadmap+unsubscribe@acumen.example", subject="unsubscribe", body=""))
    assert message.kind == "unsubscribe"
    assert _suppressed(world, "bob@prospect.example")


def test_a_spam_complaint_suppresses_the_address(imap_settings, dovecot, sink, world):
    ours = _requested(world, dovecot, sink)
    arf = f"""From: abuse@isp.example
To: roadmap@acumen.example
Subject: FW: Re: Roadmap please
Message-ID: <arf-1@isp.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="arf"

--arf
Content-Type: text/plain

This is an email abuse report for an email message received from IP 192.0.2.1.

--arf
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ISP-FBL/1.0
Version: 1
Original-Rcpt-To: bob@prospect.example

--arf
Content-Type: text/rfc822-headers

From: roadmap@acumen.example
To: bob@prospect.example
Message-ID: <{ours}>
Subject: Re: Roadmap please

--arf--
""".replace("\n", "\r\n").encode()
    message = _deliver(world, dovecot, arf)
    assert message.kind == "complaint"
    assert _suppressed(world, "bob@prospect.example")
    assert scalar(world, "SELECT reason FROM suppression WHERE email = 'bob@prospect.example'") == "complaint"
    assert scalar(world, "SELECT state FROM enrollment") == "unsubscribed"


def test_mail_that_cannot_be_parsed_is_stored_and_kept_for_review(imap_settings, dovecot, sink, world):
    garbage = b"\x00\xff\xfe not a message at all \r\n\r\n\x80\x81" * 50
    message = _deliver(world, dovecot, garbage)
    assert message.state == "review"
    assert message.reasons
    assert scalar(world, "SELECT size FROM inbound_message") >= len(garbage)  # Dovecot may add a header
    assert sink.messages == []


def test_a_huge_request_is_stored_whole_and_answered(imap_settings, dovecot, sink, world):
    body = "Please send me the Execution Success Roadmap.\n" + ("x" * 76 + "\n") * 70_000
    message = _deliver(world, dovecot, mail(body=body))
    assert message.kind == "request" and message.size > 5_000_000
    assert sink.wait_for(1)[0].rcpt_tos == ["bob@prospect.example"]


def test_soft_bounces_suppress_after_the_configured_number(imap_settings, dovecot, sink, world):
    world.config["SOFT_BOUNCE_LIMIT"] = 2
    ours = _requested(world, dovecot, sink)
    _deliver(world, dovecot, dsn([("bob@prospect.example", "5.2.2", "failed")], ours))
    assert not _suppressed(world, "bob@prospect.example")
    _deliver(world, dovecot, dsn([("bob@prospect.example", "5.7.1", "failed")], ours))
    assert _suppressed(world, "bob@prospect.example")
    assert scalar(world, "SELECT state FROM enrollment") == "bounced"


def test_a_mailto_unsubscribe_from_another_address_of_the_same_person_works(imap_settings, dovecot, sink, world):
    _requested(world, dovecot, sink)
    [mailto] = [p for p in parse(sink.messages[0].data)["List-Unsubscribe"].split(",") if "mailto:" in p]
    subject = mailto.strip(" <>").split("subject=")[1].replace("%20", " ")
    message = _deliver(world, dovecot, mail(sender="b.prospect@gmail.example", to="roadmap+unsubscribe@acumen.example",
                                            subject=subject, body=""))
    assert message.kind == "unsubscribe"
    assert _suppressed(world, "bob@prospect.example")
    assert scalar(world, "SELECT state FROM enrollment") == "unsubscribed"


def test_a_redacted_complaint_is_tied_back_through_the_original_message_id(imap_settings, dovecot, sink, world):
    ours = _requested(world, dovecot, sink)
    arf = f"""From: abuse@isp.example
To: roadmap@acumen.example
Subject: complaint
Message-ID: <arf-2@isp.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="arf"

--arf
Content-Type: text/plain

An abuse report (recipient redacted).

--arf
Content-Type: message/feedback-report

Feedback-Type: abuse
Version: 1

--arf
Content-Type: text/rfc822-headers

From: roadmap@acumen.example
To: redacted@isp.example
Message-ID: <{ours}>

--arf--
""".replace("\n", "\r\n").encode()
    assert _deliver(world, dovecot, arf).kind == "complaint"
    assert _suppressed(world, "bob@prospect.example")


def test_a_request_with_a_reply_to_on_our_own_domain_is_answered_at_the_sender(imap_settings, dovecot, sink, world):
    _deliver(world, dovecot, mail(Reply_To="roadmap@acumen.example"))
    assert sink.wait_for(1)[0].rcpt_tos == ["bob@prospect.example"]


def test_a_request_that_failed_dmarc_is_kept_for_review(imap_settings, dovecot, sink, world):
    forged = mail(Authentication_Results="mx.acumen.example; spf=fail smtp.mailfrom=prospect.example; dmarc=fail")
    message = _deliver(world, dovecot, forged)
    assert message.state == "review" and "dmarc=fail" in message.reasons[-1]
    assert sink.messages == []


def test_an_out_of_thread_note_from_an_enrolled_prospect_that_names_the_roadmap_is_a_reply(
    imap_settings, dovecot, sink, world
):
    _requested(world, dovecot, sink)
    _deliver(world, dovecot, mail(subject="Got it", body="Got the roadmap, thanks. Can we talk Tuesday?"))
    assert scalar(world, "SELECT state FROM enrollment") == "replied"
    assert scalar(world, "SELECT hot FROM contact") in (1, True)


def test_a_message_whose_worker_keeps_dying_is_quarantined_not_retried_forever(imap_settings, dovecot, world):
    from workers import jobs

    dovecot.append(mail())
    run_poller(world)
    with world.app_context():
        db.session.execute(db.update(InboundMessage).values(attempts=3))  # three workers died on it
        db.session.commit()
        assert jobs.process_inbound(scalar(world, "SELECT id FROM inbound_message")) == "quarantined"
    assert scalar(world, "SELECT state FROM inbound_message") == "quarantined"

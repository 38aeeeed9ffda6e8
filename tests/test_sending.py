"""Sending like a careful human: headers, DKIM, pace, windows, SMTP failures and the Sent copy."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import dkim
from sqlalchemy import select, update

from service import contacts, intake, throttle
from service.extensions import db
from service.models import Campaign, Outbound
from tests.world import mail, parse, run_worker, scalar


def ask(app, *senders: str) -> None:
    """Store requests as the poller would, and queue them."""
    from service.queue import queue_inbound

    with app.app_context():
        for n, sender in enumerate(senders):
            row = intake.store(db.session, "test", 1, int(time.time() * 1000) + n, mail(sender=sender), None)
            db.session.commit()
            queue_inbound(row.id)


def rows(app, **where) -> list[Outbound]:
    with app.app_context():
        query = select(Outbound).filter_by(**where).order_by(Outbound.id)
        found = db.session.scalars(query).all()
        db.session.expunge_all()
        return found


def test_what_we_send_is_strict_rfc_5322_with_the_loop_and_suppress_headers(world, sink):
    ask(world, "bob@prospect.example")
    run_worker(world)
    raw = sink.wait_for(1)[0].data
    strict = message_from_bytes(raw, policy=policy.strict)  # raises on any defect
    assert strict["X-Auto-Response-Suppress"] == "OOF, AutoReply"
    assert strict["X-Follow-Through-Loop"] == "acumen.example"
    assert not any(part.defects for part in strict.walk())


def test_dkim_signs_the_unsubscribe_headers_and_verifies_against_the_public_key(make_app, sink, dkim_key):
    from tests.conftest import DEFAULT_YAML, _load

    private, record = dkim_key
    app = make_app(DKIM_SELECTOR="ft2026", DKIM_PRIVATE_KEY=private)
    _load(app, DEFAULT_YAML.read_text())
    ask(app, "bob@prospect.example")
    run_worker(app)
    raw = sink.wait_for(1)[0].data

    def dns(name, timeout=5):
        assert name == b"ft2026._domainkey.acumen.example."
        return record

    signed = parse(raw)["DKIM-Signature"]
    assert "list-unsubscribe-post" in signed.lower() and "list-unsubscribe" in signed.lower()
    assert dkim.verify(raw, dnsfunc=dns)
    assert not dkim.verify(raw.replace(b"Subject: Re: Roadmap please", b"Subject: Re: Roadmap pleasE"), dnsfunc=dns)


def test_temporary_smtp_failures_are_retried_until_one_copy_is_accepted(world, sink):
    world.config["SEND_RETRY_BASE_SECONDS"] = 0.1
    sink.fail_next(3, 451, "4.3.0 Try again later")
    ask(world, "bob@prospect.example")
    for _ in range(20):
        run_worker(world)
        if sink.messages:
            break
        time.sleep(0.3)
    run_worker(world)
    assert len(sink.messages) == 1
    [row] = rows(world, kind="magnet")
    assert (row.state, row.attempts) == ("sent", 4)
    assert scalar(world, "SELECT count(*) FROM event WHERE kind = 'send_deferred'") == 3


def test_a_permanent_unknown_user_fails_at_once_and_suppresses(world, sink):
    sink.reject_rcpt("bob@prospect.example", "550 5.1.1 User unknown")
    ask(world, "bob@prospect.example")
    run_worker(world)
    run_worker(world)
    [row] = rows(world, kind="magnet")
    assert (row.state, row.attempts) == ("failed", 1)
    assert "550" in row.smtp_response and "5.1.1" in row.smtp_response
    with world.app_context():
        assert contacts.is_suppressed(db.session, "bob@prospect.example")
    assert sink.messages == []


def test_a_policy_rejection_fails_without_suppressing(world, sink):
    sink.reject_rcpt("bob@prospect.example", "550 5.7.1 Message rejected as spam")
    ask(world, "bob@prospect.example")
    run_worker(world)
    [row] = rows(world, kind="magnet")
    assert row.state == "failed"
    with world.app_context():
        assert not contacts.is_suppressed(db.session, "bob@prospect.example")


def test_retries_give_up_after_the_limit_and_keep_the_server_reply(world, sink):
    world.config.update(SEND_RETRY_BASE_SECONDS=0.05, SEND_RETRIES=2)
    sink.fail_next(10, 421, "4.7.0 Too many connections")
    ask(world, "bob@prospect.example")
    for _ in range(10):
        run_worker(world)
        time.sleep(0.2)
    [row] = rows(world, kind="magnet")
    assert (row.state, row.attempts) == ("failed", 2)
    assert row.smtp_response.startswith("421")


def test_a_server_that_never_answers_times_out_and_is_retried(world, sink):
    world.config.update(SMTP_TIMEOUT=1, SEND_RETRY_BASE_SECONDS=0.1)
    sink.hang = True
    ask(world, "bob@prospect.example")
    started = time.monotonic()
    run_worker(world)  # returns: the socket timeout, not the job timeout, ends the attempt
    assert time.monotonic() - started < 10
    [row] = rows(world, kind="magnet")
    assert row.state == "pending" and row.attempts == 1 and "timed out" in row.smtp_response
    sink.hang = False
    for _ in range(10):
        run_worker(world)
        if sink.messages:
            break
        time.sleep(0.3)
    assert len(sink.messages) == 1


def test_one_smtp_connection_serves_a_whole_batch(world, sink):
    ask(world, *(f"p{n}@prospect.example" for n in range(5)))
    run_worker(world)
    assert len(sink.wait_for(5)) == 5
    assert len(sink.peers) == 1


def test_the_pace_is_shared_by_every_worker_through_redis(redis_server):
    first, second = redis_server.client(), redis_server.client()
    redis_server.flushall()
    now = datetime(2026, 11, 26, 12, 0, 10, tzinfo=UTC)
    granted = [throttle.take_slot(c, 3, 100, now) is None for c in (first, second, first, second, first)]
    assert granted == [True, True, True, False, False]
    later = throttle.take_slot(second, 3, 100, now)
    assert datetime(2026, 11, 26, 12, 1, tzinfo=UTC) <= later <= datetime(2026, 11, 26, 12, 1, 21, tzinfo=UTC)
    assert first.zcard(throttle.WINDOW_KEY) == 3  # the refused ones gave theirs back


def test_the_daily_cap_waits_for_tomorrow(redis_server):
    client = redis_server.client()
    redis_server.flushall()
    now = datetime(2026, 11, 26, 23, 0, tzinfo=UTC)
    assert throttle.take_slot(client, 100, 1, now) is None
    assert throttle.take_slot(client, 100, 1, now) == datetime(2026, 11, 27, tzinfo=UTC)


def test_sends_over_the_pace_wait_instead_of_failing(world, sink):
    world.config.update(SEND_PER_MINUTE=2, SEND_PER_DAY=2)  # also holds if the run crosses a minute
    ask(world, *(f"p{n}@prospect.example" for n in range(4)))
    run_worker(world)
    time.sleep(0.5)
    assert len(sink.messages) == 2
    waiting = rows(world, state="pending", kind="magnet")
    assert len(waiting) == 2 and all("pace" in r.note for r in waiting)
    assert all(r.attempts == 0 for r in waiting)


def test_a_follow_up_claimed_outside_the_window_waits_for_it(world, sink):
    ask(world, "bob@prospect.example")
    run_worker(world)
    sink.wait_for(1)
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).strftime("%a").lower()
    with world.app_context():
        db.session.execute(update(Campaign).values(window=f"{tomorrow} 09:00-10:00", timezone="Europe/Amsterdam"))
        db.session.commit()
    time.sleep(2.2)
    run_worker(world)
    [row] = rows(world, kind="followup")
    assert row.state == "pending" and "sending window" in row.note
    assert row.due_at > datetime.now(UTC) + timedelta(hours=12)
    assert len(sink.messages) == 1


def test_the_magnet_goes_out_at_once_even_outside_the_window(world, sink):
    with world.app_context():
        db.session.execute(update(Campaign).values(window="sun 03:00-03:01", timezone="Pacific/Kiritimati"))
        db.session.commit()
    ask(world, "bob@prospect.example")
    run_worker(world)
    assert len(sink.wait_for(1)) == 1


def test_a_due_follow_up_is_not_sent_after_a_one_click_unsubscribe(world, sink):
    from service.signing import unsubscribe_token

    ask(world, "bob@prospect.example")
    run_worker(world)
    sink.wait_for(1)
    [row] = rows(world, kind="followup")
    token = unsubscribe_token(world.config["SECRET_KEY"], row.contact_id)
    assert world.test_client().post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    time.sleep(2.2)
    run_worker(world)
    assert len(sink.messages) == 1
    assert rows(world, kind="followup")[0].state == "cancelled"


def test_the_claim_rechecks_suppression_even_if_nothing_else_stopped_the_row(world, sink):
    ask(world, "bob@prospect.example")
    run_worker(world)
    sink.wait_for(1)
    with world.app_context():
        contacts.suppress(db.session, "bob@prospect.example", "unsubscribed", "added by hand")
        db.session.commit()
    time.sleep(2.2)
    run_worker(world)
    [row] = rows(world, kind="followup")
    assert (row.state, row.note) == ("cancelled", "address is suppressed")
    assert len(sink.messages) == 1


def test_a_copy_of_every_send_lands_in_the_sent_folder(imap_settings, dovecot, world, sink):
    if "Sent" not in dovecot.folders():
        dovecot.create_folder("Sent")
    before = len(dovecot.messages("Sent"))
    world.config["IMAP_SENT_FOLDER"] = "Sent"
    ask(world, "bob@prospect.example")
    run_worker(world)
    sent = dovecot.messages("Sent")
    assert len(sent) == before + 1
    assert parse(sent[-1])["Message-ID"] == parse(sink.wait_for(1)[0].data)["Message-ID"]


def test_a_failed_sent_copy_is_logged_and_the_send_still_counts(imap_settings, world, sink, caplog):
    world.config["IMAP_SENT_FOLDER"] = "No Such Folder"
    ask(world, "bob@prospect.example")
    with caplog.at_level(logging.ERROR, logger="workers.imap"):
        run_worker(world)
    assert rows(world, kind="magnet")[0].state == "sent"
    assert "could not copy a sent message to No Such Folder" in caplog.text


def test_queuing_the_same_row_twice_is_harmless(world, sink):
    from service.queue import queue_send

    ask(world, "bob@prospect.example")
    with world.app_context():
        run_worker(world)
        [row] = rows(world, kind="followup")
        assert queue_send(row) and queue_send(row)
        from service import queue

        assert queue.health()["scheduled"] == 1


def test_a_row_left_mid_send_becomes_unknown_and_is_never_resent(world, sink):
    from workers.jobs import reconcile, send

    ask(world, "bob@prospect.example")
    with world.app_context():
        run_worker(world)
        [row] = rows(world, kind="followup")
        db.session.execute(update(Outbound).where(Outbound.id == row.id).values(
            state="sending", claimed_at=datetime.now(UTC) - timedelta(hours=1)))
        db.session.commit()
        reconcile()
        assert send(row.id) == "already unknown"
    [row] = rows(world, kind="followup")
    assert row.state == "unknown" and "may or may not" in row.note
    assert len(sink.messages) == 1


def test_the_magnet_can_be_told_to_wait_for_the_window_too(world, sink):
    world.config["MAGNET_IN_WINDOW"] = True
    with world.app_context():
        db.session.execute(update(Campaign).values(window="sun 03:00-03:01", timezone="Pacific/Kiritimati"))
        db.session.commit()
    ask(world, "bob@prospect.example")
    run_worker(world)
    [row] = rows(world, kind="magnet")
    assert row.state == "pending" and "sending window" in row.note
    assert sink.messages == []


def test_no_answer_after_data_is_unknown_not_a_second_copy(world, sink):
    world.config.update(SMTP_TIMEOUT=1, SEND_RETRY_BASE_SECONDS=0.1)
    sink.data_delay = 3  # takes the message, then keeps silent past our timeout
    ask(world, "bob@prospect.example")
    run_worker(world)
    time.sleep(3)
    run_worker(world)
    assert len(sink.messages) == 1
    [row] = rows(world, kind="magnet")
    assert row.state == "unknown" and "no final answer after DATA" in row.note
    assert scalar(world, "SELECT count(*) FROM event WHERE kind = 'send_unknown'") == 1


def test_an_unknown_user_without_an_enhanced_code_still_suppresses_and_stops(world, sink):
    sink.reject_rcpt("bob@prospect.example", "550 No such user here")
    ask(world, "bob@prospect.example")
    run_worker(world)
    with world.app_context():
        assert contacts.is_suppressed(db.session, "bob@prospect.example")
    assert scalar(world, "SELECT state FROM enrollment") == "bounced"


def test_a_sender_side_5_1_7_does_not_suppress_the_recipient(world, sink):
    sink.reject_rcpt("bob@prospect.example", "550 5.1.7 Invalid sender address")
    ask(world, "bob@prospect.example")
    run_worker(world)
    assert rows(world, kind="magnet")[0].state == "failed"
    with world.app_context():
        assert not contacts.is_suppressed(db.session, "bob@prospect.example")


def test_a_paused_campaign_holds_its_sends_until_it_is_active_again(world, sink):
    ask(world, "bob@prospect.example")
    run_worker(world)
    sink.wait_for(1)
    with world.app_context():
        db.session.execute(update(Campaign).values(active=False))
        db.session.commit()
    time.sleep(2.2)
    run_worker(world)
    [row] = rows(world, kind="followup")
    assert row.state == "pending" and "campaign paused" in row.note
    assert len(sink.messages) == 1
    with world.app_context():
        db.session.execute(update(Campaign).values(active=True))
        db.session.execute(update(Outbound).where(Outbound.kind == "followup").values(due_at=datetime.now(UTC)))
        db.session.commit()
    run_worker(world)
    assert len(sink.wait_for(2)) == 2


def test_resuming_a_paused_enrollment_plans_the_next_step_again_without_a_copy(world, sink):
    from service import enrollments
    from service.models import Enrollment

    ask(world, "bob@prospect.example")
    run_worker(world)
    sink.wait_for(1)
    with world.app_context():
        enrollment = db.session.scalar(select(Enrollment))
        enrollments.move(db.session, enrollment, enrollments.PAUSED, "on holiday")
        db.session.commit()
        assert rows(world, kind="followup")[0].state == "cancelled"
        enrollments.move(db.session, enrollment, enrollments.ACTIVE, "back")
        row = enrollments.resume(db.session, enrollment, "acumen.example")
        db.session.commit()
        assert row.state == "pending"
    time.sleep(2.2)
    run_worker(world)
    assert len(sink.wait_for(2)) == 2
    assert len(rows(world, kind="followup", step_position=1)) == 1


def test_a_follow_up_days_late_after_an_outage_is_skipped_and_shown(world, sink):
    ask(world, "bob@prospect.example")
    run_worker(world)
    sink.wait_for(1)
    with world.app_context():
        db.session.execute(update(Outbound).where(Outbound.kind == "followup")
                           .values(due_at=datetime.now(UTC) - timedelta(days=3)))
        db.session.commit()
    run_worker(world)
    skipped, following = rows(world, kind="followup")
    assert skipped.state == "failed" and skipped.note.startswith("skipped: 72 h late")
    assert len(sink.messages) == 1
    assert scalar(world, "SELECT count(*) FROM event WHERE kind = 'send_skipped'") == 1
    # the sequence goes on from now: the next step is an hour away, threaded under the last real send
    assert following.state == "pending" and following.step_position == 2
    hour_from_now = datetime.now(UTC) + timedelta(hours=1)  # the world's campaign has no window
    assert abs(following.due_at - hour_from_now) < timedelta(minutes=1)
    assert following.in_reply_to == rows(world, kind="magnet")[0].message_id


def test_too_many_hard_bounces_pause_all_sending(world, sink):
    from service.models import Contact, Event

    with world.app_context():
        someone = Contact(email="x@y.example", name="")
        db.session.add(someone)
        db.session.flush()
        now = datetime.now(UTC)
        for n in range(20):
            db.session.add(Outbound(key=f"old:{n}", kind="magnet", contact_id=someone.id, to_address=f"p{n}@y.example",
                                    message_id=f"old{n}@acumen.example", state="sent", sent_at=now))
        db.session.add_all([Event(contact_id=someone.id, kind="bounce_hard") for _ in range(2)])
        db.session.commit()
    ask(world, "bob@prospect.example")
    run_worker(world)
    [row] = rows(world, kind="magnet", to_address="bob@prospect.example")
    assert row.state == "pending" and row.note == "sending paused: 2 hard bounces for 20 sends in 24 h"
    assert sink.messages == []
    world.config["BREAKER_BOUNCE_PERCENT"] = 20  # the consultant raises the bar: it goes
    with world.app_context():
        db.session.execute(update(Outbound).where(Outbound.id == row.id).values(due_at=datetime.now(UTC)))
        db.session.commit()
    run_worker(world)
    assert len(sink.wait_for(1)) == 1


def test_a_follow_up_whose_step_was_removed_is_skipped_not_sent_with_other_text(world, sink):
    from service.models import Step

    ask(world, "bob@prospect.example")
    run_worker(world)
    sink.wait_for(1)
    with world.app_context():
        db.session.execute(db.delete(Step))
        db.session.commit()
    time.sleep(2.2)
    run_worker(world)
    [row] = rows(world, kind="followup")
    assert row.state == "failed" and "no longer exists" in row.note
    assert len(sink.messages) == 1
    assert scalar(world, "SELECT state FROM enrollment") == "completed"


def test_a_display_name_with_markup_is_escaped_in_the_html_part(world, sink):
    with world.app_context():  # an admin's HTML that forgot |e
        db.session.execute(update(Campaign).values(magnet_html="<p>Hi {{ contact.first_name }}</p>"))
        db.session.commit()
        # Intake drops such a display name from mail; a CSV import or an old row can still carry one.
        contacts.upsert(db.session, "bob@prospect.example", "<b>Bob</b> <img src=x>")
        db.session.commit()
    ask(world, "bob@prospect.example")
    run_worker(world)
    html = parse(sink.wait_for(1)[0].data).get_body(("html",)).get_content()
    assert "<b>Bob</b>" not in html and "&lt;b&gt;Bob" in html

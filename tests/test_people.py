"""People, not addresses: one person by every address they use; the consultant taking over; corrections that undo.

Mail goes through the real intake (tests.test_admin_support.receive) and the real send job, to the SMTP sink.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from service import contacts, intake
from service.extensions import db
from service.models import Contact, ContactAddress, Enrollment, Event, InboundMessage, Outbound, utcnow
from tests.test_admin_support import inbound, receive, review_card, signed_in, token
from tests.world import mail, scalar

LEO = "Leo Prospect <leo@prospect.example>"


def _send_due(app) -> list[int]:
    """Run the real send job for every pending row that is due now; returns the ids sent."""
    from workers import jobs

    with app.app_context():
        due = db.session.scalars(select(Outbound.id).where(Outbound.state == "pending",
                                                           Outbound.due_at <= utcnow())).all()
        db.session.commit()
    sent = []
    for row_id in due:
        with app.app_context():
            if jobs.send(row_id).startswith("sent"):
                sent.append(row_id)
    return sent


def _magnet_id(app) -> str:
    with app.app_context():
        return db.session.scalar(select(Outbound.message_id).where(Outbound.kind == "magnet"))


def _asked(app, sender: str = LEO, **headers) -> int:
    """The prospect asks and gets the magnet; returns the request's inbound id."""
    message_id = receive(app, mail(sender=sender, **headers))
    assert _send_due(app), "the magnet did not go"
    return message_id


def _state(app) -> str:
    return scalar(app, "SELECT state FROM enrollment")


def _events(app, kind: str) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(Event.detail).where(Event.kind == kind).order_by(Event.id)))


def _reply(app, sender: str, body: str = "Thanks Ken, that helps. Can we talk on Tuesday?", **headers) -> int:
    return receive(app, mail(subject="Re: Roadmap please", body=body, sender=sender, to="ken@acumen.example",
                             **headers))


# --------------------------------------------------------------------------- every address of a person


def test_a_reply_from_a_plus_tag_address_stops_the_sequence_and_names_the_address(world):
    _asked(world)
    reply = _reply(world, "Leo <leo+work@prospect.example>")
    assert inbound(world, reply).kind == "human"
    assert _state(world) == "replied"
    assert _events(world, "replied")[-1].endswith("(from leo+work@prospect.example)")
    assert scalar(world, "SELECT count(*) FROM contact") == 1


def test_asking_again_from_a_plus_tag_address_is_the_same_person_and_gets_no_second_magnet(world):
    _asked(world)
    again = receive(world, mail(sender="Leo <leo+work@prospect.example>"))
    message = inbound(world, again)
    assert message.kind == "request" and message.state == "review"
    assert any(r.startswith("asked again") for r in message.reasons)
    assert scalar(world, "SELECT count(*) FROM outbound WHERE kind = 'magnet'") == 1
    assert scalar(world, "SELECT count(*) FROM contact") == 1
    assert _events(world, "replied") == []  # a repeat request is a request, never a reply


def test_the_magnet_goes_to_the_reply_to_and_a_later_mail_from_the_from_address_stops_the_nudges(world):
    _asked(world, sender="Leo <leo@home.example>", Reply_To="leo@work.example")
    assert scalar(world, "SELECT to_address FROM outbound WHERE kind = 'magnet'") == "leo@work.example"
    with world.app_context():
        known = {a.address: a.how for a in db.session.scalars(select(ContactAddress))}
    assert known == {"leo@home.example": "from"}
    _reply(world, "Leo <leo@home.example>")
    assert _state(world) == "replied"
    assert scalar(world, "SELECT count(*) FROM outbound WHERE state = 'pending'") == 0


def test_a_colleague_answering_inside_our_thread_is_learnt_as_the_persons_address(world):
    _asked(world)
    _reply(world, "Assistant <office@prospect.example>", In_Reply_To=f"<{_magnet_id(world)}>")
    assert _state(world) == "replied"
    with world.app_context():
        learnt = db.session.scalar(select(ContactAddress).where(ContactAddress.address == "office@prospect.example"))
        assert learnt.how == "replied in thread" and learnt.contact.email == "leo@prospect.example"
        assert contacts.find(db.session, "OFFICE@prospect.example").email == "leo@prospect.example"


def test_could_you_send_it_again_in_our_thread_is_a_repeat_request_not_a_reply(world):
    _asked(world)
    again = _reply(world, LEO, body="Could you send it again? I lost it.", In_Reply_To=f"<{_magnet_id(world)}>")
    message = inbound(world, again)
    assert (message.kind, message.state, message.campaign_slug) == ("request", "review", "execution-roadmap")
    assert any("asked again" in r for r in message.reasons)
    assert _state(world) == "active" and _events(world, "replied") == []
    assert scalar(world, "SELECT hot FROM contact") in (False, 0)


# --------------------------------------------------------------------------- the consultant takes over


def _sent_by_ken(app, to: str, raw: bytes | None = None, backlog: bool = False) -> InboundMessage:
    raw = raw or mail(subject="Re: Roadmap please", body="Leo, happy to walk you through it. Ken",
                      sender="Ken Thoreson <ken@acumen.example>", to=to)
    with app.app_context():
        message = intake.store(db.session, "imap://ken@x/Sent", 1, None, raw, utcnow(), backlog=backlog,
                               source_key=uuid.uuid4().hex, role="sent")
        db.session.commit()
        intake.process(db.session, message, app.config)
        db.session.commit()
        message_id = message.id
    return inbound(app, message_id)


def test_the_consultant_answering_personally_stops_the_sequence_and_handles_the_lead(world):
    _asked(world)
    _reply(world, LEO)  # a hot lead
    with world.app_context():
        db.session.execute(db.update(Enrollment).values(state="active"))
        db.session.commit()
    message = _sent_by_ken(world, "Leo <leo@prospect.example>")
    assert message.kind == "sent" and message.contact_id is not None
    assert any("the consultant wrote to leo@prospect.example personally" in r for r in message.reasons)
    assert _state(world) == "stopped"
    assert scalar(world, "SELECT stopped_reason FROM enrollment") == "the consultant answered personally"
    assert scalar(world, "SELECT hot FROM contact") in (False, 0)
    assert scalar(world, "SELECT count(*) FROM outbound WHERE state = 'pending'") == 0


def test_our_own_copies_and_old_history_in_sent_change_nothing(world):
    _asked(world)
    with world.app_context():
        ours = db.session.scalar(select(Outbound).where(Outbound.kind == "magnet"))
        raw = ours.raw
    copy = _sent_by_ken(world, "", raw=raw)
    assert "our own copy" in " ".join(copy.reasons)
    history = _sent_by_ken(world, "leo@prospect.example", backlog=True)
    assert history.state == "backlog"
    assert _state(world) == "active"
    assert scalar(world, "SELECT count(*) FROM outbound WHERE state = 'pending'") == 1


# --------------------------------------------------------------------------- corrections undo


def _correct(app, message_id: int, kind: str, **kwargs) -> list[int]:
    with app.app_context():
        message = db.session.get(InboundMessage, message_id)
        if "email" in kwargs:
            kwargs["contact"] = contacts.find(db.session, kwargs.pop("email"))
        rows = intake.correct(db.session, message, kind, app.config, who="alice@acumen.example", **kwargs)
        db.session.commit()
        return [r.id for r in rows]


def test_auto_reply_after_reply_makes_the_sequence_active_again_and_replans_its_step(world):
    _asked(world)
    reply = _reply(world, LEO)
    assert _state(world) == "replied"
    _correct(world, reply, "auto_reply")
    assert _state(world) == "active"
    assert scalar(world, "SELECT hot FROM contact") in (False, 0)
    assert scalar(world, "SELECT count(*) FROM outbound WHERE kind = 'followup' AND state = 'pending'") == 1
    assert inbound(world, reply).kind == "auto_reply"
    assert _events(world, "correction")[-1] == "human → auto_reply by alice@acumen.example; undone: replied"


def test_a_maybe_request_corrected_to_a_request_sends_the_magnet(world):
    message_id = receive(world, mail(to="ken@acumen.example", subject="Question",
                                     body="Hi Ken, is the roadmap something you share?"))
    assert inbound(world, message_id).kind == "human"
    rows = _correct(world, message_id, "request", campaign_slug="execution-roadmap")
    assert len(rows) == 1 and _send_due(world) == rows
    assert inbound(world, message_id).kind == "request"


def test_just_a_person_after_a_request_cancels_the_waiting_magnet_and_does_nothing_more(world):
    message_id = receive(world, mail())
    _correct(world, message_id, "human")
    assert scalar(world, "SELECT state FROM outbound WHERE kind = 'magnet'") == "cancelled"
    assert _state(world) == "stopped"
    assert _events(world, "replied") == []


def test_an_asked_again_message_corrected_to_a_request_sends_the_magnet_again(world):
    _asked(world)
    again = receive(world, mail(sender=LEO))
    assert inbound(world, again).state == "review"
    rows = _correct(world, again, "request", campaign_slug="execution-roadmap")
    assert len(rows) == 1 and _send_due(world) == rows
    assert scalar(world, "SELECT count(*) FROM outbound WHERE kind = 'magnet' AND state = 'sent'") == 2


def test_this_is_an_unsubscribe_suppresses_and_stops(world):
    _asked(world)
    reply = _reply(world, LEO, body="Please take me off this.")
    _correct(world, reply, "unsubscribe")
    with world.app_context():
        assert contacts.is_suppressed(db.session, "leo@prospect.example")
    assert _state(world) == "unsubscribed"


@pytest.mark.parametrize(("kind", "suppressed"), [("bounce_hard", True), ("bounce_soft", False)])
def test_this_is_a_bounce_hard_or_soft(world, kind, suppressed):
    _asked(world)
    message_id = receive(world, mail(sender="Postmaster <postmaster@prospect.example>", subject="Delivery problem",
                                     to="ken@acumen.example", body="Your message could not be delivered."))
    _correct(world, message_id, kind, email="leo@prospect.example")
    with world.app_context():
        assert contacts.is_suppressed(db.session, "leo@prospect.example") is suppressed
    assert _state(world) == "bounced"
    assert inbound(world, message_id).kind == "bounce"


def test_not_a_bounce_lifts_the_suppression_the_classifier_made(world):
    from tests.world import dsn

    _asked(world)
    bounce = receive(world, dsn([("leo@prospect.example", "5.1.1", "failed")], _magnet_id(world)))
    with world.app_context():
        assert contacts.is_suppressed(db.session, "leo@prospect.example")
    assert _state(world) == "bounced"
    _correct(world, bounce, "not_bounce")
    with world.app_context():
        assert not contacts.is_suppressed(db.session, "leo@prospect.example")
    assert _state(world) == "active"
    assert scalar(world, "SELECT count(*) FROM outbound WHERE kind = 'followup' AND state = 'pending'") == 1


def test_a_second_correction_replaces_the_first(world):
    _asked(world)
    reply = _reply(world, LEO)
    _correct(world, reply, "auto_reply")
    _correct(world, reply, "human", email="leo@prospect.example")
    assert _state(world) == "replied"
    _correct(world, reply, "bulk")
    assert _state(world) == "active"
    with world.app_context():
        assert db.session.scalar(select(Contact.hot)) is False
    assert len(_events(world, "correction")) == 3


def test_erasing_a_person_erases_every_address_they_used(world):
    _asked(world, sender="Leo <leo@home.example>", Reply_To="leo@work.example")
    with world.app_context():
        leo = contacts.find(db.session, "leo@home.example")
        contacts.erase(db.session, leo)
        db.session.commit()
        assert db.session.scalar(select(ContactAddress.id)) is None
        assert contacts.is_suppressed(db.session, "leo@home.example")
        assert contacts.is_suppressed(db.session, "leo@work.example")
    again = receive(world, mail(sender="Leo <leo@home.example>"))
    message = inbound(world, again)
    assert message.state == "review" and message.contact_id is None
    assert message.reasons[-1].startswith(f"asked again after an erase (on {utcnow():%Y-%m-%d}): nothing was sent "
                                          "and no contact was made. You may send the magnet")
    assert scalar(world, "SELECT count(*) FROM contact") == 0
    assert scalar(world, "SELECT count(*) FROM outbound") == 0
    rows = _correct(world, again, "request", campaign_slug="execution-roadmap")  # the consultant: send it
    assert len(rows) == 1 and _send_due(world) == rows
    assert scalar(world, "SELECT email FROM contact") == "leo@home.example"


# --------------------------------------------------------------------------- asking again after an unsubscribe


def test_an_unsubscribed_person_asking_again_waits_in_review_saying_what_the_consultant_may_do(world):
    _asked(world)
    with world.app_context():
        intake.unsubscribe(db.session, "leo@prospect.example", "one-click link")
        db.session.commit()
    again = receive(world, mail(sender=LEO))
    message = inbound(world, again)
    assert (message.kind, message.state) == ("request", "review")
    assert message.reasons[-1] == (
        f"asked again after an unsubscribe (on {utcnow():%Y-%m-%d}: one-click link): nothing was sent. You may send "
        "the magnet (“This is a request”, which resubscribes the address; their stopped sequences stay stopped), "
        "or leave it (“Nothing to do”).")
    assert _events(world, "request_ignored") == ["asked again after an unsubscribe: waits in Review"]
    assert scalar(world, "SELECT count(*) FROM outbound WHERE kind = 'magnet'") == 1
    page = signed_in(world).get("/admin/review").get_data(as_text=True)
    card = review_card(page, again)
    assert "asked again after an unsubscribe" in card and "This is a request" in card and "Nothing to do" in card
    assert "A magnet already went to them" not in card  # not the repeat limit: the unsubscribe


def test_this_is_a_request_after_an_unsubscribe_resubscribes_and_sends_the_magnet_once(world):
    _asked(world)
    with world.app_context():
        intake.unsubscribe(db.session, "leo@prospect.example", "one-click link")
        db.session.commit()
    again = receive(world, mail(sender=LEO))
    rows = _correct(world, again, "request", campaign_slug="execution-roadmap")
    assert len(rows) == 1 and _send_due(world) == rows
    with world.app_context():
        assert not contacts.is_suppressed(db.session, "leo@prospect.example")
    assert _state(world) == "unsubscribed"  # the old sequence stays stopped: the magnet only
    assert _events(world, "resubscribed") == [f"was unsubscribed: an admin answered their request (inbound #{again})"]
    assert scalar(world, "SELECT count(*) FROM outbound WHERE kind = 'followup' AND state = 'pending'") == 0


def test_leaving_it_keeps_the_address_suppressed(world):
    with world.app_context():
        gone = contacts.upsert(db.session, "leo@prospect.example", "Leo")
        contacts.erase(db.session, gone)
        db.session.commit()
    again = receive(world, mail(sender=LEO))
    client = signed_in(world)
    client.post(f"/admin/inbound/{again}/dismiss", data={"csrf_token": token(client)})
    assert inbound(world, again).state == "processed"
    with world.app_context():
        assert contacts.is_suppressed(db.session, "leo@prospect.example")
    assert scalar(world, "SELECT count(*) FROM contact") == 0


def test_asking_first_from_a_plus_tag_then_from_the_plain_address_is_one_person(world):
    _asked(world, sender="Leo <leo+work@prospect.example>")
    again = receive(world, mail(sender=LEO))
    assert inbound(world, again).state == "review"
    assert scalar(world, "SELECT count(*) FROM contact") == 1
    assert scalar(world, "SELECT count(*) FROM outbound WHERE kind = 'magnet'") == 1


def test_not_a_bounce_after_a_reply_leaves_the_sequence_stopped_by_the_reply(world):
    from tests.world import dsn

    _asked(world)
    _reply(world, LEO)
    bounce = receive(world, dsn([("leo@prospect.example", "5.1.1", "failed")], _magnet_id(world)))
    assert _state(world) == "bounced"
    _correct(world, bounce, "not_bounce")
    assert _state(world) == "replied"
    assert scalar(world, "SELECT count(*) FROM outbound WHERE state = 'pending'") == 0


def test_correcting_an_emailed_unsubscribe_keeps_an_earlier_unsubscribe_by_link(world):
    _asked(world)
    with world.app_context():
        intake.unsubscribe(db.session, "leo@prospect.example", "one-click link")
        db.session.commit()
    emailed = _reply(world, LEO, body="unsubscribe")
    _correct(world, emailed, "bulk")
    with world.app_context():
        assert contacts.is_suppressed(db.session, "leo@prospect.example")
    assert _state(world) == "unsubscribed"


def test_request_then_just_a_person_then_a_request_again_sends_the_magnet(world):
    message_id = receive(world, mail())
    _correct(world, message_id, "human")
    rows = _correct(world, message_id, "request", campaign_slug="execution-roadmap")
    assert len(rows) == 1 and _send_due(world) == rows
    assert _state(world) == "active"

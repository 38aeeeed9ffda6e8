"""The consultant's real inbox, end to end: Dovecot → poller → worker → SMTP sink.

The poller reads ken@acumen.example's own INBOX (clients, vendors, invitations) and his Sent folder.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from service import campaigns, intake
from service.extensions import db
from service.models import InboundMessage
from service.queue import queue_send
from tests.conftest import DEFAULT_YAML
from tests.world import mail, parse, run_poller, run_worker, scalar

KEN = "Ken Thoreson <ken@acumen.example>"
PLAYBOOK = """
campaigns:
  - slug: bars-playbook
    name: BARS Playbook
    triggers: {addresses: [roadmap+playbook@acumen.example], keywords: [playbook]}
    magnet: {subject: "Your BARS Playbook", text: "Hi {{ contact.first_name or 'there' }}, here it is."}
"""


@pytest.fixture
def inbox(imap_settings, dovecot):
    """Ken's mailbox on the test Dovecot, with an empty Sent folder that the poller watches."""
    imap_settings["IMAP_SENT_FOLDER"] = "Sent"
    with dovecot.client() as client:
        if not client.folder_exists("Sent"):
            client.create_folder("Sent")
        client.select_folder("Sent")
        if uids := client.search(["ALL"]):
            client.delete_messages(uids)
            client.expunge()
    return dovecot


def _round(app) -> None:
    run_poller(app)
    run_worker(app)


def _last_inbound(app) -> InboundMessage:
    with app.app_context():
        message = db.session.scalar(select(InboundMessage).where(InboundMessage.folder_role == "inbox")
                                    .order_by(InboundMessage.id.desc()))
        db.session.expunge(message)
        return message


def test_a_clients_roadmap_meeting_gets_nothing_and_shows_as_a_persons_mail(inbox, sink, world):
    inbox.append(mail(sender="Carla CFO <carla@client.example>", to=KEN, subject="Q3 roadmap review",
                      body="Hi Ken,\n\nCan we move the Q3 roadmap review to Thursday?\n\nCarla"))
    _round(world)
    time.sleep(1)
    assert sink.messages == []
    message = _last_inbound(world)
    assert message.kind == "human"
    assert any("mentions 'roadmap' but does not ask for it" in r for r in message.reasons), message.reasons
    assert scalar(world, "SELECT count(*) FROM outbound") == 0


def test_a_plus_tag_trigger_address_picks_its_own_campaign(inbox, sink, world):
    with world.app_context():
        campaigns.import_yaml(db.session, PLAYBOOK, DEFAULT_YAML.parent)
        db.session.commit()
    inbox.append(mail(to="roadmap+playbook@acumen.example", subject="Playbook"))
    _round(world)
    sent = parse(sink.wait_for(1)[0].data)
    assert sent["Subject"] == "Re: Playbook" and "here it is" in sent.get_body(("plain",)).get_content()
    assert _last_inbound(world).campaign_slug == "bars-playbook"


def test_the_consultants_reply_in_sent_stops_the_nudges_and_our_own_copies_change_nothing(inbox, sink, world):
    inbox.append(mail())
    _round(world)
    sink.wait_for(1)
    _round(world)  # our own copy of the magnet, appended to Sent, is read: it changes nothing
    assert scalar(world, "SELECT state FROM enrollment") == "active"
    assert scalar(world, "SELECT count(*) FROM inbound_message WHERE folder_role = 'sent'") == 1
    inbox.append(mail(subject="Re: Roadmap please", sender=KEN, to="Bob Prospect <bob@prospect.example>",
                      body="Bob, glad you asked. Shall we talk on Friday? Ken"), folder="Sent")
    _round(world)
    assert scalar(world, "SELECT state FROM enrollment") == "stopped"
    assert scalar(world, "SELECT stopped_reason FROM enrollment") == "the consultant answered personally"
    time.sleep(2.5)  # the first follow-up was due 2 s after the magnet
    run_worker(world)
    assert len(sink.messages) == 1


def test_a_plus_tag_reply_stops_the_nudges_and_gets_no_new_magnet(inbox, sink, world):
    inbox.append(mail())
    _round(world)
    sink.wait_for(1)
    inbox.append(mail(subject="Re: Roadmap please", sender="Bob <bob+work@prospect.example>",
                      body="Thanks Ken, I got the roadmap. Could we talk next week?"))
    _round(world)
    assert scalar(world, "SELECT state FROM enrollment") == "replied"
    time.sleep(2.5)
    run_worker(world)
    assert len(sink.messages) == 1
    assert scalar(world, "SELECT count(*) FROM outbound WHERE kind = 'magnet'") == 1


def test_a_correction_undoes_the_reply_and_the_nudges_resume(inbox, sink, world):
    inbox.append(mail())
    _round(world)
    sink.wait_for(1)
    inbox.append(mail(subject="Re: Roadmap please", sender="Bob <bob@prospect.example>", to=KEN,
                      body="I am away from the office this week and will read your message later."))
    _round(world)
    reply = _last_inbound(world)
    assert scalar(world, "SELECT state FROM enrollment") == "replied"
    with world.app_context():
        rows = intake.correct(db.session, db.session.get(InboundMessage, reply.id), "auto_reply", world.config,
                              who="alice@acumen.example")
        db.session.commit()
        assert [(r.kind, r.step_position) for r in rows] == [("followup", 1)]  # revived, for the caller to queue
        for row in rows:
            queue_send(row)
    assert scalar(world, "SELECT state FROM enrollment") == "active"
    time.sleep(2.5)
    run_worker(world)
    followup = parse(sink.wait_for(2)[1].data)
    assert followup["Auto-Submitted"] == "auto-generated"

"""The daily digest: at the admin's hour on their clock, once a day through the ledger, only with something to say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from service import digest
from service.extensions import db
from service.models import Contact, Event, Outbound, User
from service.queue import queue_send
from tests.test_admin_support import post, signed_in, text
from tests.test_consequences import _deliver, _requested
from tests.world import mail, run_worker

NOON_CHICAGO = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)


def _wants_digest(app, hour: int = 8, zone: str = "America/Chicago") -> None:
    with app.app_context():
        alice = db.session.scalar(select(User))
        alice.digest_hour, alice.timezone = hour, zone
        db.session.commit()


def _hot_lead(app, words: str = "Yes, let's talk on Thursday about the Q3 plan") -> None:
    with app.app_context():
        person = Contact(email="dana@realco.example", name="Dana Reyes", hot=True, last_activity_at=NOON_CHICAGO)
        db.session.add(person)
        db.session.flush()
        db.session.add(Event(contact_id=person.id, kind="replied", created_at=NOON_CHICAGO))
        db.session.commit()


def _plan(app, now: datetime) -> list[tuple[int, str, str]]:
    """(id, key, to) of the digest rows planned at `now`."""
    with app.app_context():
        planned = [(r.id, r.key, r.to_address) for r in digest.plan_due(db.session, app.config, now)]
        db.session.commit()
        return planned


def test_a_day_with_nothing_to_say_sends_nothing(world):
    _wants_digest(world)
    assert _plan(world, NOON_CHICAGO) == []


def test_the_digest_waits_for_the_admins_hour_on_their_clock_and_goes_once_a_day(world):
    _wants_digest(world, hour=13)
    _hot_lead(world)
    assert _plan(world, NOON_CHICAGO) == []  # 12:00 in Chicago, before 13:00
    [(_, key, to)] = _plan(world, NOON_CHICAGO + timedelta(hours=1))
    assert key.endswith(":2026-12-02") and to == "alice@acumen.example"
    assert _plan(world, NOON_CHICAGO + timedelta(hours=2)) == []  # one a day
    assert _plan(world, NOON_CHICAGO + timedelta(hours=9)) == []  # 03:00 UTC the next day, still Dec 2 there


def test_the_subject_counts_in_words():
    found = digest.Digest(day="Wed 2 Dec", requests=2, problems=1, review=3)
    assert found.subject() == "Follow-Through, Wed 2 Dec: 2 requests, 1 send to check, 3 in Review"
    assert digest.Digest(day="Wed 2 Dec", problems=2).subject() == "Follow-Through, Wed 2 Dec: 2 sends to check"


def test_an_admin_who_did_not_ask_gets_none(world):
    _hot_lead(world)
    assert _plan(world, NOON_CHICAGO) == []


def test_the_digest_says_who_wrote_back_in_their_words_and_links_into_the_admin(imap_settings, dovecot, sink, world):
    _requested(world, dovecot, sink)
    _deliver(world, dovecot, mail(subject="Re: Your Execution Success Roadmap",
                                  body="Yes, let's talk on Thursday about the Q3 plan.\n\nBob"))
    sink.clear()
    _wants_digest(world, hour=0)
    [(row_id, _, _)] = _plan(world, datetime.now(UTC))
    with world.app_context():
        queue_send(db.session.get(Outbound, row_id))
    run_worker(world)
    [sent] = sink.wait_for(1)
    assert sent.rcpt_tos == ["alice@acumen.example"]
    raw = sent.data
    assert b"\r\nAuto-Submitted: auto-generated\r\n" in raw
    assert b"Subject: Follow-Through, " in raw and b"1 hot lead" in raw
    assert b"Yes, let's talk on Thursday about the Q3 plan." in raw.replace(b"=\r\n", b"")
    assert b"https://desk.acumen.example/admin/contacts/" in raw.replace(b"=\r\n", b"")
    with world.app_context():
        assert db.session.get(Outbound, row_id).state == "sent"


def test_the_clock_page_sets_the_timezone_and_the_digest_hour(world):
    client = signed_in(world)
    page = client.get("/admin/settings/clock")
    assert page.status_code == 200 and "Until you pick one you see" in text(page)
    saved = post(client, "/admin/settings/clock", {"timezone": "Europe/Berlin", "digest": "y", "digest_hour": "7"})
    assert saved.status_code == 302
    with world.app_context():
        alice = db.session.scalar(select(User))
        assert (alice.timezone, alice.digest_hour) == ("Europe/Berlin", 7)
    assert '<option selected value="Europe/Berlin">' in text(client.get("/admin/settings/clock"))
    refused = post(client, "/admin/settings/clock", {"timezone": "Mars/Olympus", "digest_hour": "7"})
    assert refused.status_code == 400

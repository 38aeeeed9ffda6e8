"""The magnet as a link: `GET /d/<token>` serves the file, counts a person's first download once,
and an expired link offers a fresh one by mail, at most once a day per person."""

from __future__ import annotations

import re
import time

from sqlalchemy import func, select

from service import campaigns, contacts, signing, stats
from service.extensions import db
from service.models import Event, Outbound
from tests.conftest import PDF
from tests.test_admin_support import receive, send_job
from tests.world import mail, parse, run_worker


def _magnet(app) -> Outbound:
    """Bob asks; the magnet row intake planned for him (not yet sent)."""
    receive(app, mail())
    with app.app_context():
        row = db.session.scalar(select(Outbound).where(Outbound.kind == "magnet"))
        db.session.expunge(row)
        return row


def _asset_id(app) -> int:
    with app.app_context():
        return campaigns.by_slug(db.session, "execution-roadmap").assets[0].id


def _link(app, row_id: int, asset_id: int | None = None, days_ago: float = 0) -> str:
    """The path of a download link, signed `days_ago` days back (itsdangerous stamps it with time.time())."""
    asset_id = asset_id or _asset_id(app)
    real = time.time
    time.time = lambda: real() - days_ago * 86400
    try:
        return f"/d/{signing.download_token(app.config['SECRET_KEY'], row_id, asset_id)}"
    finally:
        time.time = real


def _events(app, kind: str) -> list[Event]:
    with app.app_context():
        return list(db.session.scalars(select(Event).where(Event.kind == kind)))


def _rows(app, prefix: str) -> list[Outbound]:
    with app.app_context():
        return list(db.session.scalars(select(Outbound).where(Outbound.key.like(f"{prefix}%"))))


def test_a_link_serves_the_file_named_after_the_magnet_and_private(world):
    row = _magnet(world)
    response = world.test_client().get(_link(world, row.id))
    assert response.status_code == 200 and response.data == PDF
    assert response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"] == "attachment; filename=Execution-Success-Roadmap.pdf"
    assert response.headers["Cache-Control"] == "private, no-store"
    assert response.headers["X-Robots-Tag"] == "noindex"
    assert "Location" not in response.headers


def test_a_download_is_counted_once_per_person_whatever_a_scanner_or_a_second_click_does(world):
    row = _magnet(world)
    client, link = world.test_client(), _link(world, row.id)
    assert client.head(link).status_code == 200  # a mail scanner looking first
    assert _events(world, "downloaded") == []
    assert client.get(link).status_code == 200
    assert client.get(link).status_code == 200
    assert client.head(link).status_code == 200
    [event] = _events(world, "downloaded")
    assert (event.contact_id, event.outbound_id) == (row.contact_id, row.id)
    assert event.detail == "Execution Success Roadmap: Execution-Success-Roadmap.pdf"
    with world.app_context():
        assert dict(stats.activity(db.session).funnel())["Downloaded"] == [1, 1, 1]


def test_the_name_the_admin_gave_the_file_is_the_downloads_name(world):
    row = _magnet(world)
    with world.app_context():
        campaigns.by_slug(db.session, "execution-roadmap").assets[0].display_name = "Roadmap 2026.pdf"
        db.session.commit()
    response = world.test_client().get(_link(world, row.id))
    assert response.headers["Content-Disposition"] == 'attachment; filename="Roadmap 2026.pdf"'


def _test_send(world) -> int:
    """A test send of the magnet to the admin: it belongs to nobody."""
    with world.app_context():
        campaign = campaigns.by_slug(db.session, "execution-roadmap")
        row = campaigns.plan_test(db.session, campaign, "alice@acumen.example", None, "acumen.example")
        db.session.commit()
        return row.id


def test_a_test_send_downloads_but_is_nobodys_download(world):
    row_id = _test_send(world)
    response = world.test_client().get(_link(world, row_id))
    assert response.status_code == 200 and response.data == PDF
    assert _events(world, "downloaded") == []


def test_a_forged_or_foreign_token_is_a_plain_404(world):
    row = _magnet(world)
    link = _link(world, row.id)
    client = world.test_client()
    other = f"/d/{signing.download_token('another-secret', row.id, _asset_id(world))}"
    for bad in (f"{link[:-3]}xyz", other, "/d/nonsense"):
        response = client.get(bad)
        assert response.status_code == 404 and b"This link is not valid" in response.data, bad
        assert client.post(bad).status_code == 404
    assert _events(world, "downloaded") == [] and _rows(world, "fresh:") == []


def test_a_removed_file_is_gone_410(world):
    row = _magnet(world)
    link = _link(world, row.id)
    with world.app_context():
        campaign = campaigns.by_slug(db.session, "execution-roadmap")
        campaigns.remove_asset(campaign, campaign.assets[0].id)
        db.session.commit()
    response = world.test_client().get(link)
    assert response.status_code == 410 and b"This file is no longer offered" in response.data


def test_a_replaced_file_keeps_its_links_working_with_the_new_version(world):
    row = _magnet(world)
    link = _link(world, row.id)
    with world.app_context():
        campaign = campaigns.by_slug(db.session, "execution-roadmap")
        campaigns.add_asset(db.session, campaign, "roadmap.pdf", b"%PDF v2", 10_000)
        db.session.commit()
    assert world.test_client().get(link).data == b"%PDF v2"


def test_an_erased_persons_link_is_no_longer_valid(world):
    row = _magnet(world)
    link = _link(world, row.id)
    with world.app_context():
        contacts.erase(db.session, contacts.find(db.session, "bob@prospect.example"))
        db.session.commit()
    response = world.test_client().get(link)
    assert response.status_code == 404 and b"This link is no longer valid" in response.data


def test_an_expired_link_offers_one_fresh_link_a_day_and_plans_exactly_one_magnet(world, redis_server):
    row = _magnet(world)
    link = _link(world, row.id, days_ago=31)
    client = world.test_client(use_cookies=False)  # the person has no session
    page = client.get(link)
    assert page.status_code == 200 and b"This link has expired" in page.data
    assert b"Send me a fresh link" in page.data and page.headers["X-Robots-Tag"] == "noindex"
    assert _events(world, "downloaded") == [] and _rows(world, "fresh:") == []  # the GET plans nothing
    # A magnet went minutes ago (inside MAGNET_REPEAT_DAYS): the person's click still gets one.
    sent = client.post(link)
    assert sent.status_code == 200 and b"A fresh link is on its way" in sent.data
    [fresh] = _rows(world, "fresh:")
    assert (fresh.kind, fresh.contact_id, fresh.to_address, fresh.in_reply_to) == (
        "magnet", row.contact_id, row.to_address, row.message_id)
    assert send_job(redis_server.client(), fresh).args == (fresh.id,)
    redis_server.flushall()  # the limit is in the database, not in Redis
    again = client.post(link)
    assert b"A fresh link is already on its way" in again.data
    assert len(_rows(world, "fresh:")) == 1 and len(_events(world, "fresh_link_requested")) == 1


def test_a_fresh_link_is_a_mail_with_a_new_working_link(world, sink):
    with world.app_context():
        campaigns.by_slug(db.session, "execution-roadmap").delivery = campaigns.LINK
        db.session.commit()
    row = _magnet(world)
    world.test_client().post(_link(world, row.id, days_ago=40))
    [fresh] = _rows(world, "fresh:")
    with world.app_context():
        db.session.execute(db.update(Outbound).where(Outbound.id != fresh.id).values(state="cancelled"))
        db.session.commit()
    run_worker(world)
    [message] = sink.wait_for(1, timeout=10)
    html = parse(message.data).get_body(("html",)).get_content()
    path = re.search(r'href="https://desk\.acumen\.example(/d/[^"]+)"', html).group(1)
    assert world.test_client().get(path).data == PDF
    [event] = _events(world, "downloaded")
    assert event.outbound_id == fresh.id


def test_a_suppressed_person_is_told_nothing_can_be_sent(world):
    row = _magnet(world)
    link = _link(world, row.id, days_ago=31)
    with world.app_context():
        contacts.suppress(db.session, "bob@prospect.example", "unsubscribed", "test")
        db.session.commit()
    client = world.test_client()
    page = client.get(link)
    assert b"nothing can be sent" in page.data and b"Send me a fresh link" not in page.data
    refused = client.post(link)
    assert refused.status_code == 200 and b"nothing can be sent" in refused.data
    assert _rows(world, "fresh:") == [] and _events(world, "fresh_link_requested") == []


def test_a_link_that_still_works_asks_for_nothing_fresh(world):
    row = _magnet(world)
    response = world.test_client().post(_link(world, row.id, days_ago=29))
    assert b"This link still works" in response.data
    assert _rows(world, "fresh:") == []


def test_an_expired_test_send_link_offers_no_fresh_mail(world):
    row_id = _test_send(world)
    link = _link(world, row_id, days_ago=31)
    assert b"send yourself a new test" in world.test_client().get(link).data
    world.test_client().post(link)
    with world.app_context():
        assert db.session.scalar(select(func.count(Outbound.id))) == 1

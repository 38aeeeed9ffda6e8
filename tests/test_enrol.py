"""Enrolling people in a campaign by hand: one contact, a search result or an import, at the magnet or at a
chosen follow-up; a count to confirm first, batches that never run long, and a report that says who was
skipped and why. The mail goes through the real worker to the SMTP sink."""

from __future__ import annotations

import html
import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from service import contacts, enrollments, outbound
from service.admin import contacts_views
from service.campaigns import by_slug
from service.extensions import db
from service.models import Contact, Enrollment, Outbound, utcnow
from tests.test_admin_support import post, receive, signed_in, text
from tests.world import mail, parse, run_worker

SLUG = "execution-roadmap"


def _campaign_id(app) -> int:
    with app.app_context():
        return by_slug(db.session, SLUG).id


def _person(app, email: str, name: str = "") -> int:
    with app.app_context():
        contact = contacts.upsert(db.session, email, name)
        db.session.commit()
        return contact.id


def _mailed_days_ago(app, email: str, days: int) -> None:
    """A magnet sent to the person `days` ago, as the ledger keeps it."""
    with app.app_context():
        person = contacts.find(db.session, email)
        row = outbound.plan(db.session, f"earlier:{person.id}", "magnet", email, "acumen.example", "Earlier",
                            contact_id=person.id)
        outbound.mark_sent(row, "250 OK")
        row.created_at = row.sent_at = utcnow() - timedelta(days=days)
        db.session.commit()


def _run(client, started) -> list[str]:
    """Follow a run from its POST through every batch page (each reloads itself to the next) to the report."""
    assert started.status_code == 302, text(started)
    return _follow(client, started.headers["Location"])


def _follow(client, url: str) -> list[str]:
    pages: list[str] = []
    while url and len(pages) < 50:
        pages.append(text(client.get(url)))
        found = re.search(r'http-equiv="refresh" content="0; url=([^"]+)"', pages[-1])
        url = html.unescape(found.group(1)) if found else None
    return pages


def _count(page: str, label: str) -> int:
    return int(re.search(rf"<dt>{re.escape(label)}</dt><dd>([\d,]+)</dd>", page).group(1).replace(",", ""))


def _sent(sink) -> dict[str, object]:
    """What the sink got, by recipient."""
    return {m.rcpt_tos[0]: parse(m.data) for m in sink.messages}


def test_it_enrols_one_contact_at_the_magnet_after_saying_it_will_mail_one(world, sink):
    dana = _person(world, "dana@prospect.example", "Dana Prospect")
    plan = f"{_campaign_id(world)}:0"
    client = signed_in(world)
    confirm = text(client.get(f"/admin/enrol?contact={dana}&plan={plan}"))
    assert "1 person will be mailed" in confirm and "Enrol and mail 1" in confirm
    assert sink.messages == [] and _enrolments(world) == 0  # counting changes nothing
    report = _run(client, post(client, "/admin/enrol", {"contact": dana, "plan": plan, "expected": 1}))[-1]
    assert (_count(report, "Enrolled and mailed"), _count(report, "Skipped")) == (1, 0)
    run_worker(world)
    [magnet] = sink.wait_for(1)
    got = parse(magnet.data)
    assert magnet.rcpt_tos == ["dana@prospect.example"]
    assert got["Subject"] == "Your Execution Success Roadmap" and got["In-Reply-To"] is None
    assert got.get_body(("plain",)).get_content().startswith("Hi Dana")
    with world.app_context():
        rows = db.session.scalars(select(Outbound).order_by(Outbound.id)).all()
        assert [(r.key.split(":")[0], r.kind, r.state) for r in rows] == [
            ("enrol", "magnet", "sent"), ("step", "followup", "pending")]  # the sequence goes on from the magnet
        assert rows[1].in_reply_to == got["Message-ID"].strip("<>")


def test_it_enrols_a_search_at_follow_up_two_skipping_the_suppressed_and_the_recently_mailed(world, sink, monkeypatch):
    monkeypatch.setattr(contacts_views, "ENROL_BATCH", 1)  # one person per request: the keyset walks them all
    monkeypatch.setattr(contacts_views, "TALLY_BATCH", 3)
    for name in ("ann", "ben", "cat", "don"):
        _person(world, f"{name}@acme.example", name.title())
    _person(world, "eve@elsewhere.example")  # not in the search
    with world.app_context():
        contacts.suppress(db.session, "cat@acme.example", "unsubscribed", "asked by email")
        db.session.commit()
    _mailed_days_ago(world, "don@acme.example", 2)
    plan = f"{_campaign_id(world)}:2"
    client = signed_in(world)
    listed = text(client.get("/admin/contacts?q=acme.example"))
    assert 'href="/admin/enrol?q=acme.example"' in listed
    confirm = text(client.get(f"/admin/enrol?q=acme.example&plan={plan}"))
    assert "2 people will be mailed" in confirm and "follow-up 2</strong>" in confirm
    assert _count(confirm, "Skipped: " + contacts_views.SKIP_LABELS["suppressed"]) == 1
    assert _count(confirm, "Skipped: " + contacts_views.SKIP_LABELS["recent"]) == 1
    assert "suppressed (unsubscribed)" in confirm
    assert f"a magnet went to them on {(utcnow() - timedelta(days=2)):%Y-%m-%d}, inside the repeat limit" in confirm
    pages = _run(client, post(client, "/admin/enrol", {"q": "acme.example", "plan": plan, "expected": 4}))
    assert len(pages) == 5 and "4 of 4 people done" in pages[3]
    report = pages[-1]
    assert (_count(report, "Enrolled and mailed"), _count(report, "Skipped")) == (2, 2)
    assert "cat@acme.example" in report and "don@acme.example" in report
    run_worker(world)
    sink.wait_for(2)
    sent = _sent(sink)
    assert sorted(sent) == ["ann@acme.example", "ben@acme.example"]
    assert {m["Subject"] for m in sent.values()} == {"One question for your forecast"}
    with world.app_context():
        ann = contacts.find(db.session, "ann@acme.example")
        [enrollment] = ann.enrollments
        assert enrollment.steps_sent == 2  # follow-up 1 was skipped on purpose, 2 went
        pending = db.session.scalars(select(Outbound).where(Outbound.enrollment_id == enrollment.id,
                                                            Outbound.state == "pending")).all()
        assert [r.step_position for r in pending] == [3]
        assert db.session.scalar(select(func.count(Outbound.id)).where(Outbound.kind == "magnet")) == 1  # don's


def test_it_enrols_an_import_in_batches_reloading_until_done_and_a_reload_enrols_nobody_twice(
    world, sink, monkeypatch
):
    monkeypatch.setattr(contacts_views, "ENROL_BATCH", 2)
    monkeypatch.setattr(contacts_views, "TALLY_BATCH", 2)
    receive(world, mail())  # bob asked by mail: in the campaign already, his magnet on its way
    client = signed_in(world)
    body = "email,name\n" + "".join(f"p{i}@fair.example,P{i}\n" for i in range(5)) + "bob@prospect.example,Bob\n"
    upload = post(client, "/admin/contacts/import", {"file": (io.BytesIO(body.encode()), "fair.csv")},
                  content_type="multipart/form-data")
    token = upload.headers["Location"].rsplit("/", 1)[1]
    post(client, f"/admin/contacts/import/{token}", {"email": "0", "name": "1", "tags": "", "action": "start"})
    post(client, f"/admin/contacts/import/{token}/check")
    imported = text(client.get(f"/admin/contacts/import/{token}/run"))
    assert f'href="/admin/enrol?import={token}"' in imported
    plan = f"{_campaign_id(world)}:0"
    confirm = text(client.get(f"/admin/enrol?import={token}&plan={plan}"))
    assert "5 people will be mailed" in confirm
    assert "in the campaign already" in confirm and "already in Execution Success Roadmap (active)" in confirm
    started = post(client, "/admin/enrol", {"import": token, "plan": plan, "expected": 6})
    pages = _run(client, started)
    assert len(pages) == 4  # three batches of two, then the report
    assert "2 of 6 people done" in pages[0] and "6 of 6 people done" in pages[2]
    assert _enrolments(world) == 6
    again = _follow(client, started.headers["Location"])  # the whole run reloaded from its first batch
    for report in (pages[-1], again[-1]):
        assert (_count(report, "Enrolled and mailed"), _count(report, "Skipped")) == (5, 1)
    assert _enrolments(world) == 6
    run_worker(world)
    sink.wait_for(6)
    assert sorted(_sent(sink)) == ["bob@prospect.example", *(f"p{i}@fair.example" for i in range(5))]
    with world.app_context():
        assert db.session.scalar(select(func.count(Outbound.id)).where(Outbound.kind == "magnet")) == 6


def test_the_same_person_enrolled_twice_gets_one_mail(world):
    dana = _person(world, "dana@prospect.example")
    with world.app_context():
        person, campaign = db.session.get(Contact, dana), by_slug(db.session, SLUG)
        first = enrollments.enrol(db.session, person, campaign, None, world.config)
        again = enrollments.enrol(db.session, person, campaign, 2, world.config)
        db.session.commit()
        assert first.row is not None and first.skip is None
        assert (again.row, again.skip, again.reason) == (
            None, enrollments.ENROLLED, "already in Execution Success Roadmap (active)")
        assert db.session.scalar(select(func.count(Outbound.id))) == 1


def test_suppressed_and_recently_mailed_people_are_refused_with_the_reason(world):
    for name in ("eve", "fay"):
        _person(world, f"{name}@prospect.example")
    _mailed_days_ago(world, "eve@prospect.example", 6)
    _mailed_days_ago(world, "fay@prospect.example", 8)  # outside the 7-day limit
    with world.app_context():
        campaign = by_slug(db.session, SLUG)
        carol = contacts.upsert(db.session, "carol+news@prospect.example")  # carol@ is suppressed in the world
        eve, fay = (contacts.find(db.session, f"{n}@prospect.example") for n in ("eve", "fay"))
        outcomes = [enrollments.enrol(db.session, p, campaign, None, world.config) for p in (carol, eve, fay)]
        assert [(o.skip, o.reason) for o in outcomes[:2]] == [
            (enrollments.SUPPRESSED, "suppressed (unsubscribed)"),
            (enrollments.RECENT, f"a magnet went to them on {(utcnow() - timedelta(days=6)):%Y-%m-%d}, "
                                 "inside the repeat limit"),
        ]
        assert outcomes[2].skip is None and outcomes[2].row.to_address == "fay@prospect.example"
        assert db.session.scalar(select(func.count(Enrollment.id))) == 1


def test_a_follow_up_that_does_not_exist_is_refused_and_a_forged_run_is_404(world):
    dana = _person(world, "dana@prospect.example")
    client = signed_in(world)
    page = text(client.get(f"/admin/enrol?contact={dana}&plan={_campaign_id(world)}:9"))
    assert "There is no such campaign or follow-up" in page and "will be mailed" not in page
    refused = post(client, "/admin/enrol", {"contact": dana, "plan": f"{_campaign_id(world)}:9"})
    assert refused.status_code == 302 and "/admin/enrol?contact=" in refused.headers["Location"]
    assert client.get("/admin/enrol/run/forged.token").status_code == 404
    with world.app_context():
        person, campaign = db.session.get(Contact, dana), by_slug(db.session, SLUG)
        with pytest.raises(enrollments.EnrollmentError, match="Execution Success Roadmap has no follow-up 9"):
            enrollments.enrol(db.session, person, campaign, 9, world.config)
    assert _enrolments(world) == 0


def _enrolments(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(Enrollment.id)))

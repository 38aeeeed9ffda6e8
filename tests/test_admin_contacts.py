"""Contacts: search, filters, keyset pages, the timeline that says why, and every action on a contact."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

from sqlalchemy import func, select

from service import contacts, enrollments, roster
from service.campaigns import by_slug
from service.extensions import db
from service.models import Contact, Enrollment, Event, InboundMessage, Outbound, Suppression, address_hash, utcnow
from tests.test_admin_support import post, receive, send_job, signed_in, text
from tests.world import mail


def _people(app, n: int) -> None:
    """n contacts with distinct activity times; every third at acme.example, every fifth tagged vip."""
    with app.app_context():
        now = utcnow()
        for i in range(n):
            domain = "acme.example" if i % 3 == 0 else f"co{i}.example"
            db.session.add(Contact(email=f"p{i:03d}@{domain}", name=f"Person {i:03d}", domain=domain,
                                   tags="vip" if i % 5 == 0 else "", last_activity_at=now - timedelta(minutes=i),
                                   created_at=now - timedelta(hours=i)))
        db.session.commit()


def _ids(app, filters: roster.Filters, **cursor) -> tuple[list[str], roster.Page]:
    with app.app_context():
        page = roster.page(db.session, filters, **cursor)
        return [c.email for c in page.contacts], page


def test_keyset_pages_walk_every_contact_once_forwards_and_back(world):
    _people(world, 120)
    seen, cursors = [], []
    page_emails, page = _ids(world, roster.Filters())
    while True:
        seen += page_emails
        cursors.append(page)
        if not page.after:
            break
        page_emails, page = _ids(world, roster.Filters(), after=page.after)
    assert len(seen) == 120 == len(set(seen)) and [len(p.contacts) for p in cursors] == [50, 50, 20]
    assert seen[0] == "p000@acme.example"  # latest activity first
    back, _ = _ids(world, roster.Filters(), before=cursors[1].before)
    assert back == seen[:50]
    assert cursors[0].before is None and cursors[0].count == 120


def test_every_sort_order_pages_without_gaps(world):
    _people(world, 70)
    for sort in roster.SORTS:
        first, page = _ids(world, roster.Filters(sort=sort))
        second, _ = _ids(world, roster.Filters(sort=sort), after=page.after)
        assert len(set(first + second)) == 70, sort
    names, _ = _ids(world, roster.Filters(sort="name"))
    assert names[:2] == ["p000@acme.example", "p001@co1.example"]


def test_a_tampered_cursor_just_starts_at_the_top(world):
    _people(world, 3)
    emails, _ = _ids(world, roster.Filters(), after="not-a-cursor")
    assert len(emails) == 3


def test_search_matches_name_address_and_company_domain(world):
    _people(world, 30)
    assert _ids(world, roster.Filters(text="person 007"))[0] == ["p007@co7.example"]
    assert _ids(world, roster.Filters(text="P012@"))[0] == ["p012@acme.example"]
    assert len(_ids(world, roster.Filters(text="acme.example"))[0]) == 10
    assert _ids(world, roster.Filters(text="100%_"))[0] == []  # LIKE wildcards are searched literally
    with world.app_context():
        db.session.add(Contact(email="john.smith@bigco.example", name="John Smith", domain="bigco.example"))
        db.session.commit()
    assert _ids(world, roster.Filters(text="john.smith"))[0] == ["john.smith@bigco.example"]


def test_filters_by_state_campaign_tag_hot_and_suppressed(world):
    _people(world, 10)
    with world.app_context():
        campaign = by_slug(db.session, "execution-roadmap")
        first, second = (contacts.find(db.session, e) for e in ("p000@acme.example", "p001@co1.example"))
        enrollments.enroll(db.session, first, campaign)
        paused, _ = enrollments.enroll(db.session, second, campaign)
        enrollments.move(db.session, paused, enrollments.PAUSED, "test")
        second.hot = True
        contacts.suppress(db.session, "p002@co2.example", "unsubscribed")
        db.session.commit()
        campaign_id = campaign.id
    assert _ids(world, roster.Filters(state="paused"))[0] == ["p001@co1.example"]
    assert len(_ids(world, roster.Filters(campaign_id=campaign_id))[0]) == 2
    assert _ids(world, roster.Filters(state="active", campaign_id=campaign_id))[0] == ["p000@acme.example"]
    assert _ids(world, roster.Filters(tag="VIP"))[0] == ["p000@acme.example", "p005@co5.example"]
    assert _ids(world, roster.Filters(state="hot"))[0] == ["p001@co1.example"]
    assert _ids(world, roster.Filters(state="suppressed"))[0] == ["p002@co2.example"]


def test_the_count_stops_at_its_bound(world):
    _people(world, 30)
    with world.app_context():
        assert roster.count(db.session, roster.Filters(), bound=10) == 11
        assert roster.count(db.session, roster.Filters(text="acme")) == 10


def test_the_list_page_keeps_filters_in_its_page_links(world):
    _people(world, 60)
    page = text(signed_in(world).get("/admin/contacts?q=example&sort=newest"))
    assert "60 contacts match." in page
    assert re.search(r'href="/admin/contacts\?after=[\w-]+&amp;q=example&amp;sort=newest"', page)


def test_the_timeline_shows_mail_in_mail_out_and_events_with_their_reasons(world):
    receive(world, mail())
    with world.app_context():
        row = db.session.scalar(select(Outbound))
        row.state, row.smtp_response = "failed", "554 5.7.1 Rejected by policy"
        db.session.commit()
        bob_id = row.contact_id
    page = text(signed_in(world).get(f"/admin/contacts/{bob_id}"))
    timeline = re.search(r'id="tl-h".*?</section>', page, re.S).group(0)
    assert "Mail in" in timeline and "sent to roadmap@acumen.example: campaign execution-roadmap" in timeline
    assert "Mail out" in timeline and "554 5.7.1 Rejected by policy" in timeline
    assert "Request</span> asked for Execution Success Roadmap" in timeline


def test_why_explains_suppression_the_next_send_and_the_repeat_limit(world):
    receive(world, mail())
    with world.app_context():
        bob = contacts.find(db.session, "bob@prospect.example")
        lines = roster.explain(db.session, bob, 7)
        assert "Execution Success Roadmap: active." in lines[0] and "Next: magnet due" in lines[0]
        assert "gets no second copy (7-day limit)" in lines[1]
        contacts.suppress(db.session, bob.email, "bounced", "permanent bounce 5.1.1")
        assert roster.explain(db.session, bob, 7)[0].startswith("Nothing is sent to this address")
        carol = contacts.upsert(db.session, "dave@prospect.example")
        assert roster.explain(db.session, carol, 7) == [
            "Not in any campaign yet: nothing is planned for this address."
        ]


def test_values_from_mail_are_escaped_everywhere(world):
    receive(world, mail(sender='"<img src=x onerror=alert(1)>" <bob@prospect.example>',
                        subject="<script>alert('s')</script>"))
    client = signed_in(world)
    with world.app_context():
        bob_id = contacts.find(db.session, "bob@prospect.example").id
        message_id = db.session.scalar(select(InboundMessage.id))
    for url in (f"/admin/contacts/{bob_id}", "/admin/contacts", "/admin/", f"/admin/inbound/{message_id}"):
        page = text(client.get(url))
        assert "<img src=x" not in page and "<script>alert" not in page, url
    assert "&lt;script&gt;alert(&#39;s&#39;)&lt;/script&gt;" in text(client.get(f"/admin/contacts/{bob_id}"))


def _bob_enrollment(app) -> tuple[int, int]:
    receive(app, mail())
    with app.app_context():
        e = db.session.scalar(select(Enrollment))
        return e.contact_id, e.id


def test_pause_resume_and_stop_move_the_sequence(world):
    bob_id, e_id = _bob_enrollment(world)
    client = signed_in(world)
    post(client, f"/admin/enrollments/{e_id}/pause")
    assert _state(world, e_id) == "paused"
    post(client, f"/admin/enrollments/{e_id}/resume")
    assert _state(world, e_id) == "active"
    confirm = client.get(f"/admin/enrollments/{e_id}/stop")
    assert "Stop the sequence" in text(confirm) and _state(world, e_id) == "active"
    post(client, f"/admin/enrollments/{e_id}/stop")
    assert _state(world, e_id) == "stopped"
    refused = post(client, f"/admin/enrollments/{e_id}/resume", follow_redirects=True)
    assert "Not changed: cannot resume a sequence that is stopped." in text(refused)
    with world.app_context():
        events = db.session.scalars(select(Event.kind).where(Event.contact_id == bob_id)).all()
        assert {"enrollment_paused", "enrollment_active", "enrollment_stopped"} <= set(events)


def _state(app, enrollment_id: int) -> str:
    with app.app_context():
        return db.session.get(Enrollment, enrollment_id).state


def test_resend_inside_the_limit_says_why_and_sends_nothing(world):
    bob_id, e_id = _bob_enrollment(world)
    response = post(signed_in(world), f"/admin/enrollments/{e_id}/resend", follow_redirects=True)
    assert "Not resent: a magnet already went to this address in the last 7 days." in text(response)
    with world.app_context():
        assert db.session.scalar(select(func.count(Outbound.id))) == 1


def test_resend_outside_the_limit_plans_a_threaded_magnet_and_queues_it(world, redis_server):
    world.config["MAGNET_REPEAT_DAYS"] = 0
    bob_id, e_id = _bob_enrollment(world)
    response = post(signed_in(world), f"/admin/enrollments/{e_id}/resend", follow_redirects=True)
    assert "The magnet is queued for bob@prospect.example" in text(response)
    with world.app_context():
        first, again = db.session.scalars(select(Outbound).order_by(Outbound.id)).all()
        assert again.key == f"resend:{e_id}:1" and again.in_reply_to == first.message_id
        job = send_job(redis_server.client(), again)
        assert job.func_name == "workers.jobs.send" and job.args == (again.id,)


def test_resend_to_a_suppressed_address_is_refused(world):
    bob_id, e_id = _bob_enrollment(world)
    world.config["MAGNET_REPEAT_DAYS"] = 0
    with world.app_context():
        contacts.suppress(db.session, "bob@prospect.example", "bounced")
        db.session.commit()
    response = post(signed_in(world), f"/admin/enrollments/{e_id}/resend", follow_redirects=True)
    assert "Not resent: the address is suppressed" in text(response)


def test_unsubscribe_asks_first_then_suppresses_and_stops(world):
    bob_id, e_id = _bob_enrollment(world)
    client = signed_in(world)
    assert "Unsubscribe bob@prospect.example?" in text(client.get(f"/admin/contacts/{bob_id}/unsubscribe"))
    with world.app_context():
        assert not contacts.is_suppressed(db.session, "bob@prospect.example")
    post(client, f"/admin/contacts/{bob_id}/unsubscribe")
    with world.app_context():
        assert contacts.is_suppressed(db.session, "bob@prospect.example")
    assert _state(world, e_id) == "unsubscribed"


def test_tags_are_normalised_and_saved(world):
    bob_id, _ = _bob_enrollment(world)
    post(signed_in(world), f"/admin/contacts/{bob_id}/tags", {"tags": "VIP; Webinar 2026, vip"})
    with world.app_context():
        assert db.session.get(Contact, bob_id).tags == "vip,webinar-2026"


def test_erase_deletes_personal_data_keeps_a_hash_and_the_address_is_never_mailed_again(world):
    bob_id, e_id = _bob_enrollment(world)
    receive(world, mail(subject="thanks", body="Got it, thanks Ken", to="ken@acumen.example"))
    client = signed_in(world)
    assert "Erase for good" in text(client.get(f"/admin/contacts/{bob_id}/erase"))
    response = post(client, f"/admin/contacts/{bob_id}/erase")
    assert response.headers["Location"] == "/admin/contacts"
    with world.app_context():
        assert db.session.get(Contact, bob_id) is None
        assert db.session.scalar(select(func.count(InboundMessage.id))) == 0
        assert db.session.scalar(select(func.count(Outbound.id))) == 0
        assert db.session.scalar(select(func.count(Enrollment.id))) == 0
        assert db.session.scalar(select(func.count(Event.id)).where(Event.contact_id.is_not(None))) == 0
        key = address_hash("bob@prospect.example")
        kept = db.session.scalar(select(Suppression).where(Suppression.address_hash == key))
        assert kept.email is None and kept.reason == "erased"
        assert "bob@prospect.example" not in repr(db.session.execute(select(Event.detail)).all())
    receive(world, mail())  # asks again later: no magnet, and they are not re-added
    with world.app_context():
        assert db.session.scalar(select(func.count(Outbound.id))) == 0
        assert db.session.scalar(select(func.count(Contact.id)).where(Contact.email == "bob@prospect.example")) == 0


def test_the_csv_export_defuses_formulas(world):
    with world.app_context():
        for i, name in enumerate(["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "\tTab", "Plain"]):
            db.session.add(Contact(email=f"f{i}@x.example", name=name, domain="x.example", tags=""))
        db.session.commit()
    response = signed_in(world).get("/admin/contacts/export.csv?q=x.example")
    assert response.mimetype == "text/csv" and "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(text(response))))
    assert sorted(r["name"] for r in rows) == sorted(
        ["'=HYPERLINK(\"http://x\")", "'+1", "'-2", "'@SUM(A1)", "'\tTab", "Plain"]
    )


def test_the_export_walks_all_matching_contacts_in_batches(world, monkeypatch):
    from service.admin import csvio

    monkeypatch.setattr(csvio, "BATCH", 7)
    _people(world, 30)
    rows = list(csv.DictReader(io.StringIO(text(signed_in(world).get("/admin/contacts/export.csv?tag=vip")))))
    assert len(rows) == 6 and {r["tags"] for r in rows} == {"vip"}


def test_resume_after_a_pause_plans_the_next_follow_up_again(world, sink):
    from tests.world import run_worker

    bob_id, e_id = _bob_enrollment(world)
    run_worker(world)  # the magnet goes; follow-up 1 is planned
    sink.wait_for(1)
    client = signed_in(world)
    post(client, f"/admin/enrollments/{e_id}/pause")
    with world.app_context():
        assert db.session.scalar(select(Outbound.state).where(Outbound.kind == "followup")) == "cancelled"
    post(client, f"/admin/enrollments/{e_id}/resume")
    with world.app_context():
        rows = db.session.scalars(select(Outbound).where(Outbound.kind == "followup")).all()
        assert [(r.state, r.step_position) for r in rows] == [("pending", 1)]


def test_erase_also_removes_mail_about_them_from_other_senders(world):
    bob_id, _ = _bob_enrollment(world)
    with world.app_context():
        ours = db.session.scalar(select(Outbound.message_id))
    complaint = (
        "From: abuse@isp.example\r\nTo: roadmap@acumen.example\r\nSubject: complaint\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nAbuse report about Bob Prospect <bob@prospect.example>\r\n"
        "--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n\r\n"
        f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nTo: redacted@isp.example\r\nMessage-ID: <{ours}>\r\n\r\n"
        "--b--\r\n"
    ).encode()
    receive(world, complaint)
    with world.app_context():
        assert db.session.scalar(select(func.count(InboundMessage.id))) == 2
    post(signed_in(world), f"/admin/contacts/{bob_id}/erase")
    with world.app_context():
        leftovers = db.session.scalars(select(InboundMessage.raw)).all()
        assert not any(b"bob@prospect.example" in raw for raw in leftovers)


def test_resubscribe_asks_first_then_lifts_the_suppression_and_says_so_on_the_timeline(world):
    receive(world, mail())
    with world.app_context():
        bob = contacts.find(db.session, "bob@prospect.example")
        contacts.suppress(db.session, bob.email, "unsubscribed", "asked by email")
        db.session.commit()
        url = f"/admin/contacts/{bob.id}"
    client = signed_in(world)
    page = text(client.get(url))
    assert "Resubscribe…" in page and "Enrol in" not in page  # no enrolling a suppressed person
    asked = text(client.get(f"{url}/resubscribe"))
    assert "Resubscribe bob@prospect.example?" in asked and "suppressed (unsubscribed)" in asked
    with world.app_context():
        assert contacts.is_suppressed(db.session, "bob@prospect.example")  # asking changes nothing
    done = post(client, f"{url}/resubscribe", follow_redirects=True)
    assert "bob@prospect.example is resubscribed." in text(done) and "Enrol in" in text(done)
    with world.app_context():
        assert not contacts.is_suppressed(db.session, "bob@prospect.example")
        assert db.session.scalar(select(Event.detail).where(Event.kind == "resubscribed")) == (
            "was unsubscribed: by alice@acumen.example")
        assert db.session.scalar(select(Enrollment.state)) == "active"  # a sequence it never stopped is as it was


def test_the_list_shows_the_company_beside_the_domain(world):
    with world.app_context():
        db.session.add(Contact(email="ann@acme.example", name="Ann", domain="acme.example", company="Acme Ltd"))
        db.session.commit()
    page = text(signed_in(world).get("/admin/contacts"))
    assert '<td data-label="Company">Acme Ltd<br><span class="muted">acme.example</span></td>' in page

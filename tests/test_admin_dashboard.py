"""The dashboard: the funnel by period, the daily chart, hot leads, failures, the poller and the queue."""

from __future__ import annotations

import re
from datetime import timedelta

from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry

from service import contacts, stats
from service.admin import chart
from service.extensions import db
from service.models import Event, MailboxState, Outbound, utcnow
from tests.test_admin_support import post, receive, signed_in, text
from tests.world import mail


def _events(app, kind: str, days_ago: list[int]) -> None:
    with app.app_context():
        now = utcnow()
        db.session.add_all(Event(kind=kind, created_at=now - timedelta(days=d, minutes=1)) for d in days_ago)
        db.session.commit()


def test_the_funnel_counts_each_step_for_7_30_and_90_days(world):
    _events(world, "request", [0, 3, 10, 45, 120])
    _events(world, "magnet_sent", [0, 10])
    _events(world, "followup_sent", [20])
    _events(world, "replied", [1, 60])
    _events(world, "unsubscribed", [2])
    _events(world, "bounce_hard", [5])
    _events(world, "bounce_soft", [50])
    _events(world, "test_sent", [0])  # a test send is no magnet
    with world.app_context():
        funnel = dict(stats.activity(db.session).funnel())
    assert funnel == {
        "Requests": [2, 3, 4], "Magnets sent": [1, 2, 2], "Follow-ups sent": [0, 1, 1], "Replies": [1, 1, 2],
        "Unsubscribes": [1, 1, 1], "Bounces": [1, 1, 2], "Complaints": [0, 0, 0],
    }
    page = text(signed_in(world).get("/admin/"))
    assert re.search(r"Requests</th>\s*<td class=\"num\">2</td><td class=\"num\">3</td><td class=\"num\">4</td>", page)


def test_complaints_are_counted_from_feedback_reports(world):
    receive(world, mail())
    with world.app_context():
        from service.models import InboundMessage

        db.session.query(InboundMessage).update({"kind": "complaint"})
        db.session.commit()
        funnel = dict(stats.activity(db.session).funnel())
    assert funnel["Complaints"] == [1, 1, 1]


def test_the_chart_is_an_svg_with_a_bar_per_day_and_a_text_alternative(world):
    _events(world, "request", [0, 0, 0, 1])
    _events(world, "replied", [0])
    page = text(signed_in(world).get("/admin/"))
    svg = re.search(r"<svg.*?</svg>", page, re.S).group(0)
    assert 'role="img"' in svg and "<title" in svg and "<script" not in svg
    assert len(re.findall(r'<rect class="bar-requests"', svg)) == 2
    assert len(re.findall(r'<rect class="bar-replies"', svg)) == 1
    assert re.search(r"<title>\w{3} \d\d \w{3}: 3 requests</title>", svg)
    assert "Last 30 days: 4 requests and 1 reply." in page


def test_bar_heights_follow_the_counts_on_a_readable_scale():
    today = utcnow().date()
    drawn = chart.daily([(today - timedelta(days=1), 3, 0), (today, 6, 1)])
    requests = [b for b in drawn.bars if b.series == "requests"]
    assert requests[1].height == 2 * requests[0].height
    assert [label for _, label in drawn.ticks] == [0, 5, 10]
    assert chart.nice_ceiling(0) == 1 and chart.nice_ceiling(7) == 10 and chart.nice_ceiling(101) == 200


def test_hot_leads_list_replied_contacts_until_marked_handled(world):
    receive(world, mail())
    receive(world, mail(subject="Question", body="Ken, can we talk on Monday?", to="ken@acumen.example"))
    client = signed_in(world)
    hot = re.search(r'id="hot-h".*?</section>', text(client.get("/admin/")), re.S).group(0)
    assert "Bob Prospect" in hot
    with world.app_context():
        bob = contacts.find(db.session, "bob@prospect.example")
    response = post(client, f"/admin/contacts/{bob.id}/handled", {"next": "/admin/"})
    assert response.headers["Location"] == "/admin/"
    hot = re.search(r'id="hot-h".*?</section>', text(client.get("/admin/")), re.S).group(0)
    assert "Bob Prospect" not in hot and "No one is waiting for an answer" in hot
    with world.app_context():
        assert "handled" in [e.kind for e in db.session.query(Event).filter_by(contact_id=bob.id)]


def test_failed_and_unknown_sends_are_shown_with_the_server_reply(world):
    with world.app_context():
        dana = contacts.upsert(db.session, "dana@prospect.example")
        db.session.add_all([
            Outbound(key="a", kind="magnet", contact_id=dana.id, to_address=dana.email, message_id="a@x",
                     state="failed", smtp_response="550 5.1.1 <dana@prospect.example>: User unknown"),
            Outbound(key="b", kind="followup", step_position=2, contact_id=dana.id, to_address=dana.email,
                     message_id="b@x", state="unknown", note="worker stopped mid-send"),
            Outbound(key="c", kind="magnet", contact_id=dana.id, to_address=dana.email, message_id="c@x",
                     state="sent", smtp_response="250 OK all fine"),
        ])
        db.session.commit()
    page = text(signed_in(world).get("/admin/"))
    failed = re.search(r'id="fail-h".*?</section>', page, re.S).group(0)
    assert "550 5.1.1 &lt;dana@prospect.example&gt;: User unknown" in failed
    assert "worker stopped mid-send" in failed and "follow-up 2" in failed
    assert "250 OK all fine" not in failed
    assert re.search(r"<strong>2</strong> failed or unknown", page)
    listed = text(signed_in(world).get("/admin/sends?state=problem"))
    assert "User unknown" in listed and "250 OK all fine" not in listed
    assert 'aria-current="page">Failed or unknown</a>' in listed


def test_the_poller_health_shows_last_poll_lag_and_error(world):
    with world.app_context():
        now = utcnow()
        db.session.add(MailboxState(mailbox="imap://desk@mail/INBOX", last_poll_at=now - timedelta(minutes=7),
                                    last_error="LOGIN failed: <b>bad</b>", last_error_at=now - timedelta(minutes=6)))
        db.session.commit()
    page = text(signed_in(world).get("/admin/"))
    assert "imap://desk@mail/INBOX" in page and re.search(r"\(lag 42\d s\)", page)
    assert "LOGIN failed: &lt;b&gt;bad&lt;/b&gt;" in page


def test_failed_jobs_are_counted_and_retried(world, redis_server):
    redis = redis_server.client()
    q = Queue("test", connection=redis)
    q.enqueue("service.no_such_module.job", job_id="doomed")
    SimpleWorker([q], connection=redis).work(burst=True)
    assert FailedJobRegistry(queue=q).count == 1
    client = signed_in(world)
    assert re.search(r"<dt>Failed</dt><dd>1</dd>", text(client.get("/admin/")))
    response = post(client, "/admin/jobs/retry", follow_redirects=True)
    assert "1 failed job put back on the queue." in text(response)
    assert FailedJobRegistry(queue=q).count == 0 and q.count == 1


def test_the_dashboard_still_renders_when_redis_is_down(make_app):
    from service import users

    app = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    with app.app_context():
        users.create(db.session, "alice@acumen.example", "correct horse battery")
        db.session.commit()
    page = signed_in(app).get("/admin/")
    assert page.status_code == 200 and "Redis cannot be reached" in text(page)


def test_the_dashboard_says_when_the_breaker_has_paused_sending(world):
    from service.models import Contact

    with world.app_context():
        someone = Contact(email="x@y.example", name="")
        db.session.add(someone)
        db.session.flush()
        for n in range(20):
            db.session.add(Outbound(key=f"b:{n}", kind="magnet", contact_id=someone.id, to_address=f"p{n}@y.example",
                                    message_id=f"b{n}@acumen.example", state="sent", sent_at=utcnow()))
        db.session.add(Event(contact_id=someone.id, kind="complaint"))
        db.session.commit()
    page = text(signed_in(world).get("/admin/"))
    assert "Sending paused: 1 spam complaints for 20 sends in 24 h." in page

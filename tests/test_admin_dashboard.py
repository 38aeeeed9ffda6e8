"""The dashboard: the funnel by period, the daily chart, hot leads, failures, the poller and the queue."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry
from sqlalchemy import select, update

from service import contacts, stats
from service.admin import chart
from service.extensions import db
from service.models import Contact, Enrollment, Event, MailboxState, Outbound, utcnow
from tests.test_admin_support import post, receive, review_card, signed_in, text
from tests.world import mail


def _people(app, n: int) -> list[int]:
    """n contacts, for events that need a person."""
    with app.app_context():
        people = [Contact(email=f"{uuid.uuid4().hex[:12]}@people.example", name="") for _ in range(n)]
        db.session.add_all(people)
        db.session.commit()
        return [c.id for c in people]


def _events(app, kind: str, days_ago: list[int], who: list[int] | None = None) -> None:
    """Timeline events `days_ago` days back; each by a different new person unless `who` says whose."""
    who = who or _people(app, len(days_ago))
    with app.app_context():
        now = utcnow()
        db.session.add_all(Event(contact_id=c, kind=kind, created_at=now - timedelta(days=d, minutes=1))
                           for c, d in zip(who, days_ago, strict=True))
        db.session.commit()


def _funnel(app) -> dict[str, list[int]]:
    with app.app_context():
        return dict(stats.activity(db.session).funnel())


def test_the_funnel_counts_the_people_at_each_step_for_7_30_and_90_days(world):
    _events(world, "request", [0, 3, 10, 45, 120])
    _events(world, "magnet_sent", [0, 10])
    _events(world, "downloaded", [8])
    _events(world, "followup_sent", [20])
    _events(world, "replied", [1, 60])
    _events(world, "unsubscribed", [2])
    _events(world, "bounce_hard", [5])
    _events(world, "bounce_soft", [50])
    _events(world, "test_sent", [0])  # a test send is no magnet
    assert _funnel(world) == {
        "Asked": [2, 3, 4], "Got the magnet": [1, 2, 2], "Downloaded": [0, 1, 1], "Got a follow-up": [0, 1, 1],
        "Replied": [1, 1, 2], "Unsubscribed": [1, 1, 1], "Bounced": [1, 1, 2], "Complained": [0, 0, 0],
    }
    page = text(signed_in(world).get("/admin/"))
    assert re.search(r"Asked</th>\s*<td class=\"num\">2</td><td class=\"num\">3</td><td class=\"num\">4</td>", page)
    funnel = re.search(r'id="funnel-h".*?</section>', page, re.S).group(0)
    assert "people, each counted once per step" in funnel


def test_a_person_asking_twice_is_one_person_on_each_step(world):
    [dana, erin] = _people(world, 2)
    _events(world, "request", [0, 2, 20], who=[dana, dana, dana])
    _events(world, "request", [1], who=[erin])
    _events(world, "followup_sent", [1, 2], who=[dana, dana])  # two follow-ups: one person got follow-ups
    _events(world, "bounce_soft", [3], who=[erin])
    _events(world, "bounce_hard", [4], who=[erin])  # soft then hard: one person bounced
    funnel = _funnel(world)
    assert funnel["Asked"] == [2, 2, 2]
    assert funnel["Got a follow-up"] == [1, 1, 1] and funnel["Bounced"] == [1, 1, 1]


def test_a_repeat_request_is_a_request_never_a_reply(world):
    receive(world, mail())  # bob asks and gets the magnet
    with world.app_context():
        db.session.execute(update(Outbound).values(state="sent", sent_at=utcnow()))
        db.session.commit()
        magnet = db.session.scalar(select(Outbound.message_id))
    receive(world, mail())  # asks again by writing to the roadmap address
    again = receive(world, mail(subject="Re: Roadmap please", body="Hi Ken, could you send it again? I lost it.",
                                In_Reply_To=f"<{magnet}>", References=f"<{magnet}>"))  # and inside our thread
    funnel = _funnel(world)
    assert funnel["Asked"] == [1, 1, 1] and funnel["Replied"] == [0, 0, 0]
    with world.app_context():
        bob = contacts.find(db.session, "bob@prospect.example")
        assert not bob.hot
        assert db.session.scalar(select(Enrollment.state)) == "active"
    review = text(signed_in(world).get("/admin/review"))
    card = review_card(review, again)
    assert "asked again</span>" in card and "Send the magnet again" in card


def test_complaints_count_the_people_who_complained(world):
    [dana, erin] = _people(world, 2)
    _events(world, "complaint", [0, 1, 40], who=[dana, dana, erin])
    with world.app_context():
        db.session.add(Event(contact_id=None, kind="complaint"))  # about an address we never mailed: nobody
        db.session.commit()
    assert _funnel(world)["Complained"] == [1, 1, 2]


def test_the_chart_counts_people_per_day_as_an_svg_with_a_text_alternative(world):
    [dana] = _people(world, 1)
    _events(world, "request", [0, 0, 0, 1])
    _events(world, "request", [0, 1], who=[dana, dana])  # dana asks on two days: in two bars, once in the sum
    _events(world, "replied", [0])
    page = text(signed_in(world).get("/admin/"))
    svg = re.search(r"<svg.*?</svg>", page, re.S).group(0)
    assert 'role="img"' in svg and "<title" in svg and "<script" not in svg
    assert "People who asked and who replied, per day" in svg
    assert len(re.findall(r'<rect class="bar-requests"', svg)) == 2
    assert len(re.findall(r'<rect class="bar-replies"', svg)) == 1
    assert re.search(r"<title>\w{3} \d\d \w{3}: 4 people asked</title>", svg)
    assert re.search(r"<title>\w{3} \d\d \w{3}: 1 person replied</title>", svg)
    assert "Last 30 days: 5 people asked, 1 person replied." in page
    table = re.search(r"Show the numbers as a table.*?</table>", page, re.S).group(0)
    assert "People who asked" in table and re.search(r'<td class="num">4</td><td class="num">1</td>', table)


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

    app = make_app()
    with app.app_context():
        users.create(db.session, "alice@acumen.example", "correct horse battery")
        db.session.commit()
    client = signed_in(app)  # signing in needs the limiter (Redis); the dashboard then must not
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"
    page = client.get("/admin/")
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

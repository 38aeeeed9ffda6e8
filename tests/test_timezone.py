"""The consultant's clock: times, relative times, the funnel's days and the chart's buckets in their zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from config import ConfigError
from service import create_app, stats
from service.admin import ago, when
from service.extensions import db
from service.models import Contact, Event, utcnow
from tests.test_admin_support import signed_in, text

CHICAGO = ZoneInfo("America/Chicago")


def test_times_are_shown_on_the_deployments_clock_and_say_which(make_app):
    app = make_app(ADMIN_TIMEZONE="America/Chicago")
    with app.test_request_context():
        assert when(datetime(2026, 12, 2, 20, 46, tzinfo=UTC)) == "2026-12-02 14:46 CST"
        assert when(datetime(2026, 7, 2, 20, 46, tzinfo=UTC)) == "2026-07-02 15:46 CDT"
    with make_app().test_request_context():
        assert when(datetime(2026, 12, 2, 20, 46, tzinfo=UTC)) == "2026-12-02 20:46 UTC"


@pytest.mark.parametrize(("offset", "says"), [
    (timedelta(days=3) - timedelta(seconds=5), "in 3 days"),  # planned a moment ago, 3 days out
    (timedelta(hours=48), "in 2 days"),
    (timedelta(hours=23, minutes=59, seconds=30), "in 1 day"),
    (-timedelta(minutes=3, seconds=10), "3 min ago"),
    (-timedelta(seconds=42), "42 s ago"),
])
def test_relative_times_round_to_the_nearest_unit(app, offset, says):
    with app.test_request_context():
        assert ago(utcnow() + offset) == says


def _asked(app, at: datetime) -> None:
    with app.app_context():
        person = Contact(email=f"p{at.timestamp():.0f}@people.example", name="")
        db.session.add(person)
        db.session.flush()
        db.session.add(Event(contact_id=person.id, kind="request", created_at=at))
        db.session.commit()


def test_the_chart_and_the_funnel_count_the_viewers_calendar_days(app):
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # 06:00 in Chicago
    _asked(app, datetime(2026, 12, 2, 3, 0, tzinfo=UTC))  # Dec 2 in UTC, the evening of Dec 1 in Chicago
    _asked(app, datetime(2026, 11, 25, 5, 30, tzinfo=UTC))  # Nov 25 in UTC, Nov 24 23:30 in Chicago
    with app.app_context():
        utc, chicago = stats.activity(db.session, now), stats.activity(db.session, now, CHICAGO)
    asked = {d: n for d, n, _ in utc.series() if n}
    assert asked == {datetime(2026, 12, 2).date(): 1, datetime(2026, 11, 25).date(): 1}
    asked = {d: n for d, n, _ in chicago.series() if n}
    assert asked == {datetime(2026, 12, 1).date(): 1, datetime(2026, 11, 24).date(): 1}
    # The 7-day window ends today and starts at local midnight six days back: Nov 26 in Chicago.
    assert utc.total("Asked", 7) == 1 and chicago.total("Asked", 7) == 1
    assert chicago.total("Asked", 30) == 2


def test_a_day_across_a_dst_change_is_bounded_by_its_own_midnights(app):
    now = datetime(2026, 11, 2, 18, 0, tzinfo=UTC)  # Chicago left daylight time on Nov 1
    _asked(app, datetime(2026, 11, 1, 5, 30, tzinfo=UTC))  # 00:30 CDT on Nov 1
    _asked(app, datetime(2026, 11, 1, 4, 30, tzinfo=UTC))  # 23:30 CDT on Oct 31
    with app.app_context():
        asked = {d: n for d, n, _ in stats.activity(db.session, now, CHICAGO).series() if n}
    assert asked == {datetime(2026, 11, 1).date(): 1, datetime(2026, 10, 31).date(): 1}


def test_the_dashboard_says_which_zone_its_days_are_in(world):
    world.config["ADMIN_TIMEZONE"] = "America/Chicago"
    _asked(world, utcnow() - timedelta(hours=1))
    page = text(signed_in(world).get("/admin/"))
    assert "Days are calendar days in America/Chicago, today included" in page
    assert 'per day <span class="sub">(America/Chicago)</span>' in page


def test_a_deployment_timezone_that_does_not_exist_fails_in_one_line(settings):
    with pytest.raises(ConfigError, match="ADMIN_TIMEZONE must be an IANA timezone like America/Chicago, got 'CST6'"):
        create_app({**settings, "ADMIN_TIMEZONE": "CST6"})

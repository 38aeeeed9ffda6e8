"""The plan: when the magnet and each follow-up go for one request, after the sending window, by the same
computation real scheduling uses; and the admin page that shows it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service import campaigns, contacts, enrollments, outbound
from service.extensions import db
from service.models import Campaign, Step
from tests.test_admin_campaigns import _campaign
from tests.test_admin_support import signed_in, text

CHICAGO = campaigns.zone("America/Chicago")
WINDOW = "mon-fri 09:00-17:00"
FRIDAY_1630 = datetime(2026, 12, 4, 16, 30, tzinfo=CHICAGO)  # a Friday, CST
DOMAIN = "acumen.example"


def _campaign_of(*delays: str, window: str | None = WINDOW) -> Campaign:
    steps = [Step(position=n, after=after, subject=f"s{n}", text="t") for n, after in enumerate(delays, start=1)]
    return Campaign(name="Plan", slug="plan", magnet_subject="m", magnet_text="t", window=window,
                    timezone="America/Chicago", steps=steps)


def _local(planned: enrollments.PlannedSend) -> tuple[str, int, bool]:
    return planned.at.strftime("%a %Y-%m-%d %H:%M %Z"), planned.day, planned.moved


def test_a_friday_afternoon_request_gets_its_follow_ups_on_working_days():
    plan = enrollments.plan_dates(_campaign_of("1h", "3d", "2d"), FRIDAY_1630)
    assert [_local(p) for p in plan] == [
        ("Fri 2026-12-04 16:30 CST", 0, False),  # the magnet answers at once
        ("Mon 2026-12-07 09:00 CST", 3, True),  # 17:30 on Friday is past the window
        ("Thu 2026-12-10 09:00 CST", 6, False),  # three days after Monday 09:00, inside
        ("Mon 2026-12-14 09:00 CST", 10, True),  # Saturday waits for Monday
    ]
    assert [p.asked.strftime("%a %H:%M") for p in plan] == ["Fri 16:30", "Fri 17:30", "Thu 09:00", "Sat 09:00"]


def test_days_add_up_from_the_request_so_after_3d_reads_as_day_5():
    plan = enrollments.plan_dates(_campaign_of("2d", "3d", window=None), FRIDAY_1630)
    assert [(p.after, p.day) for p in plan] == [(None, 0), ("2d", 2), ("3d", 5)]


def test_the_magnet_waits_for_the_window_only_with_magnet_in_window():
    at_once, waiting = (enrollments.plan_dates(_campaign_of(), datetime(2026, 12, 5, 10, 0, tzinfo=CHICAGO), wait)
                        for wait in (False, True))
    assert _local(at_once[0]) == ("Sat 2026-12-05 10:00 CST", 0, False)
    assert _local(waiting[0]) == ("Mon 2026-12-07 09:00 CST", 2, True)


def _scheduled(app, delays: tuple[str, ...], start: datetime) -> tuple[list[datetime], list[datetime]]:
    """The due times enrollments itself gives each follow-up (each sent the moment it is due), and the plan's."""
    with app.app_context():
        campaign = campaigns.by_slug(db.session, "execution-roadmap")
        campaign.window, campaign.timezone = WINDOW, "America/Chicago"
        campaign.steps.clear()
        db.session.flush()
        campaign.steps.extend(Step(position=n, after=a, subject=f"s{n}", text="t") for n, a in enumerate(delays, 1))
        contact = contacts.upsert(db.session, "dana@prospect.example", "Dana")
        enrollment, _ = enrollments.enroll(db.session, contact, campaign)
        row = outbound.plan(db.session, "reply:plan", "magnet", contact.email, DOMAIN, "Re: Roadmap please",
                            contact_id=contact.id, enrollment_id=enrollment.id, campaign_id=campaign.id)
        row.state, row.sent_at = outbound.SENT, start.astimezone(UTC)
        due = []
        while (row := enrollments.advance(db.session, row, DOMAIN)) is not None:
            due.append(row.due_at)
            row.state, row.sent_at = outbound.SENT, row.due_at
        planned = enrollments.plan_dates(campaign, start)
        db.session.rollback()
    assert [p.position for p in planned] == list(range(len(delays) + 1))
    return due, [p.at for p in planned[1:]]


@pytest.mark.parametrize(("delays", "start"), [
    (("1h", "3d", "2d"), FRIDAY_1630),
    # Across the end of daylight saving time (1 November 2026): three days are 72 hours, as in the ledger.
    (("3d", "4h", "30m"), datetime(2026, 10, 30, 16, 30, tzinfo=CHICAGO)),
])
def test_the_plan_lands_where_real_scheduling_puts_each_follow_up(world, delays, start):
    due, planned = _scheduled(world, delays, start)
    assert len(due) == len(delays) and planned == due


def test_the_plan_page_shows_each_mail_on_the_windows_clock_and_on_the_viewers(world):
    campaign = _campaign(world, "execution-roadmap")
    client = signed_in(world)
    world.config["ADMIN_TIMEZONE"] = "America/Chicago"  # the viewer's clock is the window's
    with world.app_context():
        saved = campaigns.by_slug(db.session, "execution-roadmap")
        saved.window, saved.timezone = WINDOW, "America/Chicago"
        db.session.commit()
    page = text(client.get(f"/admin/campaigns/{campaign.id}/plan?start=2026-12-04T16:30"))
    assert "A request on Fri 4 Dec 2026, 16:30 CST" in page
    # The test world's fast steps: 2s, then 1h, then 14d after the previous mail.
    assert page.count("<strong>Fri 4 Dec 2026, 16:30 CST</strong>") == 2  # the magnet, then 2 s later
    assert "The wait ends Fri 4 Dec 2026, 17:30 CST, outside the window" in page
    assert "<strong>Mon 7 Dec 2026, 09:00 CST</strong>" in page and "day 3</td>" in page
    assert "<strong>Mon 21 Dec 2026, 09:00 CST</strong>" in page and "day 17</td>" in page
    assert 'value="2026-12-04T16:30"' in page
    assert "Your clock" not in page  # shown only when it differs
    world.config["ADMIN_TIMEZONE"] = "Europe/Berlin"
    page = text(client.get(f"/admin/campaigns/{campaign.id}/plan?start=2026-12-04T16:30"))
    assert "Your clock" in page and "2026-12-07 16:00 CET" in page


def test_a_plan_page_without_a_moment_plans_a_request_now(world):
    campaign = _campaign(world, "execution-roadmap")
    page = text(signed_in(world).get(f"/admin/campaigns/{campaign.id}/plan?start=not-a-date"))
    assert "Not a valid datetime value" in page and "The magnet" in page and "day 0</td>" in page

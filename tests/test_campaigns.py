"""Campaign rules: delays, sending windows across DST, and clear errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.campaigns import CampaignError, next_open, parse_delay, parse_window


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("4h", 14400), ("3d", 259200), (" 2 s ", 2)]
)
def test_delays_accept_seconds_minutes_hours_and_days(text, seconds):
    assert parse_delay(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["3", "3w", "-1d", "soon", ""])
def test_bad_delays_say_what_is_expected(text):
    with pytest.raises(CampaignError, match="must look like"):
        parse_delay(text)


def test_a_window_names_days_and_hours():
    days, opens, closes = parse_window("mon-fri 08:00-18:00")
    assert days == {0, 1, 2, 3, 4} and (opens.hour, closes.hour) == (8, 18)
    assert parse_window("fri-mon 09:00-17:00")[0] == {4, 5, 6, 0}


@pytest.mark.parametrize("text", ["weekdays 8-6", "mon-fri 18:00-08:00", "xyz 08:00-09:00", "mon 25:00-26:00"])
def test_bad_windows_are_refused(text):
    with pytest.raises(CampaignError):
        parse_window(text)


CHICAGO = "America/Chicago"
WINDOW = "mon-fri 08:00-18:00"


def test_inside_the_window_nothing_waits():
    moment = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)  # Wednesday 10:00 in Chicago (CST)
    assert next_open(moment, WINDOW, CHICAGO) == moment


def test_friday_evening_waits_for_monday_morning_local_time():
    friday_evening = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # Friday 19:00 CST
    assert next_open(friday_evening, WINDOW, CHICAGO) == datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


def test_the_window_follows_daylight_saving_time():
    # Saturday 7 March 2026; DST starts Sunday 8 March, so Monday 08:00 is CDT (UTC-5), not CST.
    saturday = datetime(2026, 3, 7, 15, 0, tzinfo=UTC)
    assert next_open(saturday, WINDOW, CHICAGO) == datetime(2026, 3, 9, 13, 0, tzinfo=UTC)
    # Saturday 31 October 2026; DST ends Sunday 1 November: Monday 08:00 is CST again (UTC-6).
    assert next_open(datetime(2026, 10, 31, 15, 0, tzinfo=UTC), WINDOW, CHICAGO) == datetime(
        2026, 11, 2, 14, 0, tzinfo=UTC
    )


def test_no_window_means_any_time():
    moment = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    assert next_open(moment, None, CHICAGO) == moment


def test_an_unknown_timezone_is_an_error():
    with pytest.raises(CampaignError, match="unknown timezone"):
        next_open(datetime(2026, 1, 1, tzinfo=UTC), WINDOW, "Mars/Olympus")

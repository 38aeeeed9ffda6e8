"""The sending pace against a real Redis: a sliding minute shared by racing workers, and a day with a share
kept for first-time requesters. Time is injected, so nothing here sleeps."""

from __future__ import annotations

import heapq
import threading
from datetime import UTC, datetime, timedelta

import pytest

from service import outbound, throttle
from service.extensions import db
from service.models import Contact, Outbound
from workers.jobs import _paced

NOON = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MIDNIGHT = datetime(2026, 11, 27, tzinfo=UTC)


@pytest.fixture
def redis(redis_server):
    redis_server.flushall()
    return redis_server.client()


def _most_in_any_minute(times: list[datetime]) -> int:
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < start + timedelta(seconds=60)) for i, start in enumerate(times))


def _per_minute(times: list[datetime], start: datetime, minutes: int) -> list[int]:
    return [sum(1 for t in times if (t - start) // timedelta(minutes=1) == m) for m in range(minutes)]


def test_two_racing_workers_never_send_more_than_the_pace_in_any_60_seconds(redis, redis_server):
    # Half past: a budget per calendar minute would let 20 go now and 20 more at the next full minute.
    start, granted, step = NOON + timedelta(seconds=30), [], threading.Barrier(2)

    def worker(client) -> None:
        for tick in range(3 * 60 * 4):  # both ask every quarter second for three minutes, in step
            now = start + timedelta(seconds=tick / 4)
            step.wait()
            if throttle.take_slot(client, 20, 10_000, now) is None:
                granted.append(now)

    threads = [threading.Thread(target=worker, args=(c,)) for c in (redis, redis_server.client())]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert _most_in_any_minute(granted) == 20
    assert _per_minute(granted, start, 3) == [20, 20, 20]  # and never fewer


def test_a_backlog_drains_at_exactly_the_pace_every_minute(redis):
    waiting = [(NOON, n) for n in range(100)]  # 100 sends due at once, each coming back when it is told to
    granted = []
    while waiting:
        now, n = heapq.heappop(waiting)
        later = throttle.take_slot(redis, 20, 10_000, now)
        if later is None:
            granted.append(now)
        else:
            assert later > now
            heapq.heappush(waiting, (later, n))
    assert _per_minute(granted, NOON, 5) == [20, 20, 20, 20, 20]
    assert _most_in_any_minute(granted) == 20


def test_a_refused_send_comes_back_when_the_oldest_leaves_the_window_and_uses_no_budget(redis):
    first = NOON + timedelta(seconds=10)
    for n in range(3):
        assert throttle.take_slot(redis, 3, 100, first + timedelta(seconds=n)) is None
    later = throttle.take_slot(redis, 3, 100, first + timedelta(seconds=30))
    assert first + timedelta(seconds=60) <= later <= first + timedelta(seconds=60 + throttle.RETRY_JITTER_SECONDS)
    assert redis.zcard(throttle.WINDOW_KEY) == 3 and redis.get("ft:pace:day:2026-11-26") == b"3"
    assert throttle.take_slot(redis, 3, 100, first + timedelta(seconds=60)) is None  # the oldest left at 60 s
    assert throttle.take_slot(redis, 3, 100, first + timedelta(seconds=60.5)) is not None


def test_follow_ups_leave_the_first_time_share_of_the_day(redis):
    follow_up = {"first_time": False, "share_percent": 20}
    assert [throttle.take_slot(redis, 100, 10, NOON, **follow_up) for _ in range(8)] == [None] * 8
    assert throttle.take_slot(redis, 100, 10, NOON, **follow_up) == MIDNIGHT
    newcomer = {"first_time": True, "share_percent": 20}
    assert [throttle.take_slot(redis, 100, 10, NOON, **newcomer) for _ in range(2)] == [None, None]
    assert throttle.take_slot(redis, 100, 10, NOON, **newcomer) == MIDNIGHT
    assert throttle.take_slot(redis, 100, 10, MIDNIGHT, **follow_up) is None  # a new UTC day, a new budget


def _magnet(name: str, state: str = outbound.PENDING) -> Outbound:
    contact = db.session.query(Contact).filter_by(email=f"{name}@prospect.example").one_or_none()
    if contact is None:
        contact = Contact(email=f"{name}@prospect.example", name=name)
        db.session.add(contact)
        db.session.flush()
    row = outbound.plan(db.session, f"test:{name}:{state}", "magnet", contact.email, "acumen.example", "Roadmap",
                        contact_id=contact.id)
    row.state = state
    db.session.flush()
    return row


def test_only_a_first_time_requesters_magnet_gets_the_kept_share(world, redis_server):
    world.config.update(SEND_PER_DAY=5, FIRST_TIME_SHARE_PERCENT=20)
    with world.test_request_context():
        _magnet("bob", outbound.SENT)
        again, newcomer = _magnet("bob"), _magnet("dana")
        for _ in range(4):  # the follow-ups' part of the day (5 less 20%) is used up
            assert _paced(Outbound(kind="followup", contact_id=again.contact_id), world.config) is None
        refused = _paced(again, world.config)
        assert refused.until.date() > datetime.now(UTC).date() and "FIRST_TIME_SHARE_PERCENT" in refused.reason
        assert _paced(newcomer, world.config) is None
        db.session.rollback()

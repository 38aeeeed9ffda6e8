"""The sending pace against a real Redis: a sliding minute shared by racing workers, a day with a share
kept for first-time requesters, each mailbox's own pace and warm-up beside the deployment's, and
deployments on one Redis kept apart. Time is injected, so nothing here sleeps."""

from __future__ import annotations

import heapq
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select, update

from service import intake, mailboxes, outbound, throttle
from service.extensions import db
from service.models import Campaign, Contact, Mailbox, Outbound
from service.queue import queue_inbound
from tests.world import mail, run_worker
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
    assert redis.zcard(throttle.WINDOW_KEY) == 3
    assert redis.get(f"{throttle.prefix(throttle.DEFAULT_QUEUE)}:day:2026-11-26") == b"3"
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


def _pace(queue: str = "test", mailbox: str | None = None, **own) -> dict:
    """Settings as `mailboxes.settings_for` gives them: the deployment's, and a mailbox's own pace if named."""
    settings = {"QUEUE_NAME": queue, "SEND_PER_MINUTE": 20, "SEND_PER_DAY": 10_000, "FIRST_TIME_SHARE_PERCENT": 0,
                "WARMUP_START_PER_DAY": 20, "MAILBOX": mailbox or mailboxes.DEFAULT}
    if mailbox:
        settings.update(MAILBOX_PER_MINUTE=None, MAILBOX_PER_DAY=None, MAILBOX_WARMUP_DAYS=None,
                        MAILBOX_CREATED_AT=NOON - timedelta(days=400))
        settings.update({f"MAILBOX_{name.upper()}": value for name, value in own.items()})
    return settings


def _take(redis, settings: dict, now: datetime, first_time: bool = True) -> throttle.Refused | None:
    return throttle.take(redis, throttle.budgets(settings, now, first_time), now)


def test_a_mailbox_keeps_its_own_minute_beside_the_deployments_across_racing_workers(redis, redis_server):
    ken, pat, now = _pace(mailbox="ken", per_minute=5), _pace(mailbox="pat"), NOON + timedelta(seconds=10)
    granted: list[str] = []

    def worker(client) -> None:
        for _ in range(50):  # ken's requests never trail pat's, so ken gets all 5 before the deployment fills
            for settings in (ken, pat):
                if _take(client, settings, now) is None:
                    granted.append(settings["MAILBOX"])

    threads = [threading.Thread(target=worker, args=(c,)) for c in (redis, redis_server.client())]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    # Ken's 95 refusals took nothing from the deployment's 20: pat had the other 15.
    assert (granted.count("ken"), granted.count("pat")) == (5, 15)
    assert redis.zcard("ft:test:pace:window") == 20 and redis.zcard("ft:test:pace:ken:window") == 5
    assert redis.get("ft:test:pace:day:2026-11-26") == b"20" and not redis.exists("ft:test:pace:pat:window")


def test_a_send_refused_by_either_limit_takes_from_neither_and_names_it(redis):
    ken, now = _pace(mailbox="ken", per_minute=5, per_day=100), NOON + timedelta(seconds=10)
    ken["SEND_PER_MINUTE"] = 3
    assert [_take(redis, ken, now) for _ in range(3)] == [None] * 3
    refused = _take(redis, ken, now)
    assert refused.reason == "SEND_PER_MINUTE 3" and refused.until >= now + timedelta(seconds=60)
    assert redis.zcard("ft:test:pace:ken:window") == 3 and redis.get("ft:test:pace:ken:day:2026-11-26") == b"3"
    ken["SEND_PER_MINUTE"] = 1000
    assert [_take(redis, ken, now) for _ in range(2)] == [None] * 2
    refused = _take(redis, ken, now)
    assert refused.reason == "mailbox ken: per_minute 5"
    assert redis.zcard("ft:test:pace:window") == 5 and redis.get("ft:test:pace:day:2026-11-26") == b"5"


def test_the_later_of_two_refusals_decides_when_to_ask_again(redis):
    ken, now = _pace(mailbox="ken", per_day=2), NOON + timedelta(seconds=10)
    ken["SEND_PER_MINUTE"] = 2  # the minute frees in 60 s, the mailbox's day only at midnight
    assert [_take(redis, ken, now) for _ in range(2)] == [None] * 2
    refused = _take(redis, ken, now)
    assert (refused.until, refused.reason) == (MIDNIGHT, "mailbox ken: per_day 2")


@pytest.mark.parametrize(("per_day", "warmup_days", "expected"), [
    (620, 30, [20, 40, 60, 80, 100, 120] + [20 + 20 * n for n in range(6, 30)] + [620, 620, 620]),
    (10, 5, [10] * 8),  # a cap below WARMUP_START_PER_DAY is never passed, even on day 0
    (23, 2, [20, 21, 23, 23]),  # whole sends: the climb rounds down
])
def test_a_new_mailbox_climbs_from_the_warm_up_start_to_its_day_limit(per_day, warmup_days, expected):
    limits = [throttle.warmup_limit(per_day, warmup_days, 20, day) for day in range(len(expected))]
    assert limits == expected


def test_warm_up_days_are_utc_days_since_the_mailbox_was_created():
    created = datetime(2026, 11, 20, 23, 59, tzinfo=UTC)
    assert throttle.warmup_day(created, datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC)) == 0
    assert throttle.warmup_day(created, datetime(2026, 11, 21, 0, 0, 1, tzinfo=UTC)) == 1
    berlin = timezone(timedelta(hours=1))  # 00:30 in Berlin is still the 20th in UTC
    assert throttle.warmup_day(datetime(2026, 11, 21, 0, 30, tzinfo=berlin), created) == 0
    assert throttle.warmup_day(created, created - timedelta(days=3)) == 0  # a clock behind: day 0, not below


def test_a_warming_mailbox_waits_at_its_day_limit_and_climbs_the_next_day(redis):
    ken = _pace(mailbox="ken", per_day=620, warmup_days=30, created_at=NOON - timedelta(days=5))
    ken["SEND_PER_MINUTE"] = 1000
    assert [_take(redis, ken, NOON + timedelta(seconds=n)) for n in range(120)] == [None] * 120
    refused = _take(redis, ken, NOON + timedelta(seconds=200))
    assert refused.until == MIDNIGHT
    assert refused.reason == "mailbox ken: per_day 120 on warm-up day 5 of 30"
    tomorrow = [_take(redis, ken, MIDNIGHT + timedelta(seconds=n)) for n in range(141)]
    assert tomorrow[:140] == [None] * 140 and "warm-up day 6 of 30" in tomorrow[140].reason


def test_a_warm_up_with_no_day_limit_of_its_own_climbs_to_send_per_day():
    ken = _pace(mailbox="ken", warmup_days=10, created_at=NOON)
    ken["SEND_PER_DAY"] = 220
    days = [throttle.mailbox(ken, NOON + timedelta(days=n), True).per_day for n in (0, 5, 10, 11)]
    assert days == [20, 120, 220, 220]
    assert throttle.mailbox(_pace(mailbox="ken", per_minute=None), NOON, True) is None  # no pace: no budget


def test_two_deployments_on_one_redis_share_no_budget(redis):
    first, second = _pace(queue="acumen", mailbox="ken", per_day=3), _pace(queue="thoreson", mailbox="ken", per_day=3)
    for settings in (first, second):
        settings["SEND_PER_MINUTE"] = 3
    assert [_take(redis, first, NOON) for _ in range(3)] == [None] * 3
    assert _take(redis, first, NOON) is not None
    assert [_take(redis, second, NOON) for _ in range(3)] == [None] * 3
    assert sorted(k.decode() for k in redis.keys("*")) == [
        f"ft:{queue}:pace:{key}" for queue in ("acumen", "thoreson")
        for key in ("day:2026-11-26", "ken:day:2026-11-26", "window")
    ]


def _ken_record(app, pace: dict) -> None:
    """A stored mailbox `ken` with this pace, answering for the world's campaign (no SMTP: into its outbox)."""
    text = yaml.safe_dump({"mailboxes": [{"slug": "ken", "from": "Ken Thoreson <ken@acumen.example>", "pace": pace}]})
    with app.app_context():
        mailboxes.import_yaml(db.session, text, app.config)
        db.session.execute(update(Campaign).values(mailbox="ken"))
        db.session.commit()


def test_a_stored_mailboxs_warm_up_holds_its_sends(world, redis_server):
    world.config.update(WARMUP_START_PER_DAY=2, FIRST_TIME_SHARE_PERCENT=0)
    _ken_record(world, {"per_day": 12, "warmup_days": 10})
    with world.test_request_context():
        record = db.session.scalar(select(Mailbox).where(Mailbox.slug == "ken"))
        record.created_at -= timedelta(days=5)  # day 5 of 10: 2 + (12 - 2) * 5 // 10 = 7
        db.session.flush()
        sending = mailboxes.settings_for(db.session, "ken", world.config)
        row = Outbound(kind="followup")
        assert [_paced(row, sending) for _ in range(7)] == [None] * 7
        refused = _paced(row, sending)
        assert refused.reason == "pace limit reached (mailbox ken: per_day 7 on warm-up day 5 of 10)"
        assert refused.until.date() > datetime.now(UTC).date()
        assert _paced(row, world.config) is None  # the deployment's own day is far from full
        db.session.rollback()


def test_sends_from_a_mailbox_wait_at_its_pace_not_only_the_deployments(world):
    _ken_record(world, {"per_minute": 2, "per_day": 2})  # both: it holds even if the run crosses a minute
    with world.app_context():
        for n in range(4):
            raw = mail(sender=f"p{n}@prospect.example")
            row = intake.store(db.session, "test", 1, int(time.time() * 1000) + n, raw, None, slug="ken")
            db.session.commit()
            queue_inbound(row.id)
    run_worker(world)
    assert len(list((Path(world.config["OUTBOX"]) / "ken").glob("*.eml"))) == 2
    with world.app_context():
        waiting = db.session.scalars(select(Outbound).filter_by(state=outbound.PENDING, kind="magnet")).all()
        assert len(waiting) == 2 and all("pace limit reached (mailbox ken: per_" in r.note for r in waiting)

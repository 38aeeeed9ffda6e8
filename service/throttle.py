"""Sending pace shared by every worker on every machine, counted in Redis (not per process)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from redis import Redis


def take_slot(redis: Redis, per_minute: int, per_day: int, now: datetime | None = None) -> datetime | None:
    """Claim one send from the global minute and day budgets; None if allowed, else when to try again."""
    now = now or datetime.now(UTC)
    minute_key = f"ft:pace:minute:{int(now.timestamp() // 60)}"
    day_key = f"ft:pace:day:{now:%Y-%m-%d}"
    pipe = redis.pipeline()
    pipe.incr(minute_key)
    pipe.expire(minute_key, 120)
    pipe.incr(day_key)
    pipe.expire(day_key, 2 * 86400)
    in_minute, _, in_day, _ = pipe.execute()
    if in_minute <= per_minute and in_day <= per_day:
        return None
    redis.decr(minute_key)  # a refused send does not use up budget
    redis.decr(day_key)
    if in_day > per_day:
        return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    next_minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return next_minute + timedelta(seconds=random.uniform(0, 20))

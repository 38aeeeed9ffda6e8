"""Sending pace shared by every worker on every machine, counted in Redis (not per process).

Two budgets: a sliding minute (never more than SEND_PER_MINUTE in any 60 seconds) and the UTC
day, of which a share (FIRST_TIME_SHARE_PERCENT) is kept for first-time requesters' magnets, so
follow-ups can never use up the day that a new prospect's magnet needs.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from redis import Redis

WINDOW_KEY = "ft:pace:window"
WINDOW_SECONDS = 60
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
# Waiters come back just after a slot frees, spread a little so they don't all ask at the same instant.
RETRY_JITTER_SECONDS = 2.0

# One script, so trimming, counting and taking a slot are one step for every worker at once.
# KEYS: the window (a sorted set of send times, in µs: exact, so no send is rounded out of it) and the day's
# counter. ARGV: now and the window's length (µs), sends per window, this send's day limit, a unique member.
# Returns {0} when taken, {1} when the day is full, {2, oldest send} when the window is.
_TAKE = """
local now, length = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - length)
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[4]) then
  return {1}
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {2, oldest[2]}
end
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('EXPIRE', KEYS[1], 2 * length / 1000000)
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 2 * 86400)
return {0}
"""


def day_limit(per_day: int, first_time: bool, share_percent: int) -> int:
    """The part of the day a send may use: all of it for a first-time requester's magnet, else the rest."""
    if first_time:
        return per_day
    share = min(max(share_percent, 0), 100)
    return per_day * (100 - share) // 100


def take_slot(
    redis: Redis, per_minute: int, per_day: int, now: datetime | None = None,
    first_time: bool = True, share_percent: int = 0,
) -> datetime | None:
    """Claim one send from the global window and day budgets; None if allowed, else when to try again.

    A refused send uses no budget.
    """
    now = now or datetime.now(UTC)
    stamp = (now - EPOCH) // MICROSECOND
    day_key = f"ft:pace:day:{now:%Y-%m-%d}"
    limit = day_limit(per_day, first_time, share_percent)
    member = f"{stamp}:{uuid.uuid4().hex}"
    answer = redis.register_script(_TAKE)(
        keys=[WINDOW_KEY, day_key], args=[stamp, WINDOW_SECONDS * 1_000_000, per_minute, limit, member]
    )
    if answer[0] == 0:
        return None
    if answer[0] == 1:
        return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    frees = EPOCH + int(float(answer[1])) * MICROSECOND + timedelta(seconds=WINDOW_SECONDS)
    return max(frees, now) + timedelta(seconds=random.uniform(0, RETRY_JITTER_SECONDS))

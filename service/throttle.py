"""Sending pace shared by every worker on every machine, counted in Redis (not per process).

Each budget is a sliding minute (never more than its per-minute limit in any 60 seconds) and a UTC
day. The deployment has one (SEND_PER_MINUTE, SEND_PER_DAY); a mailbox with a `pace` has its own
beside it, and a send needs a slot in both. Of every day a share (FIRST_TIME_SHARE_PERCENT) is kept
for first-time requesters' magnets, so follow-ups can never use up the day a new prospect's magnet needs.

A mailbox with `warmup_days` ramps up. On day n (0-based, UTC days since the mailbox was created)
its day limit is

    min(per_day, WARMUP_START_PER_DAY + (per_day - WARMUP_START_PER_DAY) * n // warmup_days)

so day 0 allows WARMUP_START_PER_DAY and day `warmup_days` on allows all of `per_day` (SEND_PER_DAY
for a mailbox with a warm-up and no `per_day` of its own).

Keys carry the deployment's QUEUE_NAME (`ft:<queue>:pace:window`, `ft:<queue>:pace:day:<date>`,
`ft:<queue>:pace:<mailbox>:window`, `ft:<queue>:pace:<mailbox>:day:<date>`): deployments sharing
one Redis share no budget.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis import Redis

DEFAULT_QUEUE = "followthrough"  # QUEUE_NAME's default, for callers that name no deployment
WINDOW_SECONDS = 60
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
# Waiters come back just after a slot frees, spread a little so they don't all ask at the same instant.
RETRY_JITTER_SECONDS = 2.0
NO_LIMIT = -1

# One script, so checking every budget and taking a slot in each are one step for every worker at once:
# a send refused by any budget takes from none.
# KEYS: per budget, its window (a sorted set of send times, in µs: exact, so no send is rounded out of it)
# then its day's counter. ARGV: now and the window's length (µs), a unique member, then per budget its
# sends per window and this send's day limit (-1: no limit).
# Returns {} when taken, else one {budget, 1} for each full day and {budget, 2, oldest send} for each full window.
_TAKE = """
local now, length, member = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local budgets, refused = #KEYS / 2, {}
for i = 1, budgets do
  local window, day = KEYS[2 * i - 1], KEYS[2 * i]
  local per_window, per_day = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', window, '-inf', now - length)
  if per_day >= 0 and tonumber(redis.call('GET', day) or '0') >= per_day then
    refused[#refused + 1] = {i, 1}
  elseif per_window >= 0 and redis.call('ZCARD', window) >= per_window then
    local oldest = redis.call('ZRANGE', window, 0, 0, 'WITHSCORES')
    refused[#refused + 1] = {i, 2, oldest[2]}
  end
end
if #refused > 0 then
  return refused
end
for i = 1, budgets do
  local window, day = KEYS[2 * i - 1], KEYS[2 * i]
  if tonumber(ARGV[2 + 2 * i]) >= 0 then
    redis.call('ZADD', window, now, member)
    redis.call('EXPIRE', window, 2 * length / 1000000)
  end
  if tonumber(ARGV[3 + 2 * i]) >= 0 then
    redis.call('INCR', day)
    redis.call('EXPIRE', day, 2 * 86400)
  end
end
return {}
"""


@dataclass(frozen=True)
class Budget:
    """One pace to keep, for this send: its keys' prefix, its limits (None: none) and how a deferral names each."""

    prefix: str
    per_minute: int | None
    per_day: int | None
    minute_reason: str
    day_reason: str

    def keys(self, now: datetime) -> list[str]:
        return [f"{self.prefix}:window", f"{self.prefix}:day:{now:%Y-%m-%d}"]


@dataclass(frozen=True)
class Refused:
    """When to ask again, and which limit said no."""

    until: datetime
    reason: str


def prefix(queue_name: str, mailbox: str | None = None) -> str:
    """Where a budget's keys live: the deployment's, or one of its mailboxes'."""
    return f"ft:{queue_name}:pace" if mailbox is None else f"ft:{queue_name}:pace:{mailbox}"


WINDOW_KEY = f"{prefix(DEFAULT_QUEUE)}:window"


def day_limit(per_day: int, first_time: bool, share_percent: int) -> int:
    """The part of the day a send may use: all of it for a first-time requester's magnet, else the rest."""
    if first_time:
        return per_day
    share = min(max(share_percent, 0), 100)
    return per_day * (100 - share) // 100


def warmup_day(created_at: datetime, now: datetime) -> int:
    """Day n of a mailbox's life, 0-based, counted in UTC days (a clock behind its creation says day 0)."""
    return max((now.astimezone(UTC).date() - created_at.astimezone(UTC).date()).days, 0)


def warmup_limit(per_day: int, warmup_days: int, start: int, day: int) -> int:
    """The day limit on warm-up day `day`: from `start` on day 0 up to `per_day` on day `warmup_days`."""
    day = min(day, warmup_days)  # past the warm-up the climb has ended, it does not go on (or down)
    return min(per_day, start + (per_day - start) * day // warmup_days)


def _share_note(first_time: bool, share_percent: int) -> str:
    if first_time or share_percent <= 0:
        return ""
    return ", less the FIRST_TIME_SHARE_PERCENT kept for first-time requesters"


def deployment(settings: dict, first_time: bool) -> Budget:
    """The deployment-wide budget, SEND_PER_MINUTE and SEND_PER_DAY, as this send may use it."""
    per_minute, per_day, share = (settings[k] for k in ("SEND_PER_MINUTE", "SEND_PER_DAY", "FIRST_TIME_SHARE_PERCENT"))
    return Budget(
        prefix(settings["QUEUE_NAME"]), per_minute, day_limit(per_day, first_time, share),
        f"SEND_PER_MINUTE {per_minute}", f"SEND_PER_DAY {per_day}{_share_note(first_time, share)}",
    )


def mailbox(settings: dict, now: datetime, first_time: bool) -> Budget | None:
    """The sending mailbox's own budget (`settings` as `mailboxes.settings_for` gives them); None if it has none."""
    per_minute, per_day = settings.get("MAILBOX_PER_MINUTE"), _mailbox_day(settings, now)
    if per_minute is None and per_day is None:
        return None
    name, share = f"mailbox {settings['MAILBOX']}", settings["FIRST_TIME_SHARE_PERCENT"]
    today = None if per_day is None else day_limit(per_day[0], first_time, share)
    return Budget(
        prefix(settings["QUEUE_NAME"], settings["MAILBOX"]), per_minute, today, f"{name}: per_minute {per_minute}",
        f"{name}: per_day {per_day[1] if per_day else ''}{_share_note(first_time, share)}",
    )


def _mailbox_day(settings: dict, now: datetime) -> tuple[int, str] | None:
    """The mailbox's day limit today (before the first-time share), and how a deferral says it."""
    per_day, warmup = settings.get("MAILBOX_PER_DAY"), settings.get("MAILBOX_WARMUP_DAYS")
    if not warmup:
        return None if per_day is None else (per_day, str(per_day))
    per_day = settings["SEND_PER_DAY"] if per_day is None else per_day  # a warm-up climbs to the deployment's day
    day = warmup_day(settings["MAILBOX_CREATED_AT"], now)
    if day >= warmup:
        return per_day, str(per_day)
    today = warmup_limit(per_day, warmup, settings["WARMUP_START_PER_DAY"], day)
    return today, f"{today} on warm-up day {day} of {warmup}"


def budgets(settings: dict, now: datetime, first_time: bool) -> list[Budget]:
    """Every budget a send from this mailbox must fit: the deployment's, and the mailbox's own if it has one."""
    own = mailbox(settings, now, first_time)
    return [deployment(settings, first_time), *([own] if own else [])]


def take(redis: Redis, wanted: list[Budget], now: datetime | None = None) -> Refused | None:
    """Claim one send from every budget at once; None if allowed, else when to try again and why not.

    A refused send uses no budget: not of the one that refused it, nor of any other.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)  # the day's key and its midnight are UTC's
    stamp = (now - EPOCH) // MICROSECOND
    keys = [key for budget in wanted for key in budget.keys(now)]
    limits = [_for_script(n) for budget in wanted for n in (budget.per_minute, budget.per_day)]
    args = [stamp, WINDOW_SECONDS * 1_000_000, f"{stamp}:{uuid.uuid4().hex}", *limits]
    answer = redis.register_script(_TAKE)(keys=keys, args=args)
    if not answer:
        return None
    return max((_refusal(wanted[entry[0] - 1], entry, now) for entry in answer), key=lambda r: r.until)


def _for_script(limit: int | None) -> int:
    return NO_LIMIT if limit is None else limit


def _refusal(budget: Budget, entry: list, now: datetime) -> Refused:
    if entry[1] == 1:  # the day is full: come back at the next UTC midnight
        return Refused(datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC), budget.day_reason)
    frees = EPOCH + int(float(entry[2])) * MICROSECOND + timedelta(seconds=WINDOW_SECONDS)
    later = max(frees, now) + timedelta(seconds=random.uniform(0, RETRY_JITTER_SECONDS))
    return Refused(later, budget.minute_reason)


def take_slot(
    redis: Redis, per_minute: int, per_day: int, now: datetime | None = None,
    first_time: bool = True, share_percent: int = 0, queue_name: str = DEFAULT_QUEUE,
) -> datetime | None:
    """Claim one send from a deployment's budget alone; None if allowed, else when to try again.

    A refused send uses no budget.
    """
    limit = day_limit(per_day, first_time, share_percent)
    budget = Budget(prefix(queue_name), per_minute, limit, "SEND_PER_MINUTE", "SEND_PER_DAY")
    refused = take(redis, [budget], now)
    return None if refused is None else refused.until

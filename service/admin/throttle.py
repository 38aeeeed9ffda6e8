"""Sign-in throttling in Redis: failures slow an account down with growing delays, they never lock it out.

Failures are counted per IP + email, per IP (password spraying) and per email from anywhere
(guessing spread over many addresses). Past a count's free attempts, each next attempt must wait
2^(failures - free) seconds after the last counted one, at most MAX_DELAY_SECONDS. An attempt
refused for a delay is not counted, so a flood of them cannot push the right password further away.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass

from redis.exceptions import RedisError

from .. import queue

log = logging.getLogger(__name__)
FORGET_AFTER_SECONDS = 15 * 60  # failures are forgotten this long after the last counted attempt
FIRST_DELAY_SECONDS = 1  # the wait after the free attempts; it doubles with each failure
MAX_DELAY_SECONDS = 60
PER_ACCOUNT = 5  # free failures for one email from one address
PER_ADDRESS = 20  # free failures from one address over any emails
PER_EMAIL = 50  # free failures for one email from anywhere
LIMITS = (PER_ACCOUNT, PER_ADDRESS, PER_EMAIL)

# Checked and counted in one step, before the password is checked, so parallel guesses can't slip past.
# KEYS: the counts (hashes of n failures and the last attempt, in ms). ARGV: now, the first delay, the largest
# delay, how long a count lives (all in ms), then each key's free attempts. Returns 0 when counted, else the ms
# to wait.
_RESERVE = """
local now, wait = tonumber(ARGV[1]), 0
for i, key in ipairs(KEYS) do
  local n, free = tonumber(redis.call('HGET', key, 'n') or '0'), tonumber(ARGV[4 + i])
  if n >= free then
    local delay = math.min(tonumber(ARGV[2]) * 2 ^ (n - free), tonumber(ARGV[3]))
    local last = tonumber(redis.call('HGET', key, 'last') or '0')
    wait = math.max(wait, last + delay - now)
  end
end
if wait > 0 then
  return math.ceil(wait)
end
for _, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'n', 1)
  redis.call('HSET', key, 'last', ARGV[1])
  redis.call('PEXPIRE', key, ARGV[4])
end
return 0
"""


# KEYS: this account's count, then the others; a count that has expired is not brought back.
_CLEAR = """
redis.call('DEL', KEYS[1])
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HINCRBY', KEYS[i], 'n', -1)
  end
end
"""


class LimiterDown(Exception):
    """Redis cannot be reached: sign-in is refused rather than left open to unlimited guesses."""


@dataclass(frozen=True)
class Attempt:
    ip: str
    email: str

    def redis_keys(self) -> tuple[str, str, str]:
        who = hashlib.sha256(self.email.strip().lower().encode()).hexdigest()[:32]
        return f"ft:login-fail:{self.ip}:{who}", f"ft:login-fail:{self.ip}", f"ft:login-fail:any:{who}"


def reserve(attempt: Attempt, now: float | None = None) -> int:
    """Count the attempt, unless a delay is running; 0 when it may go on, else the seconds to wait."""
    stamp = int((time.time() if now is None else now) * 1000)
    delays = [FIRST_DELAY_SECONDS * 1000, MAX_DELAY_SECONDS * 1000]
    args = [stamp, *delays, FORGET_AFTER_SECONDS * 1000, *LIMITS]
    try:
        redis = queue.connection()
        wait_ms = redis.register_script(_RESERVE)(keys=list(attempt.redis_keys()), args=args)
    except (RedisError, OSError) as exc:
        log.error("sign-in refused: the rate limiter (Redis) is down: %s", exc)
        raise LimiterDown(str(exc)) from exc
    return math.ceil(int(wait_ms) / 1000)


def cleared(attempt: Attempt) -> None:
    """A success forgets this account's failures here and takes itself back off the other counts."""
    try:
        queue.connection().register_script(_CLEAR)(keys=list(attempt.redis_keys()))
    except (RedisError, OSError) as exc:  # signed in already; the counts fade with their keys
        log.warning("login throttle unavailable: %s", exc)

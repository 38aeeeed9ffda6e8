"""Sign-in throttling: failed attempts counted in Redis per IP + email and per IP, for 15 minutes."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from .. import queue

log = logging.getLogger(__name__)
WINDOW_SECONDS = 15 * 60
PER_ACCOUNT = 5  # failures for one email from one address
PER_ADDRESS = 20  # failures from one address over any emails (password spraying)


PER_EMAIL = 50  # failures for one email from anywhere (guessing spread over many addresses)
LIMITS = (PER_ACCOUNT, PER_ADDRESS, PER_EMAIL)


@dataclass(frozen=True)
class Attempt:
    ip: str
    email: str

    def redis_keys(self) -> tuple[str, str, str]:
        who = hashlib.sha256(self.email.strip().lower().encode()).hexdigest()[:32]
        return f"ft:login-fail:{self.ip}:{who}", f"ft:login-fail:{self.ip}", f"ft:login-fail:any:{who}"


def reserve(attempt: Attempt) -> bool:
    """Count the attempt before the password is checked, so parallel guesses can't slip past; True when over."""
    try:
        pipe = queue.connection().pipeline()
        for key in attempt.redis_keys():
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS, nx=True)
        counts = pipe.execute()[0::2]
    except Exception as exc:  # Redis down: sign-in must still work, so the limit lapses (logged)
        log.warning("login throttle unavailable: %s", exc)
        return False
    return any(count > limit for count, limit in zip(counts, LIMITS, strict=True))


def cleared(attempt: Attempt) -> None:
    """A success forgets this account's failures here and takes itself back off the other counts."""
    account, address, email = attempt.redis_keys()
    try:
        pipe = queue.connection().pipeline()
        pipe.delete(account)
        pipe.decr(address)
        pipe.decr(email)
        pipe.execute()
    except Exception as exc:
        log.warning("login throttle unavailable: %s", exc)

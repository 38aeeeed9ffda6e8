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


@dataclass(frozen=True)
class Attempt:
    ip: str
    email: str

    def redis_keys(self) -> tuple[str, str]:
        who = hashlib.sha256(self.email.strip().lower().encode()).hexdigest()[:32]
        return f"ft:login-fail:{self.ip}:{who}", f"ft:login-fail:{self.ip}"


def blocked(attempt: Attempt) -> bool:
    """True when this IP (for this email, or at all) has failed too often lately."""
    try:
        account, address = queue.connection().mget(attempt.redis_keys())
    except Exception as exc:  # Redis down: sign-in must still work, so the limit lapses (logged)
        log.warning("login throttle unavailable: %s", exc)
        return False
    return int(account or 0) >= PER_ACCOUNT or int(address or 0) >= PER_ADDRESS


def failed(attempt: Attempt) -> None:
    """Count a failure; the window starts at the first failure."""
    try:
        pipe = queue.connection().pipeline()
        for key in attempt.redis_keys():
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS, nx=True)
        pipe.execute()
    except Exception as exc:
        log.warning("login throttle unavailable: %s", exc)


def cleared(attempt: Attempt) -> None:
    """A success forgets this account's failures (the per-address count stays)."""
    try:
        queue.connection().delete(attempt.redis_keys()[0])
    except Exception as exc:
        log.warning("login throttle unavailable: %s", exc)

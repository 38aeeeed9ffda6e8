"""Prometheus metrics: the counters the jobs move, the gauges read at scrape time, and the /metrics page.

Counters and the send-latency histogram live in the process that moves them (the worker). Under
gunicorn and `flask up` every process writes its own under PROMETHEUS_MULTIPROC_DIR and the web
process adds them up (prometheus-client's multiprocess mode). Gauges of what the database and Redis
hold are the same whichever process asks, so they are read fresh at each scrape instead.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from flask import Request, Response
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from . import outbound, queue, stats

INBOUND = Counter(
    "followthrough_inbound_messages", "Inbound messages processed, by kind as classified (or quarantined)", ["kind"]
)
SENDS = Counter("followthrough_sends", "What the send job did with a ledger row, by outcome", ["outcome"])
RETRIES = Counter("followthrough_retries", "Jobs that failed for now and will run again, by job", ["job"])
CATCHES = Counter(
    "followthrough_reconciler_catches",
    "Work only the database still knew of, put back by the reconciler: rows left mid-send (stuck), "
    "due sends and waiting messages that had no job in Redis",
    ["what"],
)
SEND_SECONDS = Histogram(
    "followthrough_send_seconds", "How long the SMTP server took over one message, accepted or refused",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SEND_OUTCOMES = ("sent", "failed", "unknown", "retry", "deferred", "skipped", "cancelled")
for _outcome in SEND_OUTCOMES:  # present at 0 from the start, so the first of each shows in rate()
    SENDS.labels(_outcome)


@dataclass
class Poller:
    """One polled folder as an outsider may see it: the mailbox's slug and the folder, never a user or host."""

    mailbox: str
    folder: str
    last_poll_at: datetime | None
    lag_seconds: int | None
    failing: bool

    def as_json(self) -> dict:
        return {"mailbox": self.mailbox, "folder": self.folder, "lag_seconds": self.lag_seconds,
                "last_poll_at": self.last_poll_at.isoformat() if self.last_poll_at else None, "failing": self.failing}


def pollers(session: Session, settings: dict) -> list[Poller]:
    """Every folder the poller keeps a watermark for, named by mailbox slug and folder."""
    from .admin.mailboxes_views import health  # the Mailboxes page's own grouping: both name a folder alike

    boxes, unclaimed = health(session, settings, stats.mailboxes(session))
    named = [_poller(box.slug, folder, row) for box in boxes for folder, row in box.folders]
    # Rows no mailbox claims (left by older settings) get an index only: their key holds a user and a host.
    return named + [_poller("unclaimed", str(n), row) for n, row in enumerate(unclaimed, 1)]


def _poller(slug: str, folder: str, row: stats.Mailbox) -> Poller:
    # An error counts until a pass finishes after it; the poller keeps the last one's text regardless.
    failing = bool(row.last_error) and (
        row.last_error_at is None or row.last_poll_at is None or row.last_error_at >= row.last_poll_at
    )
    return Poller(slug, folder, row.last_poll_at, row.lag_seconds, failing)


class _Snapshot:
    """Gauges of what the database and Redis hold now; a part that cannot be read is left out."""

    def __init__(self, session: Session, settings: dict):
        self.session, self.settings = session, settings

    def collect(self) -> Iterator[Metric]:
        yield from self._queue()
        yield from self._database()

    def _queue(self) -> Iterator[Metric]:
        try:
            jobs = queue.health()
        except RedisError:
            return
        family = GaugeMetricFamily("followthrough_queue_jobs", "RQ jobs by state (queued is the queue's depth)",
                                   labels=["state"])
        for state, count in jobs.items():
            family.add_metric([state], count)
        yield family

    def _database(self) -> Iterator[Metric]:
        try:
            found, paused = pollers(self.session, self.settings), outbound.breaker(self.session, self.settings)
        except SQLAlchemyError:
            self.session.rollback()
            return
        lag = GaugeMetricFamily("followthrough_poller_lag_seconds", "Seconds since the folder's last finished poll",
                                labels=["mailbox", "folder"])
        failing = GaugeMetricFamily("followthrough_poller_failing", "1 while the folder's last poll failed",
                                    labels=["mailbox", "folder"])
        for poller in found:
            if poller.lag_seconds is not None:
                lag.add_metric([poller.mailbox, poller.folder], poller.lag_seconds)
            failing.add_metric([poller.mailbox, poller.folder], int(poller.failing))
        yield lag
        yield failing
        yield GaugeMetricFamily("followthrough_breaker_open", "1 while the bounce and complaint breaker pauses sending",
                                value=int(paused is not None))


def refusal(request: Request, token: str | None) -> Response | None:
    """Why this request may not read the metrics (401 or 403), or None when it may."""
    if token:
        given = request.headers.get("Authorization", "").encode()
        if hmac.compare_digest(given, f"Bearer {token}".encode()):
            return None
        return Response("a bearer token is needed\n", 401, {"WWW-Authenticate": 'Bearer realm="metrics"'})
    # With no token, this machine only; and not by way of a proxy on it, whose clients would all look local.
    relayed = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers
    if _loopback(request.remote_addr) and not relayed:
        return None
    return Response("metrics are for this machine only (or set METRICS_TOKEN)\n", 403)


def _loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:  # a unix socket, or nothing
        return False


def page(request: Request, session: Session, settings: dict) -> Response:
    """The scrape, in the exposition format the scraper asks for (Prometheus text, or OpenMetrics)."""
    registry = CollectorRegistry()
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        MultiProcessCollector(registry, path=folder)
    else:
        registry.register(REGISTRY)
    registry.register(_Snapshot(session, settings))
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encode(registry), headers={"Content-Type": content_type})


def clear_folder(folder: str) -> None:
    """Start a run with an empty PROMETHEUS_MULTIPROC_DIR, as prometheus-client asks: files of dead
    processes would otherwise count again. Only its own `*.db` files are removed."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for file in path.glob("*.db"):
        file.unlink()

"""The RQ worker, with the scheduler and the reconciler in its maintenance loop."""

from __future__ import annotations

import logging

from flask import Flask
from rq import Queue, SimpleWorker
from rq.job import Job

from service import journey, queue
from service.extensions import db

from .imap import close_sent_folders
from .jobs import reconcile

log = logging.getLogger(__name__)
RECONCILE_SECONDS = 60


class AppWorker(SimpleWorker):
    """Jobs run in this process, so one SMTP connection (and DB pool) serves job after job.

    RQ's forking Worker would open a fresh SMTP session per job in a throw-away child.
    Jobs here are short and bounded by socket timeouts below the job timeout.
    """

    def perform_job(self, job: Job, job_queue: Queue) -> bool:
        # RQ's own lines about the job (its traceback, "Job OK") carry the message's id too.
        with journey(_journey_of(job)):
            return super().perform_job(job, job_queue)

    def run_maintenance_tasks(self):
        super().run_maintenance_tasks()
        _reconcile()

    def teardown(self):
        super().teardown()
        close_sent_folders()  # a clean LOGOUT, rather than the server timing out a vanished client


def _journey_of(job: Job) -> str:
    """`in-12` → `in#12`, `out-34-1767225600` → `out#34`: service.queue names each job after its message or
    row, so the id is known without unpickling the job."""
    kind, _, rest = job.id.partition("-")
    number = rest.split("-")[0]
    return f"{kind}#{number}" if kind in ("in", "out") and number.isdigit() else ""


def _reconcile() -> None:
    try:
        log.info("reconcile: %s", reconcile())
    except Exception:  # a failed pass is logged; the next one runs a minute later
        log.exception("reconcile failed")
        db.session.rollback()


def run(app: Flask, burst: bool = False) -> bool:
    """Work the queue (forever, or until empty with `burst`); returns whether any job ran."""
    with app.app_context():
        redis = queue.connection()
        worker = AppWorker(
            [queue.queue(redis)], connection=redis,
            maintenance_interval=RECONCILE_SECONDS, worker_ttl=RECONCILE_SECONDS + 10,
        )
        _reconcile()
        return worker.work(burst=burst, with_scheduler=True, logging_level="INFO")

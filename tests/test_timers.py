"""Timers on time: a follow-up due at T goes within the scheduler's tick of T, once, never a minute late."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

from sqlalchemy import select, update

from service.extensions import db
from service.models import Outbound, Step, utcnow
from service.queue import queue_send
from tests.test_fault_drills import _processed, env_for, kill_hard, start_worker
from tests.test_sending import ask, rows
from tests.world import parse


def _worker_ready(world, timeout: float = 60) -> None:
    """Wait until a worker has registered with Redis (it has started its scheduler too)."""
    from rq import Worker

    from service import queue

    deadline = time.monotonic() + timeout
    with world.app_context():
        while not Worker.all(connection=queue.connection()) and time.monotonic() < deadline:
            time.sleep(0.1)


def test_twenty_follow_ups_at_fractional_seconds_each_go_within_two_seconds_once(world, settings, sink):
    with world.app_context():  # follow-ups an hour out, so none goes before the test sets its time
        db.session.execute(update(Step).where(Step.position == 1).values(after="1h"))
        db.session.commit()
    ask(world, *(f"t{n:02d}@prospect.example" for n in range(20)))
    _processed(world)
    worker = start_worker(env_for(settings))
    try:
        _worker_ready(world)
        deadline = time.monotonic() + 60  # the magnets are out and their follow-ups planned (an hour away)
        while len(rows(world, kind="followup", state="pending")) < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        with world.app_context():
            base = utcnow() + timedelta(seconds=4)
            for n, row in enumerate(db.session.scalars(select(Outbound).where(Outbound.kind == "followup",
                                                                              Outbound.step_position == 1))):
                # .137 s apart: every due time has a fraction, the case RQ's whole-second schedule gets wrong
                db.session.execute(update(Outbound).where(Outbound.id == row.id)
                                   .values(due_at=base + timedelta(seconds=n * 0.137)))
            db.session.commit()
            for row in db.session.scalars(select(Outbound).where(Outbound.kind == "followup")):
                queue_send(row)
        deadline = time.monotonic() + 60
        while len(rows(world, kind="followup", state="sent", step_position=1)) < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        kill_hard(worker)
    sent = rows(world, kind="followup", state="sent", step_position=1)
    assert len(sent) == 20
    late = sorted((r.sent_at - r.due_at).total_seconds() for r in sent)
    assert late[0] >= 0 and late[-1] < 2, late
    counts = Counter(parse(m.data)["Message-ID"] for m in sink.messages)
    assert max(counts.values()) == 1

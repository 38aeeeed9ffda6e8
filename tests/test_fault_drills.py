"""Fault drills on real servers: a killed worker, a flushed or restarted Redis. Nothing lost, nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from sqlalchemy import select

from service import ROOT
from tests.test_sending import ask, rows
from tests.world import parse, run_worker, scalar


def env_for(settings: dict, **extra) -> dict:
    """The environment a real `flask --app wsgi worker` process needs to join this test's world."""
    env = dict(os.environ, FT_DOTENV="/nonexistent", FT_INSTANCE=settings["INSTANCE_PATH"])
    env.update(
        DATABASE_URL=settings["SQLALCHEMY_DATABASE_URI"], REDIS_URL=settings["REDIS_URL"],
        QUEUE_NAME=settings["QUEUE_NAME"], SMTP_HOST=settings["SMTP_HOST"], SMTP_PORT=str(settings["SMTP_PORT"]),
        SMTP_SECURITY="none", MAIL_FROM=settings["MAIL_FROM"], BASE_URL=settings["BASE_URL"],
        SECRET_KEY=settings["SECRET_KEY"], SEND_PER_MINUTE=str(settings["SEND_PER_MINUTE"]),
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


_started: list[subprocess.Popen] = []


def start_worker(env: dict, *args: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", *args], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    _started.append(process)
    return process


def kill_hard(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # the worker and its scheduler, no goodbyes
    process.wait(10)


def message_ids(sink) -> Counter:
    return Counter(parse(m.data)["Message-ID"] for m in sink.messages)


def _processed(app) -> None:
    """Classify the stored requests without sending: run only the intake jobs (sends stay queued)."""
    from service.extensions import db
    from service.models import InboundMessage
    from workers.jobs import process_inbound

    with app.app_context():
        waiting = db.session.scalars(select(InboundMessage.id).where(InboundMessage.processed_at.is_(None))).all()
        db.session.commit()  # hold no lock while the jobs write
        for message_id in waiting:
            process_inbound(message_id)


def test_kill_9_in_the_middle_of_50_sends_sends_nothing_twice(world, settings, sink):
    world.config["REQUEST_CAP_DOMAIN_HOUR"] = 0  # 50 people of one company asking in a minute is this drill
    ask(world, *(f"p{n:02d}@prospect.example" for n in range(50)))
    _processed(world)
    assert scalar(world, "SELECT count(*) FROM outbound WHERE state = 'pending'") == 50
    sink.data_delay = 0.1  # each send takes a moment, so the kill lands mid-batch
    worker = start_worker(env_for(settings))
    try:
        deadline = time.monotonic() + 60
        while len(sink.messages) < 15 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(sink.messages) >= 15, "the worker never got going"
    finally:
        kill_hard(worker)
    sink.data_delay = 0.0
    survivor = start_worker(env_for(settings, STUCK_AFTER_SECONDS=1), "--burst")
    assert survivor.wait(120) == 0
    time.sleep(1.5)
    world.config["STUCK_AFTER_SECONDS"] = 1
    run_worker(world)  # reconcile: anything still `sending` becomes `unknown`
    counts = message_ids(sink)
    assert max(counts.values()) == 1, "a message went out twice"
    magnets = rows(world, kind="magnet")
    states = Counter(r.state for r in magnets)
    assert states["sent"] + states["unknown"] == 50 and states["sending"] == 0
    assert states["unknown"] <= 1
    assert len({m.rcpt_tos[0] for m in sink.messages if "Re: Roadmap" in parse(m.data)["Subject"]}) >= 49


def test_redis_flushall_with_20_follow_ups_scheduled_sends_each_once_on_time(world, sink, redis_server):
    ask(world, *(f"p{n:02d}@prospect.example" for n in range(20)))
    run_worker(world)
    assert len(sink.wait_for(20)) == 20
    assert len(rows(world, kind="followup", state="pending")) == 20
    redis_server.flushall()
    time.sleep(2.2)
    run_worker(world)  # the reconciler finds the due rows in the database
    run_worker(world)
    followups = [m for m in sink.messages if parse(m.data)["Auto-Submitted"] == "auto-generated"]
    assert len(followups) == 20
    assert max(message_ids(sink).values()) == 1
    late = [r.sent_at - r.due_at for r in rows(world, kind="followup", state="sent")]
    assert len(late) == 20 and max(late).total_seconds() < 30


def test_a_redis_restart_mid_run_loses_nothing(world, settings, sink, redis_server):
    worker = start_worker(env_for(settings))
    try:
        ask(world, *(f"a{n}@prospect.example" for n in range(3)))
        sink.wait_for(3, timeout=30)
        redis_server.restart()  # no persistence: every queue and schedule is gone
        time.sleep(1)
        ask(world, *(f"b{n}@prospect.example" for n in range(3)))
        deadline = time.monotonic() + 60
        while worker.poll() is None and len(sink.messages) < 6 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        if worker.poll() is None:
            kill_hard(worker)
    if len(sink.messages) < 6:
        # A worker that died with Redis is restarted by its supervisor; the reconciler catches up.
        assert start_worker(env_for(settings), "--burst").wait(60) == 0
    magnets = [m for m in sink.messages if parse(m.data)["Auto-Submitted"] == "auto-replied"]
    assert sorted(m.rcpt_tos[0] for m in magnets) == sorted(
        [f"a{n}@prospect.example" for n in range(3)] + [f"b{n}@prospect.example" for n in range(3)]
    )
    assert max(message_ids(sink).values()) == 1


@pytest.fixture(autouse=True)
def _no_stray_workers():
    """Only the workers this test started (and their schedulers) are stopped, nobody else's."""
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            kill_hard(process)

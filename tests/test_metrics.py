"""GET /metrics: what the real worker counts, the gauges read at scrape time, who may scrape, multiprocess mode."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from service import ROOT, metrics
from service.extensions import db
from service.models import utcnow
from tests.conftest import DEFAULT_YAML, _load
from tests.test_fault_drills import env_for
from tests.test_sending import ask
from tests.world import mail, run_poller, run_worker


def scrape(app, **environ) -> dict[tuple[str, frozenset], float]:
    response = app.test_client().get("/metrics", environ_base=environ)
    assert response.status_code == 200, response.get_data(as_text=True)
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def moved(before: dict, after: dict, name: str, **labels) -> float:
    return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)


def test_a_request_through_the_real_poller_and_worker_moves_the_counters(imap_settings, dovecot, sink, app):
    _load(app, DEFAULT_YAML.read_text())  # follow-ups days away: this run sends the magnet alone
    before = scrape(app)
    dovecot.append(mail())
    run_poller(app)
    run_worker(app)
    sink.wait_for(1)
    after = scrape(app)
    assert moved(before, after, "followthrough_inbound_messages_total", kind="request") == 1
    assert moved(before, after, "followthrough_sends_total", outcome="sent") == 1
    assert moved(before, after, "followthrough_send_seconds_count") == 1
    assert moved(before, after, "followthrough_send_seconds_bucket", le="+Inf") == 1
    assert value(after, "followthrough_queue_jobs", state="queued") == 0
    assert value(after, "followthrough_queue_jobs", state="scheduled") == 1  # the first follow-up
    assert 0 <= value(after, "followthrough_poller_lag_seconds", mailbox="default", folder="INBOX") < 60
    assert value(after, "followthrough_poller_failing", mailbox="default", folder="INBOX") == 0
    assert value(after, "followthrough_breaker_open") == 0


def test_a_refused_send_counts_its_outcome_and_its_retry(sink, app):
    _load(app, DEFAULT_YAML.read_text())
    before = scrape(app)
    sink.fail_next(1)  # 451: try again later
    ask(app, "bob@prospect.example")
    run_worker(app)
    after = scrape(app)
    assert moved(before, after, "followthrough_sends_total", outcome="retry") == 1
    assert moved(before, after, "followthrough_retries_total", job="send") == 1
    assert moved(before, after, "followthrough_sends_total", outcome="sent") == 0
    assert moved(before, after, "followthrough_send_seconds_count") == 1  # SMTP's time, refused or not


def test_the_reconciler_counts_only_work_whose_job_redis_lost(app, redis_server):
    from workers.jobs import reconcile

    _load(app, DEFAULT_YAML.read_text())
    ask(app, "bob@prospect.example")
    before = scrape(app)
    with app.app_context():
        reconcile()  # its job is still queued: nothing caught
    assert moved(before, scrape(app), "followthrough_reconciler_catches_total", what="inbound") == 0
    redis_server.flushall()
    with app.app_context():
        reconcile()
        reconcile()  # queued again by the first pass
    assert moved(before, scrape(app), "followthrough_reconciler_catches_total", what="inbound") == 1


def test_the_queue_gauges_count_waiting_and_scheduled_jobs(app):
    from service import queue

    with app.app_context():
        queue.enqueue("workers.jobs.send", 1, job_id="out-1-1")
        queue.enqueue("workers.jobs.send", 2, job_id="out-2-2", at=utcnow() + timedelta(hours=1))
    samples = scrape(app)
    assert value(samples, "followthrough_queue_jobs", state="queued") == 1
    assert value(samples, "followthrough_queue_jobs", state="scheduled") == 1


def test_the_breaker_gauge_opens_with_the_breaker(make_app):
    from service import contacts

    app = make_app(BREAKER_MIN_SENDS=0)
    assert value(scrape(app), "followthrough_breaker_open") == 0
    with app.app_context():
        contacts.record(db.session, None, "bounce_hard", "550 5.1.1 user unknown")
        db.session.commit()
    assert value(scrape(app), "followthrough_breaker_open") == 1


def test_with_a_token_set_only_its_bearer_may_scrape(make_app):
    client = make_app(METRICS_TOKEN="s3cret-scrape").test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    remote = {"REMOTE_ADDR": "203.0.113.9"}
    granted = client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"}, environ_base=remote)
    assert granted.status_code == 200 and b"followthrough_sends_total" in granted.data


def test_without_a_token_only_this_machine_may_scrape(make_app):
    client = make_app().test_client()
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403
    # A proxy on this machine relays the world from the loopback: what it relays is refused too.
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
    proxied = make_app(TRUSTED_PROXIES=1).test_client()
    assert proxied.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403


def test_in_multiprocess_mode_the_web_reads_what_a_worker_process_counted(app, settings, sink, tmp_path, monkeypatch):
    folder = tmp_path / "metrics"
    metrics.clear_folder(str(folder))
    _load(app, DEFAULT_YAML.read_text())
    ask(app, "bob@prospect.example")
    worker = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--burst"], cwd=ROOT, capture_output=True,
        env=env_for(settings, PROMETHEUS_MULTIPROC_DIR=folder), text=True, timeout=120,
    )
    assert worker.returncode == 0, worker.stderr
    sink.wait_for(1)
    assert list(folder.glob("counter_*.db")), "the worker process kept its counters to itself"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    samples = scrape(app)
    assert value(samples, "followthrough_inbound_messages_total", kind="request") == 1
    assert value(samples, "followthrough_sends_total", outcome="sent") == 1
    assert value(samples, "followthrough_send_seconds_count") == 1
    assert value(samples, "followthrough_queue_jobs", state="scheduled") == 1  # and the live gauges beside them


def test_a_new_run_starts_from_an_empty_multiprocess_folder(tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_4242.db").write_bytes(b"old run")
    (folder / "README").write_text("not ours")
    metrics.clear_folder(str(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["README"]

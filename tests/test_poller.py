"""The poller against a real Dovecot: security modes, IDLE, restarts, SIGTERM, and the Maildir default."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from service import ROOT
from tests.world import mail, parse, run_poller, run_worker, scalar
from workers import poller


def _count(app) -> int:
    return scalar(app, "SELECT count(*) FROM inbound_message")


def _kind(app, raw: bytes) -> str | None:
    """What the ledger says a message in the sink was (magnet, followup), found by its Message-ID."""
    message_id = parse(raw)["Message-ID"].strip("<>")
    return scalar(app, "SELECT kind FROM outbound WHERE message_id = :m", m=message_id)


def _wait(predicate, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("security", ["ssl", "starttls", "none"])
def test_it_connects_with_each_imap_security_mode(imap_settings, make_app, dovecot, security):
    port = dovecot.tls_port if security == "ssl" else dovecot.port
    app = make_app(IMAP_SECURITY=security, IMAP_PORT=port)
    dovecot.append(mail())
    run_poller(app)
    assert _count(app) == 1


def test_a_bad_password_is_recorded_as_a_visible_error(imap_settings, world):
    world.config["IMAP_PASSWORD"] = "wrong"
    with pytest.raises(Exception, match="(?i)auth"):
        run_poller(world)
    assert "auth" in scalar(world, "SELECT last_error FROM mailbox_state").lower()


def test_it_never_sets_seen_and_marks_processed_mail_with_a_keyword(imap_settings, dovecot, sink, world):
    dovecot.append(mail())
    run_poller(world)
    run_worker(world)
    sink.wait_for(1)
    run_poller(world)  # the next pass acknowledges what the worker finished
    [flags] = dovecot.flags("INBOX").values()
    assert "\\Seen" not in flags
    assert "FollowThroughDone" in flags
    assert scalar(world, "SELECT acked FROM inbound_message") in (1, True)


def test_a_message_already_seen_by_the_consultant_is_still_answered(imap_settings, dovecot, sink, world):
    dovecot.append(mail(), flags=("\\Seen",))
    run_poller(world)
    run_worker(world)
    assert sink.wait_for(1)[0].rcpt_tos == ["bob@prospect.example"]


def _poll_in_thread(app):
    from workers import poller

    stopping = threading.Event()
    thread = threading.Thread(target=poller.run, args=(app,), kwargs={"stopping": stopping}, daemon=True)
    thread.start()
    return stopping, thread


def test_idle_wakes_the_poller_and_it_survives_a_dovecot_restart(imap_settings, dovecot, world):
    world.config["IMAP_IDLE_SECONDS"] = 8
    stopping, thread = _poll_in_thread(world)
    try:
        assert _wait(lambda: scalar(world, "SELECT last_poll_at FROM mailbox_state") is not None)
        time.sleep(1)  # now in IDLE (and a late start is covered: IDLE is re-issued within 8 s)
        dovecot.append(mail(sender="first@prospect.example"))
        assert _wait(lambda: _count(world) == 1), "IDLE did not wake the poller"
        dovecot.restart()
        dovecot.append(mail(sender="second@prospect.example"))
        assert _wait(lambda: _count(world) == 2, timeout=30), "the poller did not reconnect"
    finally:
        stopping.set()
        thread.join(15)
    assert not thread.is_alive(), "the poller did not stop when asked"
    assert _count(world) == 2


def test_sigterm_stops_the_poller_cleanly(imap_settings, dovecot, app, tmp_path):
    env = dict(os.environ, FT_DOTENV="/nonexistent", FT_INSTANCE=str(tmp_path / "i"))
    env.update({k: str(v) for k, v in imap_settings.items() if k.startswith("IMAP_") and v is not None})
    env.update(DATABASE_URL=imap_settings["SQLALCHEMY_DATABASE_URI"], REDIS_URL=imap_settings["REDIS_URL"])
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "poll"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    from sqlalchemy import create_engine, text

    engine = create_engine(imap_settings["SQLALCHEMY_DATABASE_URI"])
    polled = "SELECT count(*) FROM mailbox_state WHERE last_poll_at IS NOT NULL"
    with engine.connect() as db_:
        assert _wait(lambda: db_.execute(text(polled)).scalar() > 0, timeout=30), "the poller never got going"
    engine.dispose()
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert "poller stopped" in output


def test_without_imap_or_smtp_it_reads_a_maildir_and_writes_an_outbox(make_app, tmp_path):
    from tests.conftest import DEFAULT_YAML, PDF, _load

    app = make_app(SMTP_HOST=None, MAILDIR=str(tmp_path / "maildir"), OUTBOX=str(tmp_path / "outbox"))
    _load(app, DEFAULT_YAML.read_text())
    run_poller(app)  # creates the Maildir
    (tmp_path / "maildir" / "new" / "request.eml").write_bytes(mail())
    run_poller(app)
    run_poller(app)
    run_worker(app)
    [eml] = list((tmp_path / "outbox").glob("*.eml"))
    reply = parse(eml.read_bytes())
    assert reply["To"] == "Bob Prospect <bob@prospect.example>"
    assert [a.get_content() for a in reply.iter_attachments()] == [PDF]
    assert list((tmp_path / "maildir" / "new").iterdir()) == []
    assert _count(app) == 1


def test_a_silently_dead_connection_in_idle_is_noticed_and_replaced(imap_settings, dovecot, make_app):
    from tests.servers import TcpProxy

    proxy = TcpProxy(dovecot.host, dovecot.port).start()
    app = make_app(
        IMAP_PORT=proxy.port, IMAP_SECURITY="none", IMAP_TIMEOUT=3, IMAP_WATCHDOG_SECONDS=3, IMAP_IDLE_SECONDS=60
    )
    stopping, thread = _poll_in_thread(app)
    try:
        assert _wait(lambda: scalar(app, "SELECT count(*) FROM mailbox_state") == 1)
        time.sleep(1)
        proxy.freeze()  # packets vanish: no FIN, no error, just silence
        dovecot.append(mail(sender="during@prospect.example"))
        assert _wait(lambda: _count(app) == 1, timeout=30), "the poller never noticed the dead connection"
        assert "timed out" in (scalar(app, "SELECT last_error FROM mailbox_state") or "")
    finally:
        stopping.set()
        thread.join(15)
        proxy.stop()


def test_every_pass_counts_for_the_health_check_even_without_mail(imap_settings, world):
    run_poller(world)
    report = world.test_client().get("/healthz").json
    [poller] = report["poller"]
    assert poller["lag_seconds"] is not None and poller["lag_seconds"] < 5


@pytest.fixture(scope="module")
def plain_dovecot():
    """A server that offers neither IDLE nor MOVE (RFC 3501 only), to drill the fallbacks."""
    from tests.servers import Dovecot

    server = Dovecot(capability="IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE UIDPLUS").start()
    yield server
    server.cleanup()


def test_without_idle_or_move_it_polls_and_marks_with_a_keyword(settings, make_app, plain_dovecot):
    app = make_app(
        IMAP_HOST=plain_dovecot.host, IMAP_PORT=plain_dovecot.port, IMAP_SECURITY="none",
        IMAP_USERNAME=plain_dovecot.user, IMAP_PASSWORD=plain_dovecot.password,
        IMAP_IDLE_SECONDS=1, IMAP_DONE_FOLDER="Processed",
    )
    stopping, thread = _poll_in_thread(app)
    try:
        assert _wait(lambda: scalar(app, "SELECT count(*) FROM mailbox_state") == 1)
        plain_dovecot.append(mail(subject="hello", body="just saying hi", to="ken@acumen.example"))
        assert _wait(lambda: _count(app) == 1), "polling without IDLE did not pick the message up"
        run_worker(app)
        assert _wait(lambda: "FollowThroughDone" in next(iter(plain_dovecot.flags("INBOX").values()), ()))
    finally:
        stopping.set()
        thread.join(15)
    assert "Processed" not in plain_dovecot.folders()


def test_two_different_files_with_the_same_name_are_both_read(make_app, tmp_path):
    app = make_app(MAILDIR=str(tmp_path / "maildir"))
    run_poller(app)
    for body in ("first", "second"):
        (tmp_path / "maildir" / "new" / "request.eml").write_bytes(mail(body=f"{body}: send me the roadmap"))
        run_poller(app)
    assert _count(app) == 2
    assert len(list((tmp_path / "maildir" / "cur").iterdir())) == 2


def test_a_rescan_cut_short_stays_a_rescan(imap_settings, dovecot, sink, world, monkeypatch):
    from service import intake

    request = mail()
    dovecot.append(request)
    run_poller(world)
    run_worker(world)
    sink.wait_for(1)
    dovecot.recreate_folder("INBOX")
    dovecot.append(mail(sender="dana@prospect.example"))
    dovecot.append(request)
    world.config["IMAP_BATCH"] = 1
    real_store, calls = intake.store, []

    def dies_on_the_first(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("connection dropped mid-rescan")
        return real_store(*args, **kwargs)

    monkeypatch.setattr(intake, "store", dies_on_the_first)
    with pytest.raises(ConnectionError):
        run_poller(world)
    monkeypatch.setattr(intake, "store", real_store)
    run_poller(world)
    run_worker(world)
    sink.wait_for(2)
    time.sleep(0.5)
    # Magnets only: bob's first follow-up (due 2 s after his magnet) may go out meanwhile on a slow run.
    magnets = [m.rcpt_tos[0] for m in sink.messages if _kind(world, m.data) == "magnet"]
    assert sorted(magnets) == ["bob@prospect.example", "dana@prospect.example"]
    assert _count(world) == 2  # bob's request came back under a new UID and was recognised


def test_mail_that_arrives_during_a_pass_is_fetched_before_idle(imap_settings, dovecot, world, monkeypatch):
    world.config["IMAP_IDLE_SECONDS"] = 600
    dovecot.append(mail(sender="first@prospect.example"))
    real_fetch, appended = poller._Folder._fetch_store, threading.Event()

    def a_message_arrives_meanwhile(folder, *args, **kwargs):
        if not appended.is_set():  # the server announces it in this FETCH's responses, which IDLE never repeats
            dovecot.append(mail(sender="during@prospect.example"))
            # Another session takes \Recent: else Dovecot alone would still wake IDLE with a late `* n RECENT`,
            # which IMAP4rev2 servers (RFC 9051 dropped \Recent) and Gmail never send.
            with dovecot.client() as other:
                other.select_folder("INBOX")
            appended.set()
        return real_fetch(folder, *args, **kwargs)

    monkeypatch.setattr(poller._Folder, "_fetch_store", a_message_arrives_meanwhile)
    stopping, thread = _poll_in_thread(world)
    try:
        assert _wait(appended.is_set), "the first pass never fetched"
        # 20 s is generous for a slow machine, and far short of the 600 s before IDLE is re-issued.
        assert _wait(lambda: _count(world) == 2, timeout=20), "mail that came during the pass waited for IDLE"
    finally:
        stopping.set()
        thread.join(15)

"""The poller reads the consultant's Sent folder too: stored like INBOX mail, never marked or moved. And the
worker's copies of what it sends go into Sent over one kept IMAP session, which survives being dropped."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from service import connections
from service.extensions import db
from tests.conftest import DEFAULT_YAML, _load
from tests.servers import Dovecot, wait_until
from tests.test_poller import _wait
from tests.test_sending import ask
from tests.world import mail, parse, run_poller, run_worker, scalar
from workers.imap import close_sent_folders, copy_to_sent

FOLDERS = ("INBOX", "Sent", "Sent Items", "Processed")
NO_IDLE_NO_MOVE = "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE UIDPLUS"


def _by_hand(subject: str = "Re: your roadmap", to: str = "Bob Prospect <bob@prospect.example>") -> bytes:
    """What the consultant writes personally, from their own mail client."""
    return mail(subject=subject, body="Happy to talk it through on Thursday. Ken", to=to,
                sender="Ken Thoreson <ken@acumen.example>")


@pytest.fixture(scope="module")
def sent_dovecot():
    """A Dovecot whose "Sent" folder carries the \\Sent special-use flag (RFC 6154), like most real servers."""
    server = Dovecot(sent_folder="Sent").start()
    yield server
    server.cleanup()


def _empty(server: Dovecot) -> None:
    with server.client() as client:
        for folder in FOLDERS:
            if folder == "INBOX" or client.folder_exists(folder):
                client.select_folder(folder)
                if uids := client.search(["ALL"]):
                    client.delete_messages(uids)
                    client.expunge()


def _point_at(settings: dict, server: Dovecot, security: str = "starttls") -> dict:
    settings.update(
        IMAP_HOST=server.host, IMAP_PORT=server.port, IMAP_SECURITY=security, IMAP_USERNAME=server.user,
        IMAP_PASSWORD=server.password, IMAP_CAFILE=server.cafile, IMAP_FOLDER="INBOX",
    )
    return settings


@pytest.fixture
def sent_settings(settings, sent_dovecot):
    """Settings for the Dovecot with a flagged Sent folder; every folder starts empty."""
    _empty(sent_dovecot)
    yield _point_at(settings, sent_dovecot)
    _empty(sent_dovecot)


def _rows(app) -> list[tuple]:
    with app.app_context():
        query = text("SELECT folder_role, state, uid, mailbox, acked FROM inbound_message ORDER BY id")
        return [tuple(row) for row in db.session.execute(query)]


def _mailbox(server: Dovecot, folder: str) -> str:
    return f"imap://{server.user}@{server.host}/{folder}"


def test_a_message_sent_after_first_connect_is_stored_as_sent(sent_settings, sent_dovecot, make_app):
    app = make_app()
    run_poller(app)  # first connect: both folders empty
    uid = sent_dovecot.append(_by_hand(), "Sent")
    run_poller(app)
    [(role, state, stored_uid, mailbox, _)] = _rows(app)
    assert (role, state, stored_uid, mailbox) == ("sent", "new", uid, _mailbox(sent_dovecot, "Sent"))
    mailboxes = "SELECT count(*) FROM mailbox_state WHERE last_poll_at IS NOT NULL"
    assert scalar(app, mailboxes) == 2  # INBOX and Sent each keep their own watermark


def test_inbox_mail_is_still_stored_as_inbox_mail_under_its_own_name(sent_settings, sent_dovecot, make_app):
    app = make_app()
    sent_dovecot.append(mail(), "INBOX")
    sent_dovecot.append(_by_hand(), "Sent")
    run_poller(app)
    assert sorted((role, mailbox) for role, _, _, mailbox, _ in _rows(app)) == [
        ("inbox", _mailbox(sent_dovecot, "INBOX")), ("sent", _mailbox(sent_dovecot, "Sent")),
    ]


def test_the_configured_sent_folder_wins_over_the_flagged_one(sent_settings, sent_dovecot, make_app):
    app = make_app(IMAP_SENT_FOLDER="Sent Items")
    sent_dovecot.create_folder("Sent Items")
    run_poller(app)
    sent_dovecot.append(_by_hand(subject="flagged"), "Sent")
    uid = sent_dovecot.append(_by_hand(subject="configured"), "Sent Items")
    run_poller(app)
    assert [(role, stored_uid, mailbox) for role, _, stored_uid, mailbox, _ in _rows(app)] == [
        ("sent", uid, _mailbox(sent_dovecot, "Sent Items")),
    ]


def test_sent_history_before_first_connect_is_never_fetched(sent_settings, sent_dovecot, make_app):
    app = make_app(IMAP_BATCH=1)  # one message per round trip: the watermark moves batch by batch
    now = datetime.now(UTC)
    old, two_days, recent = (
        sent_dovecot.append(_by_hand(subject=f"{hours} hours ago"), "Sent", msg_time=now - timedelta(hours=hours))
        for hours in (720, 48, 1)
    )
    run_poller(app)
    run_poller(app)  # nothing is stored twice
    # History is not even downloaded: only mail from the backlog window on is read (and judged by it).
    assert [(role, state, uid) for role, state, uid, _, _ in _rows(app)] == [("sent", "new", recent)]


@pytest.mark.parametrize("done_folder", [None, "Processed"])
def test_nothing_in_sent_is_ever_flagged_or_moved(sent_settings, sent_dovecot, make_app, done_folder):
    app = make_app(IMAP_DONE_FOLDER=done_folder)
    sent_dovecot.create_folder("Processed")
    sent_dovecot.append(mail(), "INBOX")
    uid = sent_dovecot.append(_by_hand(), "Sent", flags=("\\Seen",))
    run_poller(app)
    with app.app_context():  # as if the worker had finished both: the next pass acknowledges what is done
        db.session.execute(text("UPDATE inbound_message SET state = 'processed'"))
        db.session.commit()
    run_poller(app)
    [sent_flags] = sent_dovecot.flags("Sent").values()
    assert list(sent_dovecot.flags("Sent")) == [uid]
    assert sent_flags - {"\\Recent"} == {"\\Seen"}
    assert [(role, acked) for role, _, _, _, acked in _rows(app)] == [("inbox", True), ("sent", False)]
    inbox_acked = sent_dovecot.messages("Processed") if done_folder else sent_dovecot.flags("INBOX").values()
    assert len(inbox_acked) == 1  # the INBOX message was acknowledged in the same pass
    assert done_folder or "FollowThroughDone" in next(iter(sent_dovecot.flags("INBOX").values()))


def test_a_recreated_sent_folder_is_rescanned_without_storing_twice(sent_settings, sent_dovecot, make_app):
    app = make_app()
    run_poller(app)
    first = _by_hand(subject="first")
    sent_dovecot.append(first, "Sent")
    run_poller(app)
    sent_dovecot.recreate_folder("Sent")  # new UIDVALIDITY: the old UIDs mean nothing
    sent_dovecot.append(first, "Sent")
    second = sent_dovecot.append(_by_hand(subject="second"), "Sent")
    run_poller(app)
    rows = _rows(app)
    assert len(rows) == 2
    assert rows[1][:3] == ("sent", "new", second)


def test_a_missing_sent_folder_is_reported_and_inbox_is_still_read(sent_settings, sent_dovecot, make_app, caplog):
    app = make_app(IMAP_SENT_FOLDER="No Such Folder")
    sent_dovecot.append(mail(), "INBOX")
    with caplog.at_level(logging.WARNING, logger="workers.poller"):
        run_poller(app)
    assert [role for role, *_ in _rows(app)] == ["inbox"]
    [line] = [r.getMessage() for r in caplog.records if "No Such Folder" in r.getMessage()]
    assert "does not exist" in line
    error = "SELECT last_error FROM mailbox_state WHERE mailbox = :name"
    assert "does not exist" in scalar(app, error, name=_mailbox(sent_dovecot, "No Such Folder"))


def test_without_a_flagged_or_configured_folder_sent_is_not_watched(imap_settings, dovecot, make_app, caplog):
    app = make_app()
    dovecot.create_folder("Sent")  # a folder merely named Sent, with no \Sent flag, is not guessed at
    uid = dovecot.append(_by_hand(), "Sent")
    try:
        with caplog.at_level(logging.INFO, logger="workers.poller"):
            run_poller(app)
    finally:
        with dovecot.client() as client:  # this Dovecot is shared by the whole session
            client.select_folder("Sent")
            client.delete_messages([uid])
            client.expunge()
    assert _rows(app) == []
    assert scalar(app, "SELECT count(*) FROM mailbox_state") == 1
    assert "Sent is not watched" in caplog.text


def _poll_in_thread(app) -> tuple[threading.Event, threading.Thread]:
    from workers import poller

    stopping = threading.Event()
    thread = threading.Thread(target=poller.run, args=(app,), kwargs={"stopping": stopping}, daemon=True)
    thread.start()
    return stopping, thread


def _sent_is_read_while_waiting(app, server: Dovecot) -> None:
    stopping, thread = _poll_in_thread(app)
    try:
        polled = "SELECT count(*) FROM mailbox_state WHERE last_poll_at IS NOT NULL"
        assert _wait(lambda: scalar(app, polled) == 2, timeout=30)
        time.sleep(0.5)  # now waiting on INBOX, which hears nothing of Sent
        server.append(_by_hand(), "Sent")
        assert _wait(lambda: len(_rows(app)) == 1, timeout=30), "the wait did not end in time to read Sent"
    finally:
        stopping.set()
        thread.join(15)
    assert not thread.is_alive(), "the poller did not stop when asked"
    assert _rows(app)[0][0] == "sent"


def test_idle_on_inbox_ends_in_time_to_read_sent(sent_settings, sent_dovecot, make_app):
    # IDLE alone would last the whole IMAP_IDLE_SECONDS (the watchdog too: 5 min), far past the bound.
    app = make_app(IMAP_IDLE_SECONDS=600, IMAP_SENT_POLL_SECONDS=2)
    _sent_is_read_while_waiting(app, sent_dovecot)


@pytest.fixture(scope="module")
def plain_sent_dovecot():
    """RFC 3501 only (no IDLE, no MOVE), with a flagged Sent folder."""
    server = Dovecot(capability=NO_IDLE_NO_MOVE, sent_folder="Sent").start()
    yield server
    server.cleanup()


def test_without_idle_or_move_sent_is_still_read(settings, plain_sent_dovecot, make_app):
    _empty(plain_sent_dovecot)
    _point_at(settings, plain_sent_dovecot, security="none")
    app = make_app(IMAP_IDLE_SECONDS=600, IMAP_SENT_POLL_SECONDS=1, IMAP_DONE_FOLDER="Processed")
    _sent_is_read_while_waiting(app, plain_sent_dovecot)


def test_a_sent_folder_that_fails_mid_run_never_stops_inbox(sent_settings, sent_dovecot, make_app, caplog):
    from workers.poller import ImapMailbox

    app = make_app(IMAP_SENT_FOLDER="Sent Items")
    sent_dovecot.create_folder("Sent Items")
    sent_dovecot.append(mail(), "INBOX")
    with app.app_context():
        box = ImapMailbox(app.config)
        box.connect()
        try:
            with sent_dovecot.client() as client:  # gone between connect and poll: EXAMINE fails
                client.delete_folder("Sent Items")
            with caplog.at_level(logging.ERROR, logger="workers.poller"):
                assert box.poll_once() is True
        finally:
            box.close()
    assert [role for role, *_ in _rows(app)] == ["inbox"]
    assert any("INBOX is still read" in r.getMessage() for r in caplog.records)
    error = "SELECT last_error FROM mailbox_state WHERE mailbox = :name"
    assert scalar(app, error, name=_mailbox(sent_dovecot, "Sent Items"))


@pytest.fixture
def imap_logins(monkeypatch) -> list[str]:
    """Every IMAP sign-in from now on, by the mailbox it was for."""
    logins, sign_in = [], connections.imap

    def counted(settings: dict):
        logins.append(settings.get("MAILBOX"))
        return sign_in(settings)

    monkeypatch.setattr(connections, "imap", counted)
    return logins


def _subjects(server: Dovecot, folder: str = "Sent") -> list[str]:
    return [parse(raw)["Subject"] for raw in server.messages(folder)]


def test_copies_to_sent_share_one_session_which_comes_back_after_the_server_drops_it(
    sent_settings, sent_dovecot, make_app, imap_logins,
):
    app = make_app(IMAP_SENT_FOLDER="Sent")
    with app.app_context():
        try:
            assert all(copy_to_sent(app.config, _by_hand(subject=f"copy {n}")) for n in range(3))
            assert len(imap_logins) == 1
            sent_dovecot.kick()  # the server ends the session (as an idle timeout or a restart would)
            assert copy_to_sent(app.config, _by_hand(subject="after the kick"))
            assert copy_to_sent(app.config, _by_hand(subject="and after that"))
            assert len(imap_logins) == 2  # one new session, kept again
        finally:
            close_sent_folders()
    assert _subjects(sent_dovecot) == ["copy 0", "copy 1", "copy 2", "after the kick", "and after that"]


def test_a_copy_that_cannot_be_made_is_logged_and_the_next_one_still_goes(
    sent_settings, sent_dovecot, make_app, imap_logins, caplog,
):
    app = make_app(IMAP_SENT_FOLDER="Sent")
    with app.app_context():
        try:
            assert copy_to_sent(app.config, _by_hand(subject="first"))
            with caplog.at_level(logging.ERROR, logger="workers.imap"):
                assert copy_to_sent({**app.config, "IMAP_SENT_FOLDER": "No Such Folder"}, _by_hand()) is False
            assert "could not copy a sent message to No Such Folder" in caplog.text
            assert copy_to_sent(app.config, _by_hand(subject="second"))
        finally:
            close_sent_folders()
    assert _subjects(sent_dovecot) == ["first", "second"]


def test_the_worker_copies_a_whole_batch_over_one_imap_login_and_logs_out_when_it_stops(
    sent_settings, sent_dovecot, make_app, sink, imap_logins,
):
    app = make_app(IMAP_SENT_FOLDER="Sent")
    _load(app, DEFAULT_YAML.read_text())
    ask(app, *(f"p{n}@prospect.example" for n in range(4)))
    run_worker(app)
    assert len(sink.wait_for(4)) == 4
    assert imap_logins == ["default"]
    assert sorted(_subjects(sent_dovecot)) == sorted(parse(m.data)["Subject"] for m in sink.messages)
    assert wait_until(lambda: sent_dovecot.sessions() == 0, timeout=30), "the worker left its IMAP session open"

"""Tests of the real-server helpers in tests/servers.py themselves."""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import redis
from imapclient import IMAPClient
from imapclient.exceptions import LoginError
from sqlalchemy import create_engine, text

from tests.servers import (
    Dovecot,
    RedisServer,
    SmtpSink,
    _live_group_members,
    _pg_connect,
    free_port,
    postgres_available,
    postgres_database,
)

RAW_MESSAGE = (
    b"From: Lead <lead@example.org>\r\n"
    b"To: consultant@example.com\r\n"
    b"Subject: =?utf-8?q?Caf=C3=A9_checklist?=\r\n"
    b"Message-ID: <roundtrip@example.org>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Hello \xc3\xa9 8-bit body\r\n"
    b".leading dot\r\n"
    b"trailing spaces   \r\n"
)


def _folder() -> str:
    return f"T{uuid.uuid4().hex[:8]}"


def _idle_session_ended(client: IMAPClient) -> bool:
    """True when an IDLE-ing client got ``* BYE`` or lost its connection."""
    try:
        responses = client.idle_check(timeout=2)
    except (OSError, IMAPClient.AbortError):
        return True
    return any(response[0] == b"BYE" for response in responses)


def _group_alive(pgid: int) -> bool:
    return bool(_live_group_members(pgid))


# --------------------------------------------------------------------------- Dovecot


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot({"consultant": "secret", "other": "pw2"}, idle_notify_interval=1)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def test_dovecot_plain_login_offers_starttls(dovecot: Dovecot) -> None:
    client = IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=5)
    try:
        assert b"STARTTLS" in client.capabilities()
        assert not isinstance(client.socket(), ssl.SSLSocket)
        client.login("consultant", "secret")
        assert client.select_folder("INBOX")[b"UIDVALIDITY"] > 0
    finally:
        client.logout()


def test_dovecot_wrong_password_is_refused(dovecot: Dovecot) -> None:
    client = IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=5)
    try:
        with pytest.raises(LoginError):
            client.login("consultant", "wrong")
    finally:
        client.shutdown()


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_dovecot_tls_login_verifies_certificate(dovecot: Dovecot, security: str) -> None:
    client = dovecot.connect(security=security)  # verifying context with the generated CA
    try:
        sock = client.socket()
        assert isinstance(sock, ssl.SSLSocket)
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        peer = sock.getpeercert()
        assert ("IP Address", "127.0.0.1") in peer["subjectAltName"]
        assert client.folder_exists("INBOX")
    finally:
        client.logout()


def test_dovecot_certificate_is_rejected_without_the_ca(dovecot: Dovecot) -> None:
    # Proves the handshake really verifies: the system trust store does not know our CA.
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(
            dovecot.host,
            dovecot.tls_port,
            ssl=True,
            ssl_context=ssl.create_default_context(),
            timeout=5,
        )
    unverified = IMAPClient(
        dovecot.host,
        dovecot.tls_port,
        ssl=True,
        ssl_context=dovecot.ssl_context(verify=False),
        timeout=5,
    )
    try:
        assert isinstance(unverified.socket(), ssl.SSLSocket)
        unverified.login(dovecot.user, dovecot.password)
    finally:
        unverified.logout()


def test_dovecot_append_fetch_round_trips_bytes(dovecot: Dovecot) -> None:
    folder = _folder()
    when = datetime(2024, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    uid = dovecot.append(RAW_MESSAGE, folder, flags=["\\Seen", "$Replied"], msg_time=when)
    assert uid == 1
    assert folder in dovecot.folders()
    assert dovecot.messages(folder) == [RAW_MESSAGE]
    assert {"\\Seen", "$Replied"} <= dovecot.flags(folder)[uid]
    with dovecot.client() as client:
        client.select_folder(folder, readonly=True)
        internaldate = client.fetch([uid], ["INTERNALDATE"])[uid][b"INTERNALDATE"]
    assert internaldate.replace(tzinfo=None) == when.astimezone().replace(tzinfo=None)


def test_dovecot_users_have_separate_mailboxes(dovecot: Dovecot) -> None:
    folder = _folder()
    dovecot.append(RAW_MESSAGE, folder, user="other")
    assert dovecot.messages(folder, user="other") == [RAW_MESSAGE]
    assert folder not in dovecot.folders()


def test_dovecot_recreate_folder_changes_uidvalidity(dovecot: Dovecot) -> None:
    folder = _folder()
    dovecot.append(RAW_MESSAGE, folder)
    before = dovecot.uidvalidity(folder)
    after = dovecot.recreate_folder(folder)
    assert after != before
    assert dovecot.uidvalidity(folder) == after
    assert dovecot.messages(folder) == []


def test_dovecot_recreate_inbox_changes_uidvalidity(dovecot: Dovecot) -> None:
    dovecot.append(RAW_MESSAGE, user="other")
    assert dovecot.append(RAW_MESSAGE, user="other") == 2
    dovecot.create_folder("Kept", user="other")
    before = dovecot.uidvalidity(user="other")
    idle_client = dovecot.connect("other")
    idle_client.select_folder("INBOX")
    idle_client.idle()

    after = dovecot.recreate_folder("INBOX", user="other")

    assert after != before
    assert dovecot.uidvalidity(user="other") == after
    assert dovecot.messages(user="other") == []
    assert dovecot.append(RAW_MESSAGE, user="other") == 1  # UIDs start over
    assert "Kept" in dovecot.folders(user="other")
    assert _idle_session_ended(idle_client)
    idle_client.shutdown()


def test_dovecot_idle_is_woken_by_append(dovecot: Dovecot) -> None:
    folder = _folder()
    dovecot.create_folder(folder)
    client = dovecot.connect()
    try:
        client.select_folder(folder)
        client.idle()
        started = time.monotonic()
        dovecot.append(RAW_MESSAGE, folder)
        responses: list = []
        while time.monotonic() - started < 5 and not any(r[1:2] == (b"EXISTS",) for r in responses):
            responses += client.idle_check(timeout=0.5)
        client.idle_done()
        assert (1, b"EXISTS") in responses
        assert time.monotonic() - started < 5
    finally:
        client.logout()


def test_dovecot_idle_sends_still_here_keepalives(dovecot: Dovecot) -> None:
    client = dovecot.connect()
    try:
        client.select_folder("INBOX")
        client.idle()
        started = time.monotonic()
        responses: list = []
        while time.monotonic() - started < 4 and (b"OK", b"Still here") not in responses:
            responses += client.idle_check(timeout=0.5)
        client.idle_done()
        assert (b"OK", b"Still here") in responses
    finally:
        client.logout()


def test_dovecot_restart_keeps_mail_and_drops_idle_clients() -> None:
    with Dovecot() as server:
        port, tls_port = server.port, server.tls_port
        server.append(RAW_MESSAGE)
        client = server.connect()
        client.select_folder("INBOX")
        client.idle()
        uidvalidity = server.uidvalidity()

        server.restart()

        assert (server.port, server.tls_port) == (port, tls_port)
        assert _idle_session_ended(client)
        client.shutdown()
        assert server.messages() == [RAW_MESSAGE]
        assert server.uidvalidity() == uidvalidity
        tls_client = server.connect(security="ssl")
        tls_client.logout()


def test_dovecot_stop_leaves_no_processes() -> None:
    server = Dovecot()
    try:
        server.start()
        server.append(RAW_MESSAGE)
        client = server.connect()
        client.select_folder("INBOX")
        client.idle()  # a busy imap process must be cleaned up too
        assert server._process is not None and server._process.process is not None
        pgid = server._process.process.pid
        assert _group_alive(pgid)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1
        assert not _group_alive(pgid)
        with pytest.raises(OSError):
            socket.create_connection((server.host, server.port), timeout=1)
    finally:
        server.cleanup()


def test_dovecot_start_failure_reports_the_log() -> None:
    server = Dovecot()
    try:
        server.start()
        server.stop()
        with socket.socket() as blocker:
            blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            blocker.bind((server.host, server.port))
            blocker.listen()
            with pytest.raises(RuntimeError, match="Address already in use"):
                server.start()
        assert not server.running()
    finally:
        server.cleanup()


# --------------------------------------------------------------------------- SMTP


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    try:
        sink.start()
        yield sink
    finally:
        sink.stop()


def _send(sink: SmtpSink, to: list[str] | None = None, body: bytes = b"Hi\r\n") -> dict:
    message = b"From: desk@example.com\r\nSubject: test\r\n\r\n" + body
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        return client.sendmail("desk@example.com", to or ["lead@example.org"], message)


def test_smtp_sink_captures_message(smtp_sink: SmtpSink) -> None:
    message = b"From: desk@example.com\r\nSubject: caf\xc3\xa9\r\n\r\n.dot\r\nbody\r\n"
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=5) as client:
        client.sendmail("desk@example.com", ["a@example.org", "b@example.org"], message)
    [received] = smtp_sink.wait_for(1)
    assert received.mail_from == "desk@example.com"
    assert received.rcpt_tos == ["a@example.org", "b@example.org"]
    assert received.data == message
    smtp_sink.clear()
    assert smtp_sink.messages == []


def test_smtp_sink_fail_next_fails_exactly_n_sends(smtp_sink: SmtpSink) -> None:
    smtp_sink.fail_next(2)
    for _ in range(2):
        with pytest.raises(smtplib.SMTPDataError) as failure:
            _send(smtp_sink)
        assert failure.value.smtp_code == 451
        assert failure.value.smtp_error == b"4.3.0 Try again later"
    assert _send(smtp_sink) == {}
    assert len(smtp_sink.wait_for(1)) == 1


def test_smtp_sink_fail_next_on_rcpt(smtp_sink: SmtpSink) -> None:
    smtp_sink.fail_next(1, 452, "4.5.3 Too many recipients", command="RCPT")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as failure:
        _send(smtp_sink)
    assert failure.value.recipients == {"lead@example.org": (452, b"4.5.3 Too many recipients")}
    _send(smtp_sink)
    assert len(smtp_sink.wait_for(1)) == 1


def test_smtp_sink_reject_rcpt(smtp_sink: SmtpSink) -> None:
    smtp_sink.reject_rcpt("gone@example.org")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as failure:
        _send(smtp_sink, ["gone@example.org"])
    assert failure.value.recipients == {"gone@example.org": (550, b"5.1.1 User unknown")}
    refused = _send(smtp_sink, ["Gone@example.org", "ok@example.org"])
    assert refused == {"Gone@example.org": (550, b"5.1.1 User unknown")}
    [received] = smtp_sink.wait_for(1)
    assert received.rcpt_tos == ["ok@example.org"]


def test_smtp_sink_hang_makes_clients_time_out(smtp_sink: SmtpSink) -> None:
    smtp_sink.hang = True
    started = time.monotonic()
    # smtplib reports a read timeout as SMTPServerDisconnected("... timed out").
    with pytest.raises((TimeoutError, smtplib.SMTPServerDisconnected), match="timed out"):
        smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=1)
    assert 0.9 < time.monotonic() - started < 3
    smtp_sink.hang = False
    _send(smtp_sink)
    assert len(smtp_sink.wait_for(1)) == 1


def test_smtp_sink_wait_for_times_out(smtp_sink: SmtpSink) -> None:
    with pytest.raises(TimeoutError):
        smtp_sink.wait_for(1, timeout=0.2)


# --------------------------------------------------------------------------- Redis


def test_redis_server_set_get_flush_restart() -> None:
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        client.set("key", b"value")
        assert client.get("key") == b"value"
        server.flushall()
        assert client.get("key") is None

        client.set("key", b"value")
        port = server.port
        server.restart()
        assert server.port == port
        assert client.get("key") is None  # no persistence: a restart loses everything
        client.close()

        assert server._process is not None and server._process.process is not None
        pgid = server._process.process.pid
        server.stop()
        assert not _group_alive(pgid)
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(server.url, socket_connect_timeout=1).ping()


def test_redis_server_start_failure_reports_the_log() -> None:
    with socket.socket() as blocker:
        port = free_port()
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        server = RedisServer(port=port)
        try:
            with pytest.raises(RuntimeError, match="(?i)address already in use"):
                server.start()
        finally:
            server.cleanup()


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL is not reachable")
def test_postgres_database_is_usable_and_dropped() -> None:
    with postgres_database("ft servers-test") as url:
        name = url.rsplit("/", 1)[1]
        assert url.startswith("postgresql+psycopg://postgres@127.0.0.1:5432/ft_servers_test_")
        engine = create_engine(url)
        connection = engine.connect()  # left open on purpose: DROP ... WITH (FORCE)
        connection.execute(text("CREATE TABLE lead (id serial PRIMARY KEY, email text)"))
        connection.execute(text("INSERT INTO lead (email) VALUES ('a@example.org')"))
        connection.commit()
        assert connection.execute(text("SELECT email FROM lead")).scalar_one() == "a@example.org"
    with _pg_connect() as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert exists is None
    connection.invalidate()
    engine.dispose()

"""The poller: stores every new message in the mailbox, then queues it for processing.

It is a loop around `poll_once()`; the loop only waits (IMAP IDLE, or a sleep for
a Maildir) and handles SIGTERM. The database, not `\\Seen`, says what is done.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import signal
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

from flask import Flask
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from imapclient.imapclient import SENT
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from service import intake, journey, mailboxes
from service.extensions import db
from service.mailboxes import MailboxError
from service.models import InboundMessage, MailboxState, utcnow
from service.oauth import OAuthError
from service.queue import queue_inbound

from . import imap

log = logging.getLogger(__name__)
# What a mailbox can throw at its poller; each is recorded and retried with backoff, never a crash loop.
POLL_ERRORS = (IMAPClientError, OSError, ssl.SSLError, ConnectionError, OperationalError, OAuthError, MailboxError)
DONE_STATES = ("processed", "review", "backlog", "quarantined")


def _state(name: str) -> MailboxState:
    state = db.session.scalar(select(MailboxState).where(MailboxState.mailbox == name))
    if state is None:
        # First connect: remember when, so older mail is recorded as backlog, not answered.
        state = MailboxState(mailbox=name, first_connected_at=utcnow())
        db.session.add(state)
        db.session.flush()
    return state


def _is_backlog(state: MailboxState, arrived: datetime | None, hours: int) -> bool:
    return arrived is not None and arrived < state.first_connected_at - timedelta(hours=hours)


def _chunks(items: list, size: int):
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _store_batch(
    name: str, uidvalidity: int, items: list[tuple], settings: dict, rescan: bool, role: str = "inbox"
) -> int:
    """Store (uid, key, raw, arrived) items and advance the watermark in one transaction."""
    state = _state(name)
    stored = []
    for uid, key, raw, arrived in items:
        if not (rescan and intake.stored_before(db.session, name, raw)):
            backlog = _is_backlog(state, arrived, settings["IMAP_BACKLOG_HOURS"])
            row = intake.store(db.session, name, uidvalidity, uid, raw, arrived, backlog, key, role=role,
                               slug=settings["MAILBOX"])
            if row is not None:
                stored.append(row.id)
        if uid is not None:
            state.last_uid = max(state.last_uid, uid)
    db.session.commit()
    for message_id in stored:
        with journey(f"in#{message_id}"):  # the first line of the message's journey
            log.info("stored from %s (%s), queued", settings["MAILBOX"], role)
            queue_inbound(message_id)
    return len(stored)


def _has_older_generation(name: str, uidvalidity: int) -> bool:
    query = select(InboundMessage.id).where(InboundMessage.mailbox == name, InboundMessage.uidvalidity != uidvalidity)
    return db.session.scalar(query.limit(1)) is not None


def _mailbox_key(settings: dict, folder: str) -> str:
    return mailboxes.folder_key(settings, folder)


class _Folder:
    """One folder on one connection, read above its own watermark; `role` says what its mail is."""

    def __init__(self, client: IMAPClient, settings: dict, folder: str, role: str):
        self.client, self.settings, self.folder, self.role = client, settings, folder, role
        self.name = _mailbox_key(settings, folder)
        self.info: dict = {}

    def select(self) -> None:
        # Sent is the consultant's own record: EXAMINE (read-only), so nothing we do can flag or move it.
        self.info = self.client.select_folder(self.folder, readonly=self.role == "sent")

    def poll(self) -> int:
        """Fetch everything above the watermark, asking again until no new UID turns up; returns how many
        messages were newly stored.

        Mail that arrives during a pass is announced (EXISTS) in the replies to our own commands, which
        imaplib keeps aside, and IDLE never repeats it: left there, it would wait a whole IDLE cycle.
        """
        stored = self._catch_up()
        # Once more if mail was announced during the last, empty search; only once, as RFC 3501 §7.3.1
        # lets a server repeat EXISTS unasked.
        if _announced(self.client):
            stored += self._catch_up()
        return stored

    def _catch_up(self) -> int:
        stored = 0
        while True:
            _announced(self.client)  # what was announced before this search, this search sees
            moved, newly = self._pass()
            stored += newly
            if not moved:
                return stored

    def _pass(self) -> tuple[bool, int]:
        """One search and fetch above the watermark: (whether the watermark moved, messages newly stored).

        A UID the server lists but never hands out leaves the watermark where it was, so it ends the catch-up.
        """
        uidvalidity = int(self.info[b"UIDVALIDITY"])
        state = _state(self.name)
        if state.uidvalidity != uidvalidity:
            # RFC 3501 §2.3.1.1: new UIDVALIDITY means old UIDs mean nothing; rescan, dedupe by content.
            if state.uidvalidity:
                log.warning("%s: UIDVALIDITY changed %s → %s; rescanning", self.name, state.uidvalidity, uidvalidity)
            state.uidvalidity, state.last_uid = uidvalidity, 0
        # Asked of the database every pass, so a rescan cut short by a dropped connection stays a rescan.
        rescan = _has_older_generation(self.name, uidvalidity)
        last = state.last_uid
        db.session.commit()
        # RFC 3501 §6.4.8: "n:*" always includes the highest UID, so drop UIDs we have.
        uids = sorted(u for u in self.client.search(["UID", f"{last + 1}:*"]) if u > last)
        if self.role == "sent" and last == 0 and uids:
            uids = self._skip_history(state, uids)
        stored = sum(
            self._fetch_store(chunk, uidvalidity, rescan) for chunk in _chunks(uids, self.settings["IMAP_BATCH"])
        )
        moved = _state(self.name).last_uid > last
        db.session.commit()  # no transaction (or SQLite lock) open while IMAP talks
        return moved, stored

    def _skip_history(self, state: MailboxState, uids: list[int]) -> list[int]:
        """A first look at Sent fetches only what is recent: years of sent mail would be stored as backlog
        and change nothing anyway (the first-connect rule), at the cost of downloading all of it."""
        hours = self.settings["IMAP_BACKLOG_HOURS"]
        since = (state.first_connected_at - timedelta(hours=hours)).date()
        recent = set(self.client.search(["SINCE", since]))
        older = [u for u in uids if u not in recent]
        if older:
            state.last_uid = max(older)
            db.session.commit()
        return [u for u in uids if u in recent]

    def _fetch_store(self, uids: list[int], uidvalidity: int, rescan: bool) -> int:
        # BODY.PEEK[] leaves \Seen alone: the consultant's own read state is theirs.
        data = self.client.fetch(uids, ["BODY.PEEK[]", "INTERNALDATE"])
        items = []
        for uid in uids:
            entry = data.get(uid) or {}
            if b"BODY[]" not in entry:  # an unsolicited FETCH (flags only) was merged in
                entry = self.client.fetch([uid], ["BODY.PEEK[]", "INTERNALDATE"]).get(uid) or {}
            if b"BODY[]" not in entry:
                log.warning("%s: UID %s vanished before it could be fetched", self.name, uid)
                continue
            arrived = entry.get(b"INTERNALDATE")
            arrived = arrived.astimezone(UTC) if arrived and arrived.tzinfo else None
            items.append((uid, None, bytes(entry[b"BODY[]"]), arrived))
        return _store_batch(self.name, uidvalidity, items, self.settings, rescan, self.role)


def _announced(client: IMAPClient) -> bool:
    """Whether the server said EXISTS (new mail) since we last asked, forgetting it.

    imapclient offers no way to read what imaplib set aside, so this reads imaplib's own store.
    """
    return client._imap.untagged_responses.pop("EXISTS", None) is not None


def _flagged_sent(client: IMAPClient) -> str | None:
    """The folder the server flags \\Sent (RFC 6154); never a guess by name, so no stranger's folder is read."""
    return next((name for flags, _, name in client.list_folders() if SENT in flags), None)


class ImapMailbox:
    """INBOX on a connection that IDLEs, and the Sent folder (if any) on a second, read-only one.

    IDLE watches the one selected folder of a connection, so Sent gets its own, and a
    connection is owned by this process only (imapclient is not thread-safe).
    """

    def __init__(self, settings: dict):
        self.settings = settings
        self.client: IMAPClient | None = None
        self.name = _mailbox_key(settings, settings["IMAP_FOLDER"])
        self.inbox: _Folder | None = None
        self.sent: _Folder | None = None
        self.sent_folder: str | None = None
        self.sent_retry_at = 0.0

    @property
    def names(self) -> list[str]:
        return [self.name] + ([self.sent.name] if self.sent else [])

    def connect(self) -> None:
        self.client = imap.connect(self.settings)
        self.inbox = _Folder(self.client, self.settings, self.settings["IMAP_FOLDER"], "inbox")
        self.inbox.select()
        self.sent_folder = self._sent_folder()
        watching = f"; watching {self.sent_folder} read-only" if self.sent_folder else ""
        log.info("connected to %s%s", self.name, watching)

    def _sent_folder(self) -> str | None:
        """IMAP_SENT_FOLDER if it exists, else the folder flagged \\Sent; None (and why, logged) if neither."""
        configured = self.settings.get("IMAP_SENT_FOLDER")
        if not configured:
            found = _flagged_sent(self.client)
            if found is None:
                log.info("%s: Sent is not watched: no folder is flagged \\Sent, IMAP_SENT_FOLDER is unset", self.name)
            return found
        if self.client.folder_exists(configured):
            return configured
        problem = f"IMAP_SENT_FOLDER {configured!r} does not exist: replies sent by hand are not seen"
        log.warning("%s: %s", self.name, problem)
        _record_problem(_mailbox_key(self.settings, configured), problem)
        return None

    def poll_once(self) -> bool:
        """Fetch what is new in INBOX and in Sent; True when something new was stored."""
        # Marking comes first: replies to its commands may announce new mail, and the fetch that asks
        # until nothing new turns up must be the last word before IDLE.
        self.ack()
        return self.inbox.poll() + self._poll_sent() > 0

    def _poll_sent(self) -> int:
        """Sent on its own connection (this one stays in IDLE on INBOX); a Sent failure never stops INBOX."""
        if self.sent_folder is None or time.monotonic() < self.sent_retry_at:
            return 0
        try:
            if self.sent is None:
                self.sent = _Folder(imap.connect(self.settings), self.settings, self.sent_folder, "sent")
            self.sent.select()  # a fresh EXAMINE: this connection never IDLEs, so it must ask what is new
            return self.sent.poll()
        except (IMAPClientError, OSError, ssl.SSLError, ConnectionError) as exc:
            # A provider's connection limit, a dropped link: INBOX goes on; Sent is tried again in 5 minutes.
            log.error("%s: reading %s failed: %s; INBOX is still read", self.name, self.sent_folder, exc)
            db.session.rollback()
            _record_problem(_mailbox_key(self.settings, self.sent_folder), f"{type(exc).__name__}: {exc}")
            self._close_sent()
            self.sent_retry_at = time.monotonic() + 300
            return 0

    def _close_sent(self) -> None:
        if self.sent is not None:
            with contextlib.suppress(Exception):  # the connection is already gone
                self.sent.client.logout()
        self.sent = None

    def ack(self) -> None:
        """Mark processed INBOX mail in the mailbox too (a keyword, or a move); the database stays the record.

        Sent is never marked: it is the consultant's, and it is open read-only anyway.
        """
        uidvalidity = int(self.inbox.info[b"UIDVALIDITY"])
        done = db.session.execute(
            select(InboundMessage.id, InboundMessage.uid).where(
                InboundMessage.mailbox == self.name, InboundMessage.uidvalidity == uidvalidity,
                InboundMessage.acked.is_(False), InboundMessage.state.in_(DONE_STATES),
            ).limit(500)
        ).all()
        db.session.commit()  # no transaction (or SQLite lock) open while IMAP talks
        if not done:
            return
        folder = self.settings.get("IMAP_DONE_FOLDER")
        uids = [uid for _, uid in done]
        if folder and b"MOVE" in self.client.capabilities():
            self.client.move(uids, folder)
        elif b"\\*" in self.inbox.info.get(b"PERMANENTFLAGS", ()):
            self.client.add_flags(uids, [self.settings["IMAP_DONE_KEYWORD"]])
        db.session.execute(
            update(InboundMessage).where(InboundMessage.id.in_([i for i, _ in done])).values(acked=True)
        )
        db.session.commit()

    def wait(self, seconds: float, stopping: threading.Event) -> None:
        """IDLE until the server reports something, the cycle ends, or we are asked to stop."""
        if self.sent_folder is not None:
            # IDLE only hears INBOX: come back in time to see a reply the consultant sent by hand.
            seconds = min(seconds, self.settings["IMAP_SENT_POLL_SECONDS"])
        if b"IDLE" not in self.client.capabilities():
            stopping.wait(min(seconds, 30))
            return
        self.client.idle()
        try:
            self._idle_loop(time.monotonic() + seconds, stopping)
        finally:
            self.client.idle_done()  # bounded by the socket read timeout if the link is dead

    def _idle_loop(self, deadline: float, stopping: threading.Event) -> None:
        heard = time.monotonic()
        while not stopping.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            responses = self.client.idle_check(timeout=5)
            if responses:
                heard = time.monotonic()
            if any(not _is_keepalive(r) for r in responses):
                return
            if not responses and time.monotonic() - started < 1:
                # readable but nothing to read: the server closed the connection (imapclient #565)
                raise ConnectionError("IMAP connection closed during IDLE")
            if time.monotonic() - heard > self.settings["IMAP_WATCHDOG_SECONDS"]:
                # Silence: leave IDLE and let the next command prove the link is alive (or time out).
                return

    def close(self) -> None:
        self._close_sent()
        if self.client is not None:
            with contextlib.suppress(Exception):  # the connection is already gone
                self.client.logout()
        self.client = None


def _is_keepalive(response) -> bool:
    return len(response) >= 2 and response[0] == b"OK"


class MaildirMailbox:
    """The embedded default: a local Maildir in the instance folder (no IMAP server)."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.path = Path(settings["MAILDIR"])
        self.name = mailboxes.state_prefix(settings)
        self.names = [self.name]
        for sub in ("new", "cur", "tmp"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    def connect(self) -> None:
        log.info("reading mail from the Maildir %s", self.path)

    def poll_once(self) -> bool:
        files = sorted((self.path / "new").iterdir(), key=lambda p: p.stat().st_mtime)
        files = [p for p in files if p.is_file() and not p.name.startswith(".")]
        stored = 0
        for chunk in _chunks(files, self.settings["IMAP_BATCH"]):
            raws = [p.read_bytes() for p in chunk]
            # Keyed by name and content: people reuse names like request.eml for different mail.
            keys = [f"{p.name}:{hashlib.sha256(raw).hexdigest()[:16]}" for p, raw in zip(chunk, raws, strict=True)]
            items = [(None, k, raw, _mtime(p)) for p, k, raw in zip(chunk, keys, raws, strict=True)]
            stored += _store_batch(self.name, 0, items, self.settings, rescan=False)
            for p, key in zip(chunk, keys, strict=True):  # stored and committed: out of new/, never overwriting
                p.replace(self.path / "cur" / f"{key.replace(':', '.')}:2,")
        return stored > 0

    def wait(self, seconds: float, stopping: threading.Event) -> None:
        stopping.wait(min(seconds, 2))

    def close(self) -> None:
        pass


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def mailbox_for(settings: dict):
    return ImapMailbox(settings) if settings.get("IMAP_HOST") else MaildirMailbox(settings)


def _polled(names: list[str]) -> None:
    """Every finished pass counts for /healthz, whether or not mail arrived."""
    for name in names:
        _state(name).last_poll_at = utcnow()
    db.session.commit()


def _record_problem(name: str, problem: str) -> None:
    state = _state(name)
    state.last_error = problem[:2000]
    state.last_error_at = utcnow()
    db.session.commit()


def _record_error(name: str, exc: Exception) -> None:
    """Keep the error where /healthz and the dashboard show it; if the database is the problem, log it."""
    try:
        db.session.rollback()
        _record_problem(name, f"{type(exc).__name__}: {exc}")
    except OperationalError:
        db.session.rollback()
        log.error("could not record the mailbox error in the database either")


def run(app: Flask, once: bool = False, stopping: threading.Event | None = None) -> None:
    """Poll every mailbox forever (or each once), reconnecting with backoff; SIGTERM ends it cleanly."""
    stopping = stopping or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.set())
    with app.app_context():
        if once:
            _once(app.config, stopping)
        else:
            _serve(app, stopping)
    log.info("poller stopped (pid %s)", os.getpid())


def _once(settings: dict, stopping: threading.Event) -> None:
    """One pass over each mailbox; a broken one is recorded and the others still polled, then it raises."""
    failures = []
    for slug in mailboxes.slugs(db.session):
        try:
            seen = mailboxes.settings_for(db.session, slug, settings)
            db.session.remove()
            _loop(seen, True, stopping)
        except POLL_ERRORS as exc:
            log.error("mailbox %s was not polled: %s", slug, exc)
            failures.append(exc)
    if failures:
        raise failures[0]


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _serve(app: Flask, stopping: threading.Event) -> None:
    """Serve each mailbox this process can hold, each on its own thread and IMAP connection.

    Every POLL_LEASE_SECONDS / 3 the leases are renewed, a mailbox whose holder stopped renewing
    is taken over, an edited mailbox is restarted and one lost to another process let go.
    """
    holder, seconds = _holder(), app.config["POLL_LEASE_SECONDS"]
    running: dict[str, _Served] = {}
    try:
        while not stopping.is_set():
            try:
                _renew(app, holder, seconds, running)
            except OperationalError as exc:  # the database is away: the threads go on, the leases are asked again
                db.session.rollback()
                log.error("cannot renew the mailbox leases: %s; trying again in %.0fs", exc, seconds / 3)
            db.session.remove()  # no transaction (or SQLite lock) held between renewals
            stopping.wait(seconds / 3)
    finally:
        for served in running.values():
            served.stop()
        try:
            for slug in running:
                mailboxes.let_go(db.session, slug, holder)
            db.session.commit()
        except OperationalError as exc:  # the leases run out by themselves
            log.error("could not hand the mailboxes back: %s", exc)


def _renew(app: Flask, holder: str, seconds: int, running: dict[str, _Served]) -> None:
    """One round: hold what can be held, start what is newly held, stop what was lost or edited."""
    wanted = _versions(app.config)
    for slug in sorted(set(wanted) | set(running)):
        served, version = running.get(slug), wanted.get(slug)
        held = version is not None and mailboxes.hold(db.session, slug, holder, seconds) is not None
        db.session.commit()
        if served is not None and (not held or served.version != version):
            served.stop(), running.pop(slug)
            if not held:
                log.warning("mailbox %s: no longer held by this process (%s)", slug, holder)
        if held and slug not in running:
            log.info("mailbox %s: served by %s", slug, holder)
            running[slug] = _Served.start(app, slug, version)


def _versions(settings: dict) -> dict[str, str]:
    """Each mailbox with its version: a change restarts its thread on the new settings.

    A mailbox that cannot be read (its secrets sealed under another FT_SECRETS_KEY) is still listed:
    its thread says why once and ends, and is started again only when the record changes.
    """
    found = {}
    for slug in mailboxes.slugs(db.session):
        try:
            found[slug] = mailboxes.settings_for(db.session, slug, settings).get("MAILBOX_VERSION", "")
        except MailboxError as exc:
            found[slug] = f"unreadable: {exc}"
    return found


@dataclass
class _Served:
    """One mailbox's polling thread and the event that stops it."""

    thread: threading.Thread
    stopping: threading.Event
    version: str

    @classmethod
    def start(cls, app: Flask, slug: str, version: str) -> _Served:
        own = threading.Event()
        thread = threading.Thread(target=_serve_one, args=(app, slug, own), name=f"poll-{slug}", daemon=True)
        thread.start()
        return cls(thread, own, version)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)


def _serve_one(app: Flask, slug: str, own: threading.Event) -> None:
    with app.app_context():
        try:
            settings = mailboxes.settings_for(db.session, slug, app.config)
        except mailboxes.MailboxError as exc:
            log.error("mailbox %s cannot be polled: %s", slug, exc)
            return
        finally:
            db.session.remove()
        _loop(settings, False, own)  # the process stopping sets `own` too (_serve's finally)


def _loop(settings: dict, once: bool, stopping: threading.Event) -> None:
    box, backoff = None, 1.0
    while not stopping.is_set():
        try:
            if box is None:
                box = mailbox_for(settings)
                box.connect()
            box.poll_once()
            _polled(box.names)
            db.session.remove()  # hold no transaction (or SQLite lock) while waiting
            backoff = 1.0
            if once:
                break
            box.wait(settings["IMAP_IDLE_SECONDS"], stopping)
        except POLL_ERRORS as exc:
            log.error("mailbox %s error: %s; reconnecting in %.0fs", settings["MAILBOX"], exc, backoff)
            _record_error(box.name if box else mailbox_for(settings).name, exc)
            if box is not None:
                box.close()
            box = None
            if once:
                raise
            stopping.wait(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, 300)
    if box is not None:
        box.close()

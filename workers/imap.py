"""IMAP connections for this process: the poller's, and the copy of what we send into Sent."""

from __future__ import annotations

import contextlib
import logging
import os

from flask import current_app
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError

from service import connections

log = logging.getLogger(__name__)

# The session itself is gone (kicked, timed out by the server, cut): a new one may well succeed. A NO or
# BAD answer comes from a live session, and would come again.
_LOST = (IMAPClientAbortError, OSError)


def connect(settings: dict) -> IMAPClient:
    return connections.imap(settings)


class SentFolder:
    """One signed-in IMAP session per worker process and mailbox for the Sent copies, kept across jobs.

    It is not checked (NOOP) before each APPEND: a session that died while idle fails that APPEND,
    which is tried once more on a new one.
    """

    def __init__(self, settings: dict):
        self.settings = settings
        self.client: IMAPClient | None = None

    def append(self, folder: str, raw: bytes) -> None:
        for fresh in (self.client is None, True):
            try:
                self._session().append(folder, raw, flags=[b"\\Seen"])
                return
            except _LOST:
                self.close()
                if fresh:
                    raise
            except Exception:
                self.close()  # whatever state it is in, the next copy starts on a clean session
                raise

    def _session(self) -> IMAPClient:
        if self.client is None:
            self.client = connect(self.settings)
        return self.client

    def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # the server is gone already: just let go of the socket
            with contextlib.suppress(Exception):
                client.shutdown()


def sent_folder(settings: dict) -> SentFolder:
    """This process's session for the mailbox's Sent copies (keyed like `jobs.transport`); an edited mailbox
    gets a new one, and the old one is closed."""
    per_process = current_app.extensions.setdefault("ft_sent_folder", {})
    key = (os.getpid(), settings.get("MAILBOX"), settings.get("MAILBOX_VERSION"))
    if key not in per_process:
        for old in [k for k in per_process if k[:2] == key[:2]]:
            per_process.pop(old).close()
        per_process[key] = SentFolder(settings)
    return per_process[key]


def close_sent_folders() -> None:
    """Log out of every Sent session this process keeps (the worker is stopping)."""
    per_process = current_app.extensions.get("ft_sent_folder", {})
    for key in [k for k in per_process if k[0] == os.getpid()]:
        per_process.pop(key).close()


def copy_to_sent(settings: dict, raw: bytes) -> bool:
    """APPEND what we sent to IMAP_SENT_FOLDER, so the consultant sees the whole thread; never fatal."""
    folder = settings.get("IMAP_SENT_FOLDER")
    if not folder or not settings.get("IMAP_HOST"):
        return False
    try:
        sent_folder(settings).append(folder, raw)
        return True
    except Exception as exc:  # the message went out; a missing copy is logged, not a failed send
        log.error("could not copy a sent message to %s: %s", folder, exc)
        return False

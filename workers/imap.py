"""IMAP connections for this process: the poller's, and the copy of what we send into Sent."""

from __future__ import annotations

import logging

from imapclient import IMAPClient

from service import connections

log = logging.getLogger(__name__)


def connect(settings: dict) -> IMAPClient:
    return connections.imap(settings)


def copy_to_sent(settings: dict, raw: bytes) -> bool:
    """APPEND what we sent to IMAP_SENT_FOLDER, so the consultant sees the whole thread; never fatal."""
    folder = settings.get("IMAP_SENT_FOLDER")
    if not folder or not settings.get("IMAP_HOST"):
        return False
    try:
        client = connect(settings)
        try:
            client.append(folder, raw, flags=[b"\\Seen"])
        finally:
            client.logout()
        return True
    except Exception as exc:  # the message went out; a missing copy is logged, not a failed send
        log.error("could not copy a sent message to %s: %s", folder, exc)
        return False

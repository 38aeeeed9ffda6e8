"""IMAP connections for this process: the poller's, and the copy of what we send into Sent."""

from __future__ import annotations

import logging
import ssl

from imapclient import IMAPClient, SocketTimeout

log = logging.getLogger(__name__)


def connect(settings: dict) -> IMAPClient:
    """Log in with IMAP_SECURITY ssl, starttls or none; timeouts keep a dead server from hanging us."""
    timeout = SocketTimeout(connect=15, read=settings["IMAP_TIMEOUT"])
    context = ssl.create_default_context(cafile=settings.get("IMAP_CAFILE"))
    use_ssl = settings["IMAP_SECURITY"] == "ssl"
    client = IMAPClient(settings["IMAP_HOST"], port=settings["IMAP_PORT"], ssl=use_ssl, ssl_context=context,
                        timeout=timeout)
    if settings["IMAP_SECURITY"] == "starttls":
        client.starttls(context)
    client.login(settings["IMAP_USERNAME"], settings["IMAP_PASSWORD"] or "")
    client.normalise_times = False  # keep INTERNALDATE aware, not local naive time
    return client


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

"""Signed tokens: unsubscribe links, download links and VERP bounce addresses, each scoped to its purpose;
and the DKIM signature."""

from __future__ import annotations

import hashlib
import hmac

import dkim
from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer


def _serializer(secret: str, purpose: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=f"follow-through:{purpose}")


def unsubscribe_token(secret: str, contact_id: int) -> str:
    return _serializer(secret, "unsubscribe").dumps(contact_id)


def read_unsubscribe_token(secret: str, token: str) -> int | None:
    """The contact id in a valid unsubscribe token, else None (forged, truncated, other purpose)."""
    try:
        value = _serializer(secret, "unsubscribe").loads(token)
    except BadSignature:
        return None
    return value if isinstance(value, int) else None


def download_token(secret: str, outbound_id: int, asset_id: int) -> str:
    """A dated token naming the send that carried a download link and the file it offers."""
    return URLSafeTimedSerializer(secret, salt="follow-through:download").dumps([outbound_id, asset_id])


def read_download_token(secret: str, text: str, max_age_days: int) -> tuple[tuple[int, int] | None, bool]:
    """((outbound id, asset id), expired) for a genuine token; (None, False) for a forged or damaged one.

    An expired token still names its send, so the page can offer a fresh link to the right person.
    """
    serializer = URLSafeTimedSerializer(secret, salt="follow-through:download")
    try:
        value, expired = serializer.loads(text, max_age=max_age_days * 86400), False
    except SignatureExpired as exc:
        # A genuine signature, only old; itsdangerous hands back the payload still encoded.
        value, expired = serializer.load_payload(exc.payload), True
    except BadSignature:
        return None, False
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)):
        return None, False
    return (value[0], value[1]), expired


def _mac(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), f"verp:{text}".encode(), hashlib.sha256).hexdigest()[:12]


def verp_token(secret: str, outbound_id: int) -> str:
    """A short token for the envelope sender, bounces+<token>@domain (letters, digits, dash)."""
    return f"{outbound_id}-{_mac(secret, str(outbound_id))}"


def read_verp_token(secret: str, token: str | None) -> int | None:
    """The ledger row id a bounce's VERP token names, if the token is genuine."""
    if not token or "-" not in token:
        return None
    ident, mac = token.rsplit("-", 1)
    if not ident.isdigit() or not hmac.compare_digest(mac.lower(), _mac(secret, ident)):
        return None
    return int(ident)


def verp_address(bounce_address: str, token: str) -> str:
    local, domain = bounce_address.rsplit("@", 1)
    return f"{local}+{token}@{domain}"


# RFC 8058 §4: the signature must cover List-Unsubscribe and List-Unsubscribe-Post.
DKIM_HEADERS = (
    b"from", b"to", b"subject", b"date", b"message-id", b"in-reply-to", b"references", b"mime-version",
    b"content-type", b"auto-submitted", b"list-unsubscribe", b"list-unsubscribe-post",
    b"thread-topic", b"thread-index",
)
# Signed once more than they occur (RFC 6376 §8.15): a From, Subject or unsubscribe header that a
# relay or an attacker prepends later breaks the signature instead of riding on it.
OVERSIGNED = (b"from", b"subject", b"list-unsubscribe", b"list-unsubscribe-post")


def _signed_headers(raw: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = [line.split(b":", 1)[0].strip().lower() for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")]
    extra = [name for name in OVERSIGNED for _ in range(names.count(name))]
    return [*DKIM_HEADERS, *extra]


def dkim_sign(raw: bytes, selector: str, domain: str, private_key: bytes, ed25519: bool = False) -> bytes:
    """Prepend a DKIM-Signature to the final bytes (which must then go out untouched).

    relaxed/relaxed: a relay that rewraps headers or trims line ends keeps the signature valid.
    """
    signature = dkim.sign(
        raw, selector.encode(), domain.encode(), private_key, include_headers=_signed_headers(raw),
        canonicalize=(b"relaxed", b"relaxed"),
        signature_algorithm=b"ed25519-sha256" if ed25519 else b"rsa-sha256",
    )
    return signature + raw

"""Signed tokens: unsubscribe links and VERP bounce addresses, each scoped to its purpose."""

from __future__ import annotations

import hashlib
import hmac

import dkim
from itsdangerous import BadSignature, URLSafeSerializer


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

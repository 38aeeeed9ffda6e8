"""The magnet as a link: signed, expiring download URLs (`GET /d/<token>`) and who downloaded what."""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

_SALT = "follow-through:download"


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=_SALT)


def token(secret: str, outbound_id: int, asset_id: int) -> str:
    """A token naming the send that carried the link and the file it offers."""
    return _serializer(secret).dumps([outbound_id, asset_id])


def link(settings: dict, outbound_id: int, asset_id: int) -> str:
    return f"{settings['BASE_URL']}/d/{token(settings['SECRET_KEY'], outbound_id, asset_id)}"


def read(secret: str, text: str, max_age_days: int) -> tuple[tuple[int, int] | None, bool]:
    """((outbound id, asset id), expired) for a genuine token; (None, False) for a forged or damaged one.

    An expired token still names its send, so the page can offer a fresh link to the right person.
    """
    try:
        value = _serializer(secret).loads(text, max_age=max_age_days * 86400)
        expired = False
    except SignatureExpired as exc:
        value, expired = exc.payload, True
    except BadSignature:
        return None, False
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)):
        return None, False
    return (value[0], value[1]), expired

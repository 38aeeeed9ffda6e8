"""SASL XOAUTH2 logins to Gmail and Microsoft 365, and the OAuth2 tokens behind them.

Exchange Online turned basic authentication off for IMAP and SMTP, and Gmail accepts a
password only as an app password, if at all: both want an OAuth2 access token, presented
with the XOAUTH2 mechanism. The admin connects a mailbox once in the browser (authorization
code with PKCE); the refresh token that comes back is kept, and short-lived access tokens
are drawn from it as the poller and the sender need them.

The protocol work (PKCE S256, code exchange, refresh) is Authlib's, over requests. Every
provider URL is a setting, so the tests point them at a local stand-in. Tokens and secrets
are never logged and never put into an error message.
"""

from __future__ import annotations

import smtplib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import imapclient
import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError as AuthlibOAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from imapclient.exceptions import LoginError

REFRESH_MARGIN = timedelta(minutes=5)
# RFC 6749 §5.1 makes expires_in only RECOMMENDED; both providers' access tokens live an hour.
DEFAULT_LIFETIME = 3600
# Errors that a later retry of the very same request may get past; every other RFC 6749
# error answers the same way until someone changes a setting or connects the mailbox again.
TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error"})


@dataclass(frozen=True)
class Provider:
    """Where a mail provider authorizes, issues tokens, and serves IMAP and SMTP."""

    name: str
    auth_url: str
    token_url: str
    scopes: tuple[str, ...]
    imap_host: str
    imap_port: int
    smtp_host: str
    smtp_port: int
    smtp_security: str


class OAuthError(Exception):
    """One line that says what to fix; ``permanent`` is True when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass
class AccessToken:
    token: str = field(repr=False)
    expires_at: datetime  # aware UTC


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- providers


def provider(name: str, settings: Mapping[str, Any]) -> Provider:
    """The preset for ``name``, with its URLs taken from ``settings`` when they are set."""
    if name == "google":
        return Provider(
            name="google",
            auth_url=settings.get("GOOGLE_AUTH_URL") or "https://accounts.google.com/o/oauth2/v2/auth",
            token_url=settings.get("GOOGLE_TOKEN_URL") or "https://oauth2.googleapis.com/token",
            scopes=("https://mail.google.com/",),
            imap_host="imap.gmail.com",
            imap_port=993,
            smtp_host="smtp.gmail.com",
            smtp_port=587,
            smtp_security="starttls",
        )
    if name == "microsoft":
        base = f"https://login.microsoftonline.com/{settings.get('MICROSOFT_TENANT') or 'common'}/oauth2/v2.0"
        return Provider(
            name="microsoft",
            auth_url=settings.get("MICROSOFT_AUTH_URL") or f"{base}/authorize",
            token_url=settings.get("MICROSOFT_TOKEN_URL") or f"{base}/token",
            # offline_access is what makes Microsoft return a refresh token.
            scopes=(
                "offline_access",
                "https://outlook.office.com/IMAP.AccessAsUser.All",
                "https://outlook.office.com/SMTP.Send",
            ),
            imap_host="outlook.office365.com",
            imap_port=993,
            smtp_host="smtp.office365.com",
            smtp_port=587,
            smtp_security="starttls",
        )
    raise OAuthError(f"unknown OAuth provider {name!r}: use 'google' or 'microsoft'", permanent=True)


# --------------------------------------------------------------------------- token endpoint


def _session(client_id: str, client_secret: str | None, timeout: float) -> OAuth2Session:
    # client_secret_post is the form both providers document first; a public client
    # (no secret) identifies itself by client_id alone and relies on PKCE.
    method = "client_secret_post" if client_secret else "none"
    return OAuth2Session(client_id, client_secret, token_endpoint_auth_method=method, default_timeout=timeout)


def _refusal(error: str, description: str | None, grant: str) -> OAuthError:
    """An RFC 6749 §5.2 error answer, as the thing to fix."""
    if error == "invalid_grant" and grant == "refresh_token":
        message = "the refresh token was revoked or has expired (invalid_grant): connect the mailbox again"
    elif error == "invalid_grant":
        message = (
            "the authorization code was refused (invalid_grant): it works once, within minutes, and only "
            "with the PKCE verifier of the same sign-in: connect the mailbox again"
        )
    elif error == "invalid_client":
        message = "the provider refused the client id or secret (invalid_client): check the OAuth client settings"
    elif error == "unauthorized_client":
        message = (
            f"this OAuth client may not use the {grant} grant (unauthorized_client): "
            "check the app registration at the provider"
        )
    else:
        detail = f"{error}: {description}" if description else error
        message = f"the token endpoint refused the request ({detail}): check the OAuth settings"
    return OAuthError(message, permanent=error not in TRANSIENT_ERRORS)


def _http_failure(response: requests.Response) -> OAuthError:
    status = response.status_code
    if status >= 500 or status == 429:
        return OAuthError(f"the token endpoint answered HTTP {status}: try again later", permanent=False)
    return OAuthError(f"the token endpoint answered HTTP {status}: check the token URL setting", permanent=True)


def _call_token_endpoint(send: Callable[[], Mapping[str, Any]], grant: str) -> Mapping[str, Any]:
    """Run one token request; every way it can fail becomes an OAuthError."""
    try:
        answer = send()
    except AuthlibOAuthError as error:
        raise _refusal(str(error.error), error.description or None, grant) from error
    except requests.HTTPError as error:
        raise _http_failure(error.response) from error
    except requests.RequestException as error:
        message = f"the token endpoint could not be reached ({type(error).__name__}): try again later"
        raise OAuthError(message, permanent=False) from error
    except ValueError as error:  # a 2xx that is not a JSON object, e.g. a proxy's page
        raise OAuthError("the token endpoint did not answer with JSON: try again later", permanent=False) from error
    if not answer.get("access_token"):
        raise OAuthError("the token endpoint answered without an access token: try again later", permanent=False)
    return answer


def _access_token(answer: Mapping[str, Any]) -> AccessToken:
    lifetime = int(answer.get("expires_in") or DEFAULT_LIFETIME)  # some endpoints send it as a string
    return AccessToken(token=str(answer["access_token"]), expires_at=_utc_now() + timedelta(seconds=lifetime))


def refresh(
    token_url: str, client_id: str, client_secret: str | None, refresh_token: str, *, timeout: float = 30
) -> tuple[AccessToken, str | None]:
    """A fresh access token, and the new refresh token if the provider rotated it (else None)."""
    with _session(client_id, client_secret, timeout) as session:
        answer = _call_token_endpoint(
            lambda: session.refresh_token(token_url, refresh_token=refresh_token), "refresh_token"
        )
    # Authlib copies the old refresh token into its answer when none came back.
    rotated = answer.get("refresh_token")
    return _access_token(answer), rotated if rotated and rotated != refresh_token else None


class TokenSource:
    """Hands out an access token for one mailbox, refreshing it before it expires."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str | None,
        refresh_token: str,
        *,
        cached: AccessToken | None = None,
        on_refresh: Callable[[AccessToken, str | None], None] | None = None,
        clock: Callable[[], datetime] = _utc_now,
        timeout: float = 30,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._token = cached
        self._on_refresh = on_refresh
        self._clock = clock
        self._timeout = timeout
        # One refresh at a time: with rotation, a second concurrent refresh would spend a
        # refresh token the first one had already replaced.
        self._lock = threading.Lock()

    def current(self) -> str:
        """The cached access token, refreshed first when absent or within REFRESH_MARGIN of expiry."""
        with self._lock:
            token = self._token
            if token is None or token.expires_at - REFRESH_MARGIN <= self._clock():
                token = self._refresh()
            return token.token

    def renew(self) -> str:
        """A new access token even if the cached one looks valid (the server just refused it)."""
        with self._lock:
            return self._refresh().token

    def _refresh(self) -> AccessToken:
        token, rotated = refresh(
            self.token_url, self.client_id, self._client_secret, self._refresh_token, timeout=self._timeout
        )
        self._token = token
        if rotated:
            self._refresh_token = rotated
        if self._on_refresh is not None:
            self._on_refresh(token, rotated)
        return token


# --------------------------------------------------------------------------- SASL XOAUTH2


def xoauth2(user: str, access_token: str) -> str:
    """The SASL XOAUTH2 initial client response, before base64."""
    return f"user={user}\x01auth=Bearer {access_token}\x01\x01"


class _XOAuth2Exchange:
    """The client side of XOAUTH2 for imapclient's sasl_login and smtplib's auth.

    The first call answers with the credentials. A refused token gets a further challenge
    carrying a JSON error, which the client must answer with an empty response before the
    server sends its final failure; answering with the credentials again is a protocol error.
    """

    def __init__(self, user: str, access_token: str) -> None:
        self._response = xoauth2(user, access_token)
        self._calls = 0

    def __call__(self, challenge: bytes | None = None) -> str:
        self._calls += 1
        return self._response if self._calls == 1 else ""


def imap_login(client: imapclient.IMAPClient, user: str, source: TokenSource) -> None:
    """AUTHENTICATE XOAUTH2; after a refusal, renew the token and try once more."""
    try:
        client.sasl_login("XOAUTH2", _XOAuth2Exchange(user, source.current()))
        return
    except LoginError:
        pass  # the usual cause: the token expired or was revoked before its time
    try:
        client.sasl_login("XOAUTH2", _XOAuth2Exchange(user, source.renew()))
    except LoginError as error:
        # RFC 5530: [UNAVAILABLE] is the server's own trouble; any other refusal of a token
        # minted a moment ago is a setting (IMAP disabled for the mailbox, wrong user, scope).
        permanent = "UNAVAILABLE" not in str(error)
        raise OAuthError(
            f"the IMAP server refused a freshly refreshed access token for {user} ({error}): "
            "check that IMAP is enabled for the mailbox and that it is the account that granted access",
            permanent=permanent,
        ) from error


def smtp_login(smtp: smtplib.SMTP, user: str, source: TokenSource) -> None:
    """AUTH XOAUTH2; after a refusal, renew the token and try once more."""
    smtp.ehlo_or_helo_if_needed()
    try:
        smtp.auth("XOAUTH2", _XOAuth2Exchange(user, source.current()), initial_response_ok=True)
        return
    except smtplib.SMTPAuthenticationError:
        pass  # as for IMAP: most likely an expired token
    try:
        smtp.auth("XOAUTH2", _XOAuth2Exchange(user, source.renew()), initial_response_ok=True)
    except smtplib.SMTPAuthenticationError as error:
        said = error.smtp_error.decode(errors="replace") if isinstance(error.smtp_error, bytes) else error.smtp_error
        raise OAuthError(
            f"the SMTP server refused a freshly refreshed access token for {user} ({error.smtp_code} {said}): "
            "check that authenticated SMTP is enabled for the mailbox and that it is the account that granted access",
            permanent=error.smtp_code >= 500,  # RFC 4954 §6: 454 is a temporary failure
        ) from error


# --------------------------------------------------------------------------- connecting a mailbox


def new_pkce() -> tuple[str, str]:
    """A fresh (code_verifier, S256 code_challenge) pair (RFC 7636 §4.1, §4.2)."""
    verifier = generate_token(64)
    return verifier, create_s256_code_challenge(verifier)


def authorization_url(provider: Provider, client_id: str, redirect_uri: str, state: str, code_challenge: str) -> str:
    """Where to send the admin's browser to grant access to the mailbox."""
    extra: dict[str, str] = {}
    if provider.name == "google":
        # Google returns a refresh token only for offline access, and again on a repeat
        # connection only when asked for consent once more.
        extra = {"access_type": "offline", "prompt": "consent"}
    with OAuth2Session(client_id, scope=" ".join(provider.scopes), redirect_uri=redirect_uri) as session:
        url, _ = session.create_authorization_url(
            provider.auth_url,
            state=state,
            code_challenge=code_challenge,
            code_challenge_method="S256",
            **extra,
        )
    return url


def exchange_code(
    provider: Provider,
    client_id: str,
    client_secret: str | None,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    *,
    timeout: float = 30,
) -> tuple[str, AccessToken]:
    """(refresh token, access token) for the authorization code the browser came back with."""
    with _session(client_id, client_secret, timeout) as session:
        answer = _call_token_endpoint(
            lambda: session.fetch_token(
                provider.token_url,
                grant_type="authorization_code",
                code=code,
                redirect_uri=redirect_uri,
                code_verifier=code_verifier,
            ),
            "authorization_code",
        )
    refresh_token = answer.get("refresh_token")
    if not refresh_token:
        hint = (
            "the request must carry access_type=offline and prompt=consent"
            if provider.name == "google"
            else "the offline_access scope must be requested and granted"
        )
        message = f"{provider.name} returned no refresh token: {hint}; connect the mailbox again"
        raise OAuthError(message, permanent=True)
    return str(refresh_token), _access_token(answer)

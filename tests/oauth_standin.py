"""A local stand-in for Google's and Microsoft's OAuth2 endpoints, for the tests only.

It speaks just enough RFC 6749 (authorization code with PKCE S256, RFC 7636; refresh
token grant), RFC 7662 introspection (what Dovecot's oauth2 passdb asks) and the RFC 6749
§5.2 JSON errors for the client code to meet the same answers the real providers give.
Tokens live in memory; knobs let a test expire or revoke them mid-run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit


@dataclass
class _Grant:
    """What /authorize promised: redeemable once, with the verifier that matches the challenge."""

    user: str
    redirect_uri: str
    code_challenge: str
    scope: str
    offline: bool


@dataclass
class _Access:
    user: str
    scope: str
    expires_at: float


class OAuthError(Exception):
    """An RFC 6749 §5.2 error answer: ``error`` goes into the JSON body."""

    def __init__(self, error: str, status: int = 400) -> None:
        super().__init__(error)
        self.error = error
        self.status = status


class OAuthStandin:
    """Token, authorize and introspection endpoints on 127.0.0.1, on a port the OS picks.

    ``users`` maps refresh token -> mailbox user. ``consenting_user`` is whoever "signs in"
    at /authorize. ``rotate=True`` hands out a new refresh token on every refresh and
    retires the old one, as Microsoft may. ``outage = 503`` makes /token answer that status
    with an HTML page, as a provider's front end does when the service behind it is down.
    """

    def __init__(
        self,
        client_id: str = "ft-client",
        client_secret: str | None = "ft-secret",
        *,
        users: Mapping[str, str] | None = None,
        lifetime: float = 3600,
        rotate: bool = False,
        consenting_user: str = "consultant",
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.users: dict[str, str] = dict(users or {})
        self.lifetime = lifetime
        self.rotate = rotate
        self.consenting_user = consenting_user
        self.outage: int | None = None
        self.refreshes = 0
        self.introspections = 0
        self.exchanges = 0
        self.authorizations: list[dict[str, str]] = []
        self._access: dict[str, _Access] = {}
        self._codes: dict[str, _Grant] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---- lifecycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the OAuth stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def authorize_url(self) -> str:
        return f"{self.url}/authorize"

    @property
    def introspection_url(self) -> str:
        return f"{self.url}/introspect"

    def start(self) -> OAuthStandin:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.standin = self  # type: ignore[attr-defined]
        self._server = server
        threading.Thread(target=server.serve_forever, name="oauth-standin", daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> OAuthStandin:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- knobs

    def issue_refresh_token(self, user: str) -> str:
        """A new refresh token for ``user``, as if they had consented earlier."""
        token = "rt-" + secrets.token_urlsafe(24)
        with self._lock:
            self.users[token] = user
        return token

    def revoke_refresh(self, token: str) -> None:
        with self._lock:
            self.users.pop(token, None)

    def expire(self, token: str) -> None:
        with self._lock:
            if token in self._access:
                self._access[token].expires_at = 0.0

    def expire_all(self) -> None:
        with self._lock:
            for access in self._access.values():
                access.expires_at = 0.0

    def user_for(self, access_token: str) -> str | None:
        """The mailbox user of a live access token, or None (unknown, revoked or expired)."""
        with self._lock:
            access = self._access.get(access_token)
            if access is None or access.expires_at <= time.time():
                return None
            return access.user

    # ---- endpoints (called from the handler threads)

    def token(self, form: Mapping[str, str], authorization: str | None) -> dict[str, Any]:
        self._check_client(form, authorization)
        grant_type = form.get("grant_type")
        if grant_type == "refresh_token":
            return self._refresh(form)
        if grant_type == "authorization_code":
            return self._exchange(form)
        raise OAuthError("unsupported_grant_type")

    def authorize(self, query: Mapping[str, str]) -> str:
        """Record the request and return where the browser goes next (with a one-time code)."""
        with self._lock:
            self.authorizations.append(dict(query))
        if query.get("client_id") != self.client_id or query.get("response_type") != "code":
            raise OAuthError("unauthorized_client")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            raise OAuthError("invalid_request")  # this stand-in insists on PKCE, as a careful client does
        scope = query.get("scope", "")
        code = "code-" + secrets.token_urlsafe(16)
        grant = _Grant(
            user=self.consenting_user,
            redirect_uri=query.get("redirect_uri", ""),
            code_challenge=query["code_challenge"],
            scope=scope,
            # Google hands out a refresh token only for access_type=offline, Microsoft only for offline_access.
            offline=query.get("access_type") == "offline" or "offline_access" in scope.split(),
        )
        with self._lock:
            self._codes[code] = grant
        separator = "&" if "?" in grant.redirect_uri else "?"
        return grant.redirect_uri + separator + urlencode({"code": code, "state": query.get("state", "")})

    def introspect(self, form: Mapping[str, str]) -> dict[str, Any]:
        """RFC 7662 §2.2: anything not live is simply inactive, with no further detail."""
        token = form.get("token", "")
        with self._lock:
            self.introspections += 1
            access = self._access.get(token)
        if access is None or access.expires_at <= time.time():
            return {"active": False}
        return {
            "active": True,
            "username": access.user,
            "scope": access.scope,
            "client_id": self.client_id,
            "token_type": "Bearer",
            "exp": int(access.expires_at),
        }

    # ---- grants

    def _check_client(self, form: Mapping[str, str], authorization: str | None) -> None:
        # RFC 6749 §2.3.1: HTTP Basic, or both values in the form body.
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.startswith("Basic "):
            try:
                client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthError("invalid_client", 401) from None
        if client_id != self.client_id:
            raise OAuthError("invalid_client", 401)
        if self.client_secret is not None and secret != self.client_secret:
            raise OAuthError("invalid_client", 401)

    def _refresh(self, form: Mapping[str, str]) -> dict[str, Any]:
        refresh_token = form.get("refresh_token", "")
        with self._lock:
            user = self.users.get(refresh_token)
            if user is None:
                raise OAuthError("invalid_grant")
            self.refreshes += 1
            answer = self._new_access(user, "")
            if self.rotate:
                del self.users[refresh_token]
                rotated = "rt-" + secrets.token_urlsafe(24)
                self.users[rotated] = user
                answer["refresh_token"] = rotated
        return answer

    def _exchange(self, form: Mapping[str, str]) -> dict[str, Any]:
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)  # RFC 6749 §4.1.2: a code works once
            if grant is None or grant.redirect_uri != form.get("redirect_uri"):
                raise OAuthError("invalid_grant")
            if _s256(form.get("code_verifier", "")) != grant.code_challenge:
                raise OAuthError("invalid_grant")  # RFC 7636 §4.6
            self.exchanges += 1
            answer = self._new_access(grant.user, grant.scope)
            if grant.offline:
                refresh_token = "rt-" + secrets.token_urlsafe(24)
                self.users[refresh_token] = grant.user
                answer["refresh_token"] = refresh_token
        return answer

    def _new_access(self, user: str, scope: str) -> dict[str, Any]:
        token = "at-" + secrets.token_urlsafe(24)
        self._access[token] = _Access(user=user, scope=scope, expires_at=time.time() + self.lifetime)
        return {"access_token": token, "expires_in": int(self.lifetime), "token_type": "Bearer", "scope": scope}


def _s256(verifier: str) -> str:
    """RFC 7636 §4.2, computed here by hand so the client's library is not checking itself."""
    digest = hashlib.sha256(verifier.encode("ascii", errors="replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class _Handler(BaseHTTPRequestHandler):
    server_version = "OAuthStandin/1"

    @property
    def standin(self) -> OAuthStandin:
        return self.server.standin  # type: ignore[attr-defined]

    def do_POST(self) -> None:  # noqa: N802 - http.server hook name
        length = int(self.headers.get("Content-Length") or 0)
        form = _single_values(parse_qs(self.rfile.read(length).decode("utf-8", errors="replace")))
        path = urlsplit(self.path).path
        if path == "/token" and self.standin.outage:
            self._html(self.standin.outage)
            return
        try:
            if path == "/token":
                self._json(200, self.standin.token(form, self.headers.get("Authorization")))
            elif path == "/introspect":
                self._json(200, self.standin.introspect(form))
            else:
                self._json(404, {"error": "not_found"})
        except OAuthError as error:
            self._json(error.status, {"error": error.error})

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path != "/authorize":
            self._json(404, {"error": "not_found"})
            return
        try:
            location = self.standin.authorize(_single_values(parse_qs(url.query)))
        except OAuthError as error:
            self._json(error.status, {"error": error.error})
            return
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _json(self, status: int, body: Mapping[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")  # RFC 6749 §5.1
        self.end_headers()
        self.wfile.write(payload)

    def _html(self, status: int) -> None:
        payload = b"<html><body>Service unavailable</body></html>"
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # request lines carry codes and tokens; keep them out of the test output


def _single_values(parsed: Mapping[str, list[str]]) -> dict[str, str]:
    return {name: values[0] for name, values in parsed.items()}

"""Access to the admin: login everywhere, argon2, CSRF, cookies and security headers (limits: test_signin_limits)."""

from __future__ import annotations

import re
import urllib.parse

import pytest

from service.extensions import db
from service.models import User
from tests.test_admin_support import ALICE, post, signed_in, text, token

SAMPLE_VALUES = {"contact_id": 1, "enrollment_id": 1, "campaign_id": 1, "asset_id": 1, "message_id": 1,
                 "row_id": 1, "token": "0" * 32, "slug": "default", "provider": "google"}


def _admin_urls(app) -> list[tuple[str, str]]:
    """(method, url) for every admin rule, with sample values for its arguments."""
    urls = []
    with app.test_request_context():
        adapter = app.url_map.bind("localhost")
        for rule in app.url_map.iter_rules():
            if not rule.rule.startswith("/admin") or rule.endpoint == "admin.login_page":
                continue
            values = {name: SAMPLE_VALUES.get(name) for name in rule.arguments}
            if "action" in rule.arguments:
                values["action"] = sorted(rule._converters["action"].items)[0]
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                urls.append((method, adapter.build(rule.endpoint, values, method=method)))
    return urls


def test_every_admin_route_sends_strangers_to_the_login_page(make_app):
    app = make_app(WTF_CSRF_ENABLED=False)  # so POSTs reach the login check, not the CSRF check
    client = app.test_client()
    urls = _admin_urls(app)
    assert len(urls) >= 40  # the walk covers the whole admin, not a few pages
    for method, url in urls:
        response = client.open(url, method=method)
        assert response.status_code == 302, (method, url, response.status_code)
        assert response.headers["Location"].startswith("/admin/login"), (method, url)


def test_with_csrf_on_a_post_without_a_token_is_refused_even_when_signed_in(world):
    client = signed_in(world)
    assert client.post("/admin/jobs/retry").status_code == 400
    assert client.post("/admin/logout").status_code == 400
    assert post(client, "/admin/logout").status_code == 302


def test_passwords_are_stored_as_argon2_hashes(world):
    with world.app_context():
        stored = db.session.query(User).one().password_hash
    assert stored.startswith("$argon2id$") and ALICE[1] not in stored


def test_a_wrong_password_is_refused_with_401(world):
    client = world.test_client()
    response = client.post("/admin/login", data={"email": ALICE[0], "password": "nope nope nope",
                                                 "csrf_token": token(client)})
    assert response.status_code == 401 and "Wrong email or password." in text(response)


def test_the_session_cookie_is_httponly_samesite_secure_and_expires(world):
    client = world.test_client()
    response = client.post("/admin/login", data={"email": ALICE[0], "password": ALICE[1],
                                                 "csrf_token": token(client)})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" in cookie  # BASE_URL is https in the test settings
    assert "Expires=" in cookie  # a permanent session: PERMANENT_SESSION_LIFETIME ends it


def test_security_headers_are_set_and_the_csp_allows_no_script(world):
    client = signed_in(world)
    for url in ("/admin/login", "/admin/", "/admin/contacts", "/u/whatever"):
        headers = client.get(url).headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
    assert client.get("/admin/").headers["Cache-Control"] == "no-store"


def test_no_page_carries_inline_script_or_style_attributes(world):
    client = signed_in(world)
    for url in ("/admin/login", "/admin/", "/admin/contacts", "/admin/campaigns", "/admin/campaigns/new",
                "/admin/review", "/admin/sends", "/admin/contacts/import"):
        html = text(client.get(url))
        assert "<script" not in html and not re.search(r"\son\w+=", html) and " style=" not in html, url


def test_after_sign_in_only_an_admin_path_is_followed(world):
    client = world.test_client()
    evil = client.post("/admin/login?next=//evil.example/x", data={"email": ALICE[0], "password": ALICE[1],
                                                                   "csrf_token": token(client)})
    assert evil.headers["Location"] == "/admin/"
    client = world.test_client()
    fine = client.post("/admin/login?next=/admin/contacts", data={"email": ALICE[0], "password": ALICE[1],
                                                                  "csrf_token": token(client)})
    assert fine.headers["Location"] == "/admin/contacts"


@pytest.mark.parametrize("control", ["\r\nSet-Cookie: x=1", "\n", "\x00", "\x1b", "\t", "\x7f"])
def test_a_next_with_control_characters_is_a_400_not_a_500(world, control):
    client = world.test_client()
    nasty = urllib.parse.quote(f"/admin/contacts{control}")
    assert client.get(f"/admin/login?next={nasty}").status_code == 400
    answer = client.post(f"/admin/login?next={nasty}", data={"email": ALICE[0], "password": ALICE[1],
                                                             "csrf_token": token(client)})
    assert answer.status_code == 400 and "Set-Cookie: x" not in str(answer.headers)


def test_signing_out_ends_the_session(world):
    client = signed_in(world)
    assert post(client, "/admin/logout").status_code == 302
    assert client.get("/admin/").headers["Location"].startswith("/admin/login")


def test_a_copy_of_the_session_cookie_is_void_after_signing_out(world):
    client = signed_in(world)
    stolen = client.get_cookie("session").value
    assert client.get("/admin/").status_code == 200
    post(client, "/admin/logout")
    replay = world.test_client()
    replay.set_cookie("session", stolen)
    assert replay.get("/admin/").status_code == 302

"""Access to the admin: login everywhere, argon2, throttled sign-in, CSRF, cookies and security headers."""

from __future__ import annotations

import http.cookiejar
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from werkzeug.serving import make_server

from service.admin import throttle
from service.extensions import db
from service.models import User
from tests.test_admin_support import ALICE, post, signed_in, text, token

SAMPLE_VALUES = {"contact_id": 1, "enrollment_id": 1, "campaign_id": 1, "asset_id": 1, "message_id": 1,
                 "row_id": 1, "token": "0" * 32}


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


def test_five_failures_block_the_sixth_attempt_even_with_the_right_password(world, redis_server):
    client = world.test_client()
    for _ in range(throttle.PER_ACCOUNT):
        assert client.post("/admin/login", data={"email": ALICE[0], "password": "guess guess guess",
                                                 "csrf_token": token(client)}).status_code == 401
    blocked = client.post("/admin/login", data={"email": ALICE[0], "password": ALICE[1], "csrf_token": token(client)})
    assert blocked.status_code == 429
    assert "Too many failed sign-ins from here. Wait 15 minutes" in text(blocked)
    keys = redis_server.client().keys("ft:login-fail:*")
    assert keys and all(0 < redis_server.client().ttl(k) <= throttle.WINDOW_SECONDS for k in keys)


def test_the_limit_is_per_address_and_email_and_a_success_clears_it(world, redis_server):
    from service import users

    with world.app_context():
        users.create(db.session, "ken@acumen.example", "another good password")
        db.session.commit()
    client = world.test_client()
    for _ in range(throttle.PER_ACCOUNT):
        client.post("/admin/login", data={"email": ALICE[0], "password": "x" * 12, "csrf_token": token(client)})
    other = client.post("/admin/login", data={"email": "ken@acumen.example", "password": "another good password",
                                              "csrf_token": token(client)})
    assert other.status_code == 302  # another account from the same address still signs in
    redis_server.flushall()
    client = world.test_client()
    client.post("/admin/login", data={"email": ALICE[0], "password": "x" * 12, "csrf_token": token(client)})
    assert signed_in(world)  # the one failure is forgotten on success
    assert not redis_server.client().exists(throttle.Attempt("127.0.0.1", ALICE[0]).redis_keys()[0])


def test_sign_in_still_works_when_redis_is_down(make_app):
    from service import users

    app = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    with app.app_context():
        users.create(db.session, *ALICE)
        db.session.commit()
    assert signed_in(app)


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


def test_parallel_guesses_cannot_slip_past_the_limit(world, redis_server):
    world.config["SESSION_COOKIE_SECURE"] = False  # plain http on loopback
    server = make_server("127.0.0.1", 0, world, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/admin/login"

    def guess(_) -> int:
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        page = browser.open(base).read().decode()
        csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"email": ALICE[0], "password": "wrong guess!", "csrf_token": csrf}).encode()
        try:
            return browser.open(base, data=form).status
        except urllib.error.HTTPError as answer:
            return answer.code

    try:
        with ThreadPoolExecutor(10) as pool:
            codes = list(pool.map(guess, range(20)))
    finally:
        server.shutdown()
    assert codes.count(401) == throttle.PER_ACCOUNT
    assert codes.count(429) == 20 - throttle.PER_ACCOUNT

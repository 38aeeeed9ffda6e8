"""The sign-in limiter against a real Redis: growing delays instead of a lockout, refused attempts not
counted, parallel guesses held back, and sign-in refused (never unlimited) while Redis is down."""

from __future__ import annotations

import http.cookiejar
import logging
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from werkzeug.serving import make_server

from service import users
from service.admin import throttle
from service.extensions import db
from tests.test_admin_support import ALICE, signed_in, text, token

WRONG = "guess guess guess"
ATTACKER, ADMIN = "203.0.113.9", "198.51.100.7"


def _sign_in(client, password: str, ip: str = "127.0.0.1"):
    return client.post("/admin/login", data={"email": ALICE[0], "password": password, "csrf_token": token(client)},
                       environ_base={"REMOTE_ADDR": ip})


def _failures(redis_server, ip: str = "127.0.0.1") -> int:
    return int(redis_server.client().hget(throttle.Attempt(ip, ALICE[0]).redis_keys()[0], "n") or 0)


def test_after_five_failures_the_next_attempt_waits_without_checking_the_password(world, redis_server, monkeypatch):
    monkeypatch.setattr(throttle, "FIRST_DELAY_SECONDS", 30)  # the 6th comes well within it, however slow the run
    client = world.test_client()
    for _ in range(throttle.PER_ACCOUNT):
        assert _sign_in(client, WRONG).status_code == 401
    held = _sign_in(client, ALICE[1])
    wait = int(held.headers["Retry-After"])
    assert held.status_code == 429 and 0 < wait <= 30
    assert f"Too many attempts; try again in {wait} second" in text(held)
    assert _failures(redis_server) == throttle.PER_ACCOUNT
    keys = redis_server.client().keys("ft:login-fail:*")
    assert keys and all(0 < redis_server.client().pttl(k) <= throttle.FORGET_AFTER_SECONDS * 1000 for k in keys)


def test_each_failure_past_the_free_ones_doubles_the_delay_up_to_a_minute(world, redis_server):
    attempt, now = throttle.Attempt("127.0.0.1", ALICE[0]), 1_000_000.0
    with world.app_context():
        assert [throttle.reserve(attempt, now) for _ in range(throttle.PER_ACCOUNT)] == [0] * throttle.PER_ACCOUNT
        delays = []
        for _ in range(8):
            delays.append(throttle.reserve(attempt, now))
            assert throttle.reserve(attempt, now + delays[-1] - 0.5) > 0  # still waiting, and not counted
            now += delays[-1]
            assert throttle.reserve(attempt, now) == 0
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert _failures(redis_server) == throttle.PER_ACCOUNT + 8


def test_after_50_wrong_guesses_the_right_password_works_within_the_longest_delay(world, redis_server, monkeypatch):
    # 4, 8, 16 s...: how many of the 50 are counted cannot depend on how fast this machine is.
    monkeypatch.setattr(throttle, "FIRST_DELAY_SECONDS", 4)
    client = world.test_client()
    codes = [_sign_in(client, WRONG).status_code for _ in range(50)]
    assert codes.count(429) >= 40 and codes.count(401) + codes.count(429) == 50
    assert _failures(redis_server) == codes.count(401)  # the refused ones were not counted
    started, told = time.monotonic(), []
    while time.monotonic() - started < throttle.MAX_DELAY_SECONDS + 30:
        answer = _sign_in(client, ALICE[1])
        if answer.status_code == 302:
            break
        assert answer.status_code == 429
        told.append(int(answer.headers["Retry-After"]))
        time.sleep(0.25)
    assert answer.status_code == 302, "the right password never got through"
    assert max(told, default=0) <= throttle.MAX_DELAY_SECONDS
    assert not redis_server.client().exists(throttle.Attempt("127.0.0.1", ALICE[0]).redis_keys()[0])


def test_a_flood_from_another_address_does_not_keep_the_admin_out(world):
    attacker = world.test_client()
    for _ in range(52):
        _sign_in(attacker, WRONG, ip=ATTACKER)
    assert _sign_in(world.test_client(), ALICE[1], ip=ADMIN).status_code == 302


def test_the_limit_is_per_address_and_email_and_a_success_clears_it(world, redis_server):
    with world.app_context():
        users.create(db.session, "ken@acumen.example", "another good password")
        db.session.commit()
    client = world.test_client()
    for _ in range(throttle.PER_ACCOUNT):
        _sign_in(client, "x" * 12)
    other = client.post("/admin/login", data={"email": "ken@acumen.example", "password": "another good password",
                                              "csrf_token": token(client)})
    assert other.status_code == 302  # another account from the same address still signs in
    redis_server.flushall()
    _sign_in(world.test_client(), "x" * 12)
    assert signed_in(world)  # the one failure is forgotten on success
    assert _failures(redis_server) == 0


def test_sign_in_is_refused_while_redis_is_down(make_app, caplog):
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    with app.app_context():
        users.create(db.session, *ALICE)
        db.session.commit()
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="service.admin.throttle"):
        refused = _sign_in(client, ALICE[1])
    assert refused.status_code == 503
    assert "Sign-in is unavailable: the rate limiter (Redis) is down" in text(refused)
    assert any("rate limiter (Redis) is down" in r.getMessage() for r in caplog.records)
    assert client.get("/admin/").headers["Location"].startswith("/admin/login")


def test_parallel_guesses_cannot_slip_past_the_limit(world, redis_server, monkeypatch):
    monkeypatch.setattr(throttle, "FIRST_DELAY_SECONDS", throttle.MAX_DELAY_SECONDS)  # however slow the run
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

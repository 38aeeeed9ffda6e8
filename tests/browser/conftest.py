"""The admin in a real browser: Debian's Chromium driven by Playwright, against a real WSGI server.

The app runs in a thread behind werkzeug's server on a free port; each test gets a fresh
browser context (cookies) on one shared browser. Screenshots go to test-output/screenshots/.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from service import ROOT
from tests.servers import free_port
from tests.test_admin_support import ALICE

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
SHOTS = ROOT / "test-output" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def pytest_collection_modifyitems(items) -> None:
    if not os.path.exists(CHROMIUM):
        skip = pytest.mark.skip(reason=f"{CHROMIUM} is not installed (Debian package chromium)")
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def base_url(settings) -> str:
    """The live server's address, set before the app is built so links in mail point at it."""
    url = f"http://127.0.0.1:{free_port()}"
    settings["BASE_URL"] = url
    return url


@pytest.fixture
def site(base_url, world):
    """The world's app served by a real WSGI server in a thread."""
    port = int(base_url.rsplit(":", 1)[1])
    server = make_server("127.0.0.1", port, world, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-admin", daemon=True)
    thread.start()
    yield base_url
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def page(browser, site):
    context = browser.new_context(base_url=site, viewport=DESKTOP)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def phone(browser, site):
    context = browser.new_context(base_url=site, viewport=PHONE, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    context.close()


def shot(page, name: str) -> Path:
    """A full-page screenshot, to look at (and to keep as evidence of what the page looked like)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page, email: str = ALICE[0], password: str = ALICE[1]) -> None:
    page.goto("/admin/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/admin/")


def no_overflow(page) -> None:
    """Nothing sticks out sideways (the usual phone-width bug)."""
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.evaluate("window.innerWidth")
    assert width <= viewport + 1, f"the page is {width}px wide in a {viewport}px viewport"

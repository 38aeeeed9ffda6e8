"""A first run that needs no guessing: `up` asks or names its defaults and ends with the sign-in; passwords change.

`up` runs as a newcomer runs it, in its own process: without a terminal (stdin from /dev/null, output to a pipe)
and at a pseudo-terminal. Its own output ends where honcho's begins; it is stopped with SIGTERM once honcho has
started web, worker and poller (honcho 2.0 fails on a signal that comes while a process is still starting).
"""

from __future__ import annotations

import os
import re
import select
import signal
import stat
import subprocess
import sys
import time

import pytest
from dotenv import dotenv_values

from service import ROOT
from service.cli import sign_in_lines
from tests.servers import free_port
from tests.test_admin_support import ALICE, post, signed_in, text, token
from tests.test_commands import authenticates

HONCHO = r"^\d\d:\d\d:\d\d system +\| "  # the first line of honcho's own: ours have all been printed
PROCESSES = {"web", "worker", "poller"}  # the Procfile's
ANSWERS = {"MAIL_FROM": "Ken Thoreson <ken@acumen.example>", "CONSULTANT_NAME": "Kenneth O'Brien",
           "BASE_URL": "https://desk.acumen.example"}


class Screen:
    """What a process writes to a pipe or a pseudo-terminal, read as it comes."""

    def __init__(self, fd: int) -> None:
        self.fd, self.text, self.seen = fd, "", 0

    def _read(self, timeout: float) -> bool:
        """Read what is there within `timeout`; False at the end of the output."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # a pseudo-terminal reports EIO once every writer has closed it
            return False
        self.text += chunk.decode(errors="replace").replace("\r\n", "\n")
        return bool(chunk)

    def expect(self, pattern: str, timeout: float = 120) -> re.Match:
        """Wait for `pattern` after what was matched before (the timeout only guards against a hang)."""
        deadline = time.monotonic() + timeout
        while not (found := re.compile(pattern, re.M).search(self.text, self.seen)):
            left = deadline - time.monotonic()
            assert left > 0 and self._read(left), f"no {pattern!r} in:\n{self.text}"
        self.seen = found.end()
        return found

    def drain(self, process: subprocess.Popen) -> None:
        """Keep reading while the process stops, so it never blocks on a full pipe."""
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline and self._read(0.2):
            pass


@pytest.fixture
def up_env(cli_env, tmp_path):
    """`up`'s environment: the three settings unset, a private .env, its own port and queue."""
    env = {k: v for k, v in cli_env.items() if k not in ANSWERS}
    env.update(FT_DOTENV=str(tmp_path / ".env"), BIND=f"127.0.0.1:{free_port()}", QUEUE_NAME="first-run",
               PYTHONUNBUFFERED="1", FLASK_SKIP_DOTENV="1")  # no .env of the checkout's may answer for us
    return env


def _up(env: dict, **streams) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "up"], cwd=ROOT, env=env, **streams)


def _started(screen: Screen) -> None:
    """Wait until honcho has started every process of the Procfile (the order varies)."""
    names: set[str] = set()
    while names != PROCESSES:
        names.add(screen.expect(HONCHO + r"(\w+) started").group(1))


def _stop(process: subprocess.Popen, screen: Screen) -> None:
    process.send_signal(signal.SIGTERM)  # honcho passes it on to web, worker and poller
    screen.drain(process)
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def _run_without_terminal(env: dict, tmp_path) -> list[str]:
    """`up`'s own lines, up to where honcho takes over."""
    with open(tmp_path / "up.err", "w") as err:
        process = _up(env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
    screen = Screen(process.stdout.fileno())
    try:
        _started(screen)
    finally:
        _stop(process, screen)
        process.stdout.close()
    return screen.text[:re.search(HONCHO, screen.text, re.M).start()].splitlines()


def test_without_a_terminal_up_names_each_default_it_used_and_ends_with_the_sign_in(up_env, tmp_path):
    lines = _run_without_terminal(up_env, tmp_path)
    dotenv = up_env["FT_DOTENV"]
    assert lines[:3] == [
        f"MAIL_FROM is not set: replies come from Follow-Through <roadmap@localhost>; set it in {dotenv}",
        f"CONSULTANT_NAME is not set: mail is signed with the name Ken Thoreson; set it in {dotenv}",
        f"BASE_URL is not set: links in mail and the admin are at http://127.0.0.1:5000; set it in {dotenv}",
    ]
    assert "loaded the default campaign: Execution Success Roadmap" in lines
    bind = up_env["BIND"]
    assert lines[-3] == f"Admin: http://127.0.0.1:5000/admin/ (on this machine: http://{bind}/admin/)"
    password = re.fullmatch(r"Sign in as admin@localhost with the password (\S+)", lines[-2]).group(1)
    assert "set-password admin@localhost" in lines[-1]
    assert authenticates(up_env, "admin@localhost", password)
    assert not (tmp_path / ".env").exists()  # nobody answered, so nothing was written


def test_at_a_terminal_up_asks_the_three_settings_and_saves_them_to_dotenv(up_env, tmp_path):
    leader, follower = os.openpty()
    process = _up(up_env, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    screen = Screen(leader)
    try:
        screen.expect(r"MAIL_FROM: .*\[Follow-Through <roadmap@localhost>\]: ")
        os.write(leader, b"not an address\n")
        screen.expect(r"Error: give a name and an address.*\nMAIL_FROM: .*: ")  # asked again
        os.write(leader, ANSWERS["MAIL_FROM"].encode() + b"\n")
        screen.expect(r"CONSULTANT_NAME: .*\[Ken Thoreson\]: ")
        os.write(leader, ANSWERS["CONSULTANT_NAME"].encode() + b"\n")
        screen.expect(r"BASE_URL: .*\[http://127\.0\.0\.1:5000\]: ")
        os.write(leader, b"https://desk.acumen.example/\n")
        screen.expect(r"^saved MAIL_FROM, CONSULTANT_NAME, BASE_URL in ")
        screen.expect(r"^Admin: https://desk\.acumen\.example/admin/ ")
        screen.expect(r"^Sign in as admin@localhost with the password ")
        _started(screen)
    finally:
        _stop(process, screen)
        os.close(leader)
    assert dotenv_values(tmp_path / ".env") == ANSWERS
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600


def test_settings_in_dotenv_are_read_not_asked_for(up_env, tmp_path):
    (tmp_path / ".env").write_text("".join(f"{name}=\"{value}\"\n" for name, value in ANSWERS.items()))
    leader, follower = os.openpty()
    process = _up(up_env, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    screen = Screen(leader)
    try:
        screen.expect(r"^Admin: https://desk\.acumen\.example/admin/ ")
        _started(screen)
    finally:
        _stop(process, screen)
        os.close(leader)
    assert "MAIL_FROM" not in screen.text and "is not set" not in screen.text


def test_a_later_run_shows_no_password_and_says_how_to_set_one(app):
    lines = sign_in_lines(app, None)
    assert lines[0].startswith("Admin: https://desk.acumen.example/admin/")
    assert "set-password" in lines[-1] and not any("with the password" in line for line in lines)


# The admin's own page: Settings → Change your password.

NEW = "a brand new passphrase"


def _change(client, current: str, new: str, repeat: str):
    return post(client, "/admin/password", {"current": current, "new": new, "repeat": repeat})


def _signs_in(app, password: str) -> bool:
    client = app.test_client()
    answer = client.post("/admin/login", data={"email": ALICE[0], "password": password, "csrf_token": token(client)})
    return answer.status_code == 302


def test_the_settings_page_links_to_the_password_page(world):
    client = signed_in(world)
    assert 'href="/admin/password"' in text(client.get("/admin/settings/mail"))
    page = text(client.get("/admin/password"))
    assert 'autocomplete="current-password"' in page and page.count('autocomplete="new-password"') == 2
    assert "<script" not in page and " style=" not in page  # the admin's CSP allows neither


def test_changing_the_password_keeps_this_session_and_signs_out_the_others(world):
    here, elsewhere = signed_in(world), signed_in(world)
    answer = _change(here, ALICE[1], NEW, NEW)
    assert answer.status_code == 302 and answer.headers["Location"] == "/admin/settings/mail"
    assert "Password changed" in text(here.get("/admin/settings/mail"))
    assert elsewhere.get("/admin/").headers["Location"].startswith("/admin/login")
    assert _signs_in(world, NEW) and not _signs_in(world, ALICE[1])


@pytest.mark.parametrize(("current", "new", "repeat", "error"), [
    ("not the password", NEW, NEW, "the current password is wrong"),
    (ALICE[1], NEW, "a different passphrase", "the two new passwords differ"),
    (ALICE[1], "short", "short", "at least 10 characters"),
])
def test_a_refused_change_says_why_and_changes_nothing(world, current, new, repeat, error):
    client = signed_in(world)
    answer = _change(client, current, new, repeat)
    assert answer.status_code == 400 and error in text(answer).lower()
    assert client.get("/admin/").status_code == 200  # still signed in
    assert _signs_in(world, ALICE[1]) and not _signs_in(world, new)


def test_a_change_without_the_csrf_token_is_refused(world):
    client = signed_in(world)
    answer = client.post("/admin/password", data={"current": ALICE[1], "new": NEW, "repeat": NEW})
    assert answer.status_code == 400
    assert _signs_in(world, ALICE[1]) and not _signs_in(world, NEW)

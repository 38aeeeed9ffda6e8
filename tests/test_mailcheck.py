"""The mail self-check: `check-mail`, its checks on hand-made bytes, the DNS checks, the settings page."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import dkim
import pytest

from service import create_app, mailcheck
from service.extensions import db
from tests.conftest import DEFAULT_YAML
from tests.test_admin_support import signed_in, text
from tests.test_commands import flask

REQUEST = mailcheck.SAMPLE_REQUEST_ID
GOOD_HEAD = [
    "From: Ken Thoreson <roadmap@acumen.example>",
    "To: Bob Prospect <bob@prospect.example>",
    "Subject: Re: Roadmap please",
    "Date: Mon, 02 Mar 2026 09:00:00 +0000",
    "Message-ID: <1772.4242.99@acumen.example>",
    f"In-Reply-To: <{REQUEST}>",
    f"References: <{REQUEST}>",
    "X-Follow-Through-Loop: acumen.example",
    "List-Unsubscribe: <https://desk.acumen.example/u/MA.abc>,",
    " <mailto:roadmap+unsubscribe@acumen.example?subject=unsubscribe%20MA.abc>",
    "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
    "MIME-Version: 1.0",
    'Content-Type: multipart/alternative; boundary="b1"',
]
TEXT_PART = [
    'Content-Type: text/plain; charset="utf-8"; format=flowed',
    "Content-Transfer-Encoding: 7bit",
    "",
    "Hi Bob, here is the Execution Success Roadmap you asked for; the first ",
    "page is the one to start with.",
    "",
    "Ken",
]
HTML_PART = [
    'Content-Type: text/html; charset="utf-8"',
    "Content-Transfer-Encoding: 7bit",
    "",
    '<!doctype html><html><head><meta charset="utf-8"><title>Roadmap</title></head><body><p>Hi Bob</p></body></html>',
]
# The names a consultant (and the lead's tests) read; they must not drift.
MESSAGE_CHECKS = [
    "strict parse", "CRLF line ends", "line length", "Message-ID literal", "In-Reply-To literal",
    "References literal", "List-Unsubscribe literal", "List-Unsubscribe-Post literal", "X-Follow-Through-Loop literal",
    "Message-ID on the MAIL_FROM domain", "List-Unsubscribe https and mailto", "List-Unsubscribe-Post one-click",
    "DKIM c=relaxed/relaxed", "DKIM oversigns From", "DKIM verifies with the configured key", "text format=flowed",
    "text lines at most 78", "HTML <meta charset>", "HTML <title>",
]


@pytest.fixture
def signing(dkim_key) -> dict:
    return {"MAIL_DOMAIN": "acumen.example", "DKIM_SELECTOR": "ft2026", "DKIM_PRIVATE_KEY": dkim_key[0]}


def handmade(head: list[str] = GOOD_HEAD, text_part: list[str] = TEXT_PART, html_part: list[str] = HTML_PART) -> bytes:
    lines = [*head, "", "--b1", *text_part, "--b1", *html_part, "--b1--", ""]
    return "\r\n".join(lines).encode()


def replaced(name: str, *lines: str) -> list[str]:
    """GOOD_HEAD with the field `name` (and its folded lines) replaced by `lines`."""
    head, skipping = [], False
    for line in GOOD_HEAD:
        if line.lower().startswith(f"{name.lower()}:"):
            head.extend(lines)
            skipping = True
        elif not (skipping and line.startswith(" ")):
            head.append(line)
            skipping = False
    return head


def sign(raw: bytes, settings: dict, c: tuple[bytes, bytes] = (b"relaxed", b"relaxed"), oversign: bool = True) -> bytes:
    headers = [b"from", b"to", b"subject", b"message-id", b"list-unsubscribe", *([b"from"] if oversign else [])]
    key = settings["DKIM_PRIVATE_KEY"].encode()
    return dkim.sign(raw, b"ft2026", b"acumen.example", key, include_headers=headers, canonicalize=c) + raw


def verdicts(raw: bytes, settings: dict) -> dict[str, mailcheck.Check]:
    return {c.name: c for c in mailcheck.message_checks(raw, settings)}


def failures(raw: bytes, settings: dict) -> dict[str, str]:
    return {c.name: c.detail for c in mailcheck.message_checks(raw, settings) if c.ok is False}


# --------------------------------------------------------------------------- hand-made bytes


def test_it_passes_a_hand_made_message_that_keeps_every_rule(signing):
    checks = verdicts(sign(handmade(), signing), signing)
    assert list(checks) == MESSAGE_CHECKS
    assert {name: c.detail for name, c in checks.items() if c.ok is not True} == {}


def test_it_fails_an_rfc_2047_encoded_in_reply_to(signing):
    raw = handmade(replaced("In-Reply-To", "In-Reply-To: =?utf-8?q?=3CPH0PR11MB5095=40outlook=2Ecom=3E?="))
    assert "RFC 2047" in failures(raw, signing)["In-Reply-To literal"]


def test_it_fails_a_message_id_folded_inside_the_id(signing):
    raw = handmade(replaced("In-Reply-To", f"In-Reply-To: <{REQUEST[:50]}", f" {REQUEST[50:]}>"))
    assert "folded inside a token" in failures(raw, signing)["In-Reply-To literal"]


def test_it_accepts_references_folded_between_ids(signing):
    raw = handmade(replaced("References", f"References: <{REQUEST}>", " <1772.4242.98@acumen.example>"))
    assert verdicts(raw, signing)["References literal"].ok is True


def test_it_fails_a_line_of_1000_octets(signing):
    raw = handmade([*GOOD_HEAD, "X-Padding: " + "a" * 989])
    assert failures(raw, signing)["line length"] == "line 14 is 1000 octets; RFC 5322 §2.1.1 allows 998"


def test_it_fails_bare_lf_line_ends(signing):
    raw = sign(handmade(), signing).replace(b"\r\n", b"\n")
    assert "bare LF" in failures(raw, signing)["CRLF line ends"]


def test_it_fails_a_signature_with_relaxed_simple(signing):
    found = failures(sign(handmade(), signing, c=(b"relaxed", b"simple")), signing)
    assert found["DKIM c=relaxed/relaxed"].startswith("c=relaxed/simple")


def test_it_fails_a_signature_that_does_not_oversign_from(signing):
    found = failures(sign(handmade(), signing, oversign=False), signing)
    assert "h= lists From 1 time(s) for 1 From header(s)" in found["DKIM oversigns From"]


def test_it_fails_a_signature_the_bytes_no_longer_match(signing):
    raw = sign(handmade(), signing).replace(b"Subject: Re: Roadmap please", b"Subject: Re: Roadmap pleasE")
    assert failures(raw, signing)["DKIM verifies with the configured key"] == "the signature does not match the bytes"


def test_it_fails_unsigned_mail_when_dkim_is_configured_and_skips_it_when_not(signing):
    assert failures(handmade(), signing)["DKIM c=relaxed/relaxed"] == "DKIM is configured but the message is not signed"
    unsigned = {"MAIL_DOMAIN": "acumen.example"}
    checks = verdicts(handmade(), unsigned)
    assert [checks[n].ok for n in ("DKIM c=relaxed/relaxed", "DKIM verifies with the configured key")] == [None, None]


def test_it_fails_a_message_id_on_another_domain(signing):
    raw = handmade(replaced("Message-ID", "Message-ID: <1772.4242.99@mail.gmail.com>"))
    assert failures(raw, signing)["Message-ID on the MAIL_FROM domain"] == (
        "@mail.gmail.com, not the MAIL_FROM domain acumen.example"
    )


def test_it_fails_list_unsubscribe_without_mailto_and_a_wrong_post_value(signing):
    head = replaced("List-Unsubscribe", "List-Unsubscribe: <http://desk.acumen.example/u/MA.abc>")
    head = [line.replace("=One-Click", "=one-click") for line in head]
    found = failures(handmade(head), signing)
    assert found["List-Unsubscribe https and mailto"] == "no https and no mailto URI"
    assert "must be 'List-Unsubscribe=One-Click'" in found["List-Unsubscribe-Post one-click"]


def test_it_fails_missing_threading_headers_on_a_reply(signing):
    head = [line for line in GOOD_HEAD if not line.startswith(("In-Reply-To", "References"))]
    found = failures(handmade(head), signing)
    assert (found["In-Reply-To literal"], found["References literal"]) == ("missing", "missing")


def test_it_fails_fixed_text_with_long_lines_and_html_without_charset_or_title(signing):
    text_part = [TEXT_PART[0].replace("; format=flowed", ""), *TEXT_PART[1:3], "word " * 15 + "x" * 4, "y" * 120]
    html_part = [*HTML_PART[:3], "<html><body><p>Hi Bob</p></body></html>"]
    found = failures(handmade(text_part=text_part, html_part=html_part), signing)
    assert found["text format=flowed"] == "format=fixed"
    # The 79-character sentence fails; the 120-character single word (a long link) could not be wrapped.
    assert found["text lines at most 78"].startswith("a line of 79 characters")
    assert (found["HTML <meta charset>"], found["HTML <title>"]) == ("missing", "missing")


def test_it_fails_a_strictly_unparsable_message(signing):
    raw = handmade([*GOOD_HEAD[:2], "Not a header line", *GOOD_HEAD[2:]])
    assert "strict parse" in failures(raw, signing)


# --------------------------------------------------------------------------- settings and DNS


def test_it_publishes_the_same_record_as_openssl(dkim_key):
    private, record = dkim_key
    assert mailcheck.dkim_record(private) == record


def test_it_warns_without_dkim_and_fails_it_only_in_production(signing):
    bare = {"MAIL_DOMAIN": "acumen.example"}
    assert mailcheck.warnings(bare) == [
        "DKIM is not configured (DKIM_SELECTOR and DKIM_PRIVATE_KEY): receivers cannot verify the mail comes "
        "from acumen.example"
    ]
    assert mailcheck.warnings(signing) == []
    assert [c.ok for c in mailcheck.settings_checks(bare)] == [None]
    assert [c.ok for c in mailcheck.settings_checks({**bare, "PRODUCTION": True})] == [False]


def test_it_fails_an_unreadable_key_and_a_dkim_domain_that_does_not_align(signing):
    [bad] = mailcheck.settings_checks({**signing, "DKIM_PRIVATE_KEY": "not a key"})
    assert (bad.ok, bad.detail.startswith("DKIM_PRIVATE_KEY is not an RSA private key")) == (False, True)
    checks = mailcheck.settings_checks({**signing, "DKIM_DOMAIN": "mailer.example.net"})
    assert [c.line() for c in checks if c.ok is False] == [
        "FAIL  DKIM domain aligned with From: d=mailer.example.net does not align with the From domain acumen.example"
    ]


def records(answers: dict[str, list[str]]):
    """A DNS stand-in: names it knows answer their TXT strings, any other name does not exist."""

    def lookup(name: str) -> list[str]:
        return answers.get(name, [])

    return lookup


def unreachable(name: str) -> list[str]:
    raise mailcheck.Unresolvable("The DNS operation timed out.")


def test_it_passes_published_records_that_match(signing, dkim_key):
    lookup = records({
        "ft2026._domainkey.acumen.example": [dkim_key[1].decode()],
        "acumen.example": ["google-site-verification=abc", "v=spf1 include:_spf.google.com -all"],
        "_dmarc.acumen.example": ["v=DMARC1; p=quarantine; rua=mailto:dmarc@acumen.example"],
    })
    assert [c.line() for c in mailcheck.dns_checks(signing, lookup)] == [
        "PASS  DKIM record published: ft2026._domainkey.acumen.example",
        "PASS  SPF record: acumen.example: v=spf1 include:_spf.google.com -all",
        "PASS  DMARC record: _dmarc.acumen.example: v=DMARC1; p=quarantine; rua=mailto:dmarc@acumen.example",
    ]


def test_it_fails_missing_duplicate_revoked_and_other_keys(signing, dkim_key):
    other = subprocess.run(["openssl", "genrsa", "2048"], check=True, capture_output=True, text=True).stdout
    lookup = records({
        "ft2026._domainkey.acumen.example": [mailcheck.dkim_record(other).decode()],
        "acumen.example": ["v=spf1 -all", "v=spf1 mx -all"],
    })
    assert [c.line() for c in mailcheck.dns_checks(signing, lookup)] == [
        "FAIL  DKIM record published: ft2026._domainkey.acumen.example publishes another key than DKIM_PRIVATE_KEY",
        "FAIL  SPF record: 2 v=spf1 records at acumen.example; receivers need exactly one",
        "FAIL  DMARC record: no v=DMARC1 record at _dmarc.acumen.example",
    ]
    revoked = records({"ft2026._domainkey.acumen.example": ["v=DKIM1; k=rsa; p="]})
    assert mailcheck.published_key(signing, revoked).detail.endswith("has an empty p=: the key is revoked")


def test_it_skips_what_dns_cannot_answer_and_asks_no_dkim_record_without_dkim(signing):
    assert [c.line() for c in mailcheck.dns_checks(signing, unreachable)] == [
        "SKIP  DKIM record published: could not resolve ft2026._domainkey.acumen.example: The DNS operation timed out.",
        "SKIP  SPF record: could not resolve acumen.example: The DNS operation timed out.",
        "SKIP  DMARC record: could not resolve _dmarc.acumen.example: The DNS operation timed out.",
    ]
    assert [c.name for c in mailcheck.dns_checks({"MAIL_DOMAIN": "acumen.example"}, unreachable)] == [
        "SPF record", "DMARC record",
    ]


# --------------------------------------------------------------------------- the real mailer


@pytest.fixture
def signed_world(settings, dkim_key, request):
    settings.update(DKIM_SELECTOR="ft2026", DKIM_PRIVATE_KEY=dkim_key[0])
    return request.getfixturevalue("world")


def test_what_the_mailer_builds_passes_every_check(signed_world):
    # Holds once the mailer keeps every literal-header, flowed-text and DKIM rule (issue 9, point 1).
    with signed_world.app_context():
        checks = mailcheck.run(db.session, signed_world.config, "bob@prospect.example")
    assert [c.line() for c in checks if c.ok is not True] == []
    names = [c.name for c in checks]
    for label in ("execution-roadmap magnet", "execution-roadmap follow-up 1"):
        assert [n.removeprefix(f"{label}: ") for n in names if n.startswith(f"{label}: ")][1:] == MESSAGE_CHECKS


def test_the_sample_follow_up_threads_under_the_sample_magnet(signed_world):
    with signed_world.app_context():
        magnet, followup = mailcheck.build(db.session, signed_world.config)
    assert magnet.row.in_reply_to == REQUEST and magnet.row.references == f"<{REQUEST}>"
    assert followup.row.in_reply_to == magnet.row.message_id
    assert followup.row.references == f"<{REQUEST}> <{magnet.row.message_id}>"
    assert f"In-Reply-To: <{magnet.row.message_id}>\r\n".encode() in followup.raw


def test_it_logs_the_warnings_when_the_app_starts(settings, caplog):
    with caplog.at_level(logging.WARNING, logger="service.mailcheck"):
        create_app(settings)
    assert "DKIM is not configured (DKIM_SELECTOR and DKIM_PRIVATE_KEY)" in caplog.text


# --------------------------------------------------------------------------- the command


def command_env(folder: Path, redis_url: str, private_key: str) -> dict:
    skip = ("IMAP_", "SMTP_", "DATABASE_URL", "DKIM_", "FT_ENV", "MAIL_FROM", "BASE_URL", "SECRET_KEY")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update(
        FT_INSTANCE=str(folder / "instance"), REDIS_URL=redis_url, FT_DOTENV="/nonexistent",
        DATABASE_URL=f"sqlite:///{folder / 'cli.db'}", MAIL_FROM="Ken Thoreson <roadmap@acumen.example>",
        BASE_URL="https://desk.acumen.example", DKIM_SELECTOR="ft2026", DKIM_PRIVATE_KEY=private_key,
    )
    return env


@pytest.fixture(scope="module")
def cli_database(tmp_path_factory, redis_server, dkim_key) -> Path:
    """A database holding the default campaign, built once: the commands take seconds each."""
    folder = tmp_path_factory.mktemp("cli")
    env = command_env(folder, redis_server.url, dkim_key[0])
    for args in (["db", "upgrade"], ["campaigns", "import", str(DEFAULT_YAML)]):
        result = flask(args, env)
        assert result.returncode == 0, result.stderr
    return folder / "cli.db"


@pytest.fixture
def cli(tmp_path, redis_server, dkim_key, cli_database) -> dict:
    """A command environment on a copy of that database, DKIM configured."""
    shutil.copy(cli_database, tmp_path / "cli.db")
    return command_env(tmp_path, redis_server.url, dkim_key[0])


def test_check_mail_prints_a_pass_line_per_check_and_exits_0(cli):
    result = flask(["check-mail", "--no-dns"], cli)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "PASS  DKIM configured: s=ft2026 d=acumen.example" in lines
    for label in ("execution-roadmap magnet", "execution-roadmap follow-up 1"):
        for name in MESSAGE_CHECKS:
            assert any(line.startswith(f"PASS  {label}: {name}") for line in lines), (label, name, result.stdout)
    assert not [line for line in lines if line.startswith("FAIL")]
    assert not [line for line in lines if "SPF" in line or "DMARC" in line]  # --no-dns asks nothing
    assert lines[-1].endswith(" passed, 0 failed, 0 skipped")


def test_check_mail_exits_1_and_names_the_failure(cli):
    cli["DKIM_DOMAIN"] = "mailer.example.net"
    result = flask(["check-mail", "--no-dns"], cli)
    assert result.returncode == 1
    assert "FAIL  DKIM domain aligned with From: d=mailer.example.net does not align" in result.stdout
    assert "Traceback" not in result.stderr


def test_check_mail_to_sends_each_message_and_prints_the_servers_answer(cli, sink):
    sink.clear()
    cli.update(SMTP_HOST=sink.host, SMTP_PORT=str(sink.port), SMTP_SECURITY="none")
    result = flask(["check-mail", "--no-dns", "--to", "bob@prospect.example"], cli)
    assert result.returncode == 0, result.stdout + result.stderr
    got = sink.wait_for(2)
    assert [m.rcpt_tos for m in got] == [["bob@prospect.example"], ["bob@prospect.example"]]
    assert all(b"To: Sample Prospect <bob@prospect.example>\r\n" in m.data for m in got)
    assert "PASS  execution-roadmap magnet: sent to bob@prospect.example: 250 " in result.stdout
    assert "PASS  execution-roadmap follow-up 1: sent to bob@prospect.example: 250 " in result.stdout


def test_check_mail_to_reports_a_refusal_as_a_failure(cli, sink):
    sink.clear()
    sink.reject_rcpt("bob@prospect.example", "550 5.1.1 User unknown")
    cli.update(SMTP_HOST=sink.host, SMTP_PORT=str(sink.port), SMTP_SECURITY="none")
    result = flask(["check-mail", "--no-dns", "--to", "bob@prospect.example"], cli)
    sink.clear()
    assert result.returncode == 1
    assert "FAIL  execution-roadmap magnet: sent to bob@prospect.example: 550 5.1.1 User unknown" in result.stdout


# --------------------------------------------------------------------------- the admin


def test_the_settings_page_shows_the_report_to_a_signed_in_admin(signed_world):
    anonymous = signed_world.test_client().get("/admin/settings/mail")
    assert anonymous.status_code == 302 and "/admin/login" in anonymous.headers["Location"]
    client = signed_in(signed_world)
    page = text(client.get("/admin/settings/mail"))
    assert "execution-roadmap magnet: In-Reply-To literal" in page
    assert "execution-roadmap follow-up 1: DKIM verifies with the configured key" in page
    assert ">FAIL<" not in page and " 0 failed, " in page
    assert 'href="/admin/settings/mail"' in page and "check-mail --to alice@acumen.example" in page


def test_the_settings_page_looks_up_dns_only_when_asked(signed_world):
    client = signed_in(signed_world)
    assert "SPF record" not in text(client.get("/admin/settings/mail"))
    assert "SPF record" in text(client.get("/admin/settings/mail?dns=1"))


def test_the_dashboard_warns_when_dkim_is_missing(world):
    assert "DKIM is not configured" in text(signed_in(world).get("/admin/"))


def test_the_dashboard_says_nothing_once_dkim_is_configured(signed_world):
    assert "DKIM is not configured" not in text(signed_in(signed_world).get("/admin/"))

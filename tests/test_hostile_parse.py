"""Hostile mail: reading it stays linear, and the From never redirects a reply.

Every worst case is timed against a plain message classified in the same test; the limit is
generous (50 times the plain one, at least a second) so a loaded machine does not fail it, while
the super-linear patterns it guards against took minutes.
"""

from __future__ import annotations

import base64
import re
import signal
import threading
import time

import pytest

from service.admin import mailview
from service.budget import BudgetExceeded, cpu_budget
from service.inbound import Classification, classify, parse
from tests.test_inbound import CAMPAIGNS, IDENTITY

PLAIN = (
    b"From: Dana Prospect <dana@prospect.example>\nTo: roadmap@acumen.example\n"
    b"Subject: Roadmap\nMessage-ID: <plain-1@prospect.example>\nDate: Mon, 30 Nov 2026 09:00:00 +0000\n\n"
    b"Hi Ken,\n\nplease send me the roadmap.\n\nThanks,\nDana\n"
)


def _mail(body: str | bytes, headers: str = "", sender: str = "Pat <p@prospect.example>", subject: str = "hi") -> bytes:
    head = f"From: {sender}\nTo: info@acumen.example\nSubject: {subject}\nMessage-ID: <h-1@prospect.example>\n{headers}"
    data = body.encode() if isinstance(body, str) else body
    return f"{head.rstrip()}\n\n".encode() + data


def _daemon(body: str) -> bytes:
    return _mail(body, "", "MAILER-DAEMON@mx.prospect.example", "Undelivered Mail Returned to Sender")


def _nested_mime(depth: int) -> bytes:
    opening = "".join(f"Content-Type: multipart/mixed; boundary=L{i}\n\n--L{i}\n" for i in range(depth))
    closing = "".join(f"\n--L{i}--\n" for i in reversed(range(depth)))
    return _mail(f"{opening}Content-Type: text/plain\n\nplease send me the roadmap\n{closing}",
                 "To: roadmap@acumen.example\nMIME-Version: 1.0")


def _dsn(diagnostic: str) -> bytes:
    return _mail(
        "--R\nContent-Type: text/plain\n\nDelivery failed.\n"
        "--R\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\n"
        f"Final-Recipient: rfc822; gone@prospect.example\nAction: failed\nStatus: 5.1.1\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n--R--\n",
        "Content-Type: multipart/report; report-type=delivery-status; boundary=R",
        "MAILER-DAEMON@mx.prospect.example",
    )


BASE64_LINE = base64.b64encode(b"x" * 57).decode()
# name: (raw message, the kind it must still get)
CASES = {
    "3,000 blank lines from MAILER-DAEMON": (_daemon("Delivery failed.\n" + "\n" * 3000 + "x"), "bounce"),
    "200,000 blank lines from MAILER-DAEMON": (_daemon("Delivery failed.\n" + "\n" * 200_000 + "x"), "bounce"),
    "blank lines before a returned Message-ID": (_daemon("failed\n" + "\n" * 150_000 + "Message-ID: <x@y>\n"),
                                                 "bounce"),
    "a 40,000-dash line": (_mail("Hi\n" + "-" * 40_000 + "x"), "human"),
    "a 40,000-dash line in base64": (
        _mail(base64.encodebytes(b"Hi\n" + b"-" * 40_000 + b"x\n"), "Content-Transfer-Encoding: base64"), "human"),
    "dash lines": (_mail("Hi\n" + ("-" * 200 + "x\n") * 300), "human"),
    "a long run of >": (_mail("Hi\n" + ">" * 60_000 + "x"), "human"),
    "quote marks and spaces": (_mail("Hi\n" + "> " * 30_000 + "x"), "human"),
    "a long run of spaces": (_mail("Hi\n" + " " * 60_000 + "x"), "human"),
    "spaces after an attribution": (_mail("Hi\nOn Monday Bob wrote:" + " " * 60_000 + "x"), "human"),
    "a long run of =": (_mail("Hi\n" + "=" * 60_000), "human"),
    "= in quoted-printable": (_mail("Hi\n" + "=" * 60_000, "Content-Transfer-Encoding: quoted-printable"),
                              "human"),
    "open encoded words in the Subject": (_mail("Hi", subject="=?utf-8?q?x" * 10_000), "human"),
    "open encoded words in the From": (_mail("Hi", "", "=?utf-8?q?x" * 10_000 + " <p@prospect.example>"), "human"),
    "spaces in a Re: prefix": (_mail("Hi", subject="Re" + " " * 100_000 + "x"), "human"),
    "base64-looking lines": (_mail((BASE64_LINE + "\n") * 50_000), "human"),
    "nested quotes": (_mail("".join("> " * i + "On Mon, Bob wrote:\n" for i in range(1000))), "human"),
    "attributions": (_mail("Hi\n" + "On Monday wrote: wrote wrote " * 2000 + "\n"), "human"),
    "1,000-level nested MIME": (_nested_mime(1000), "request"),
    "100,000 headers": (_mail("please send me the roadmap", "X-Spam: x\n" * 100_000), "request"),
    "100,000 To headers": (_mail("Hi", "To: a@b.example\n" * 100_000), "human"),
    "a 2 MB header name": (_mail("Hi", "X" * 2_000_000 + ": y"), "human"),
    "a 6 MB body of short lines": (_mail("please send me the roadmap\n" + "x\n" * 3_000_000), "request"),
    "a 6 MB body with CR line ends": (_mail("please send me the roadmap\r" + "x\r" * 3_000_000), "request"),
    "a 6 MB body of one line": (_mail("please send me the roadmap\n" + "x" * 6_000_000), "request"),
    "a long word in a bounce": (_daemon("failed: " + "a" * 60_000), "bounce"),
    "punctuation before the magnet": (_mail("!" * 50_000 + "x roadmap"), "human"),
    "spaces in a DSN field": (_dsn(" " * 100_000 + "x"), "bounce"),
    "nested HTML tags": (_mail("<b>" * 200_000, "Content-Type: text/html"), "human"),
    "unclosed HTML tags": (_mail("<a " * 30_000, "Content-Type: text/html"), "human"),
    "nested blockquotes": (_mail("<blockquote>a" * 20_000, "Content-Type: text/html"), "human"),
    "an unclosed HTML comment": (_mail("<p>Hi<!--" + "-" * 1_000_000, "Content-Type: text/html"), "human"),
    "HTML entities": (_mail("&amp" * 300_000, "Content-Type: text/html"), "human"),
}


def _seconds(raw: bytes) -> tuple[float, Classification]:
    started = time.perf_counter()
    result = classify(parse(raw), CAMPAIGNS, IDENTITY)
    return time.perf_counter() - started, result


@pytest.mark.parametrize("name", CASES)
def test_it_reads_hostile_mail_in_about_the_time_of_a_plain_one(name: str):
    raw, kind = CASES[name]
    plain = min(_seconds(PLAIN)[0] for _ in range(3))
    elapsed, result = _seconds(raw)
    assert elapsed < max(50 * plain, 1.0), f"{name}: {elapsed:.2f}s against {plain * 1000:.1f}ms for a plain one"
    assert result.kind == kind, result.reasons


def test_it_says_where_it_cut_a_message_too_big_to_read_whole():
    lines = parse(CASES["a 6 MB body of short lines"][0])
    headers = parse(CASES["100,000 headers"][0])
    nested = parse(CASES["1,000-level nested MIME"][0])
    assert any(d.startswith("message cut at byte") and "10000 lines" in d for d in lines.defects)
    assert "header cut to its first 2000 lines" in headers.defects and "too many header fields" in headers.defects
    assert any("16 multipart/message parts" in d for d in nested.defects)
    assert "please send me the roadmap" in headers.new_text  # the body after a cut header is still read


@pytest.mark.parametrize("name", CASES)
def test_the_admin_shows_hostile_mail_in_about_the_time_of_a_plain_one(name: str):
    def seconds(raw: bytes) -> float:
        started = time.perf_counter()
        mailview.read(raw)
        return time.perf_counter() - started

    plain = min(seconds(PLAIN) for _ in range(3))
    elapsed = seconds(CASES[name][0])
    # Generous: a loaded CI machine stalls a process for a second now and then; a backtracking case takes minutes.
    assert elapsed < max(50 * plain, 3.0), f"{name}: {elapsed:.2f}s against {plain * 1000:.1f}ms for a plain one"


def test_the_admin_says_when_it_shows_only_the_start_of_a_message():
    view = mailview.read(CASES["a 6 MB body of short lines"][0])
    assert view.problem.startswith("Only the start of this message is shown: message cut at byte")
    encoded = _mail("hi", sender="a@b.example", subject="=?utf-8?q?a?= " * 100_000)
    assert len(dict(mailview.read(encoded).headers)["Subject"]) < 10_000  # was: the web worker killed for memory


# ---------------------------------------------------------------- the From, read raw (RFC 5322 §3.4)


@pytest.mark.parametrize("sender, address, name", [
    ("=?utf-8?q?Bob=0D=0ABcc:_victim@bigcorp.example?= <t1@prospect.example>", "t1@prospect.example", ""),
    ("ceo@bigcorp.example <t27@prospect.example>", "t27@prospect.example", ""),
    ('"ceo@bigcorp.example" <t28@prospect.example>', "t28@prospect.example", ""),
    ("=?utf-8?b?Qm9iIDxldmlsQGV2aWwuZXhhbXBsZT4=?= <t7@prospect.example>", "t7@prospect.example", ""),
    ("=?iso-8859-1?Q?Mustermann=2C_Erika?= <Erika@Prospect.example>", "erika@prospect.example", "Mustermann, Erika"),
    ("Dana Prospect (sales) <dana@prospect.example>", "dana@prospect.example", "Dana Prospect"),
    ("dana@prospect.example (Dana Prospect)", "dana@prospect.example", "Dana Prospect"),
    ("Mail Delivery Subsystem <MAILER-DAEMON>", "mailer-daemon", "Mail Delivery Subsystem"),
])
def test_it_takes_the_address_from_the_raw_from_and_decodes_only_the_name(sender: str, address: str, name: str):
    parsed = parse(_mail("Hi", sender=sender))
    assert (parsed.from_address, parsed.from_name) == (address, name)


@pytest.mark.parametrize("sender", [
    "friends: a@x.example, b@y.example;",
    "undisclosed-recipients:;",
    "eve@attacker.example, ceo@bigcorp.example",
    "Bob eve@attacker.example",
    "<eve@attacker.example> <ceo@bigcorp.example>",
    "Pay now at http://evil.example <eve@attacker.example>",
])
def test_a_from_without_exactly_one_mailbox_leaves_no_address_to_answer(sender: str):
    parsed = parse(_mail("Hi", "Reply-To: eve@attacker.example", sender))
    assert parsed.from_address is None and parsed.reply_to is None
    assert any(d in ("From does not name exactly one mailbox", "From has no valid address") for d in parsed.defects)


def test_two_from_fields_leave_no_address_to_answer():
    parsed = parse(_mail("Hi", "From: ceo@bigcorp.example", "eve@attacker.example"))
    assert parsed.from_address is None


def test_recipients_are_read_raw_so_an_encoded_name_adds_no_trigger_address():
    raw = (b"From: eve@attacker.example\nTo: =?utf-8?q?roadmap=40acumen.example?= <ken@acumen.example>,\n"
           b" team: dana@prospect.example;\nSubject: hi\n\nHello\n")
    parsed = parse(raw)
    assert parsed.recipients == ("ken@acumen.example", "dana@prospect.example")
    assert classify(parsed, CAMPAIGNS, IDENTITY).kind == "human"


@pytest.mark.parametrize("phrase, name", [
    ('"Pay invoice 4711 at http://evil.example/pay now"', ""),
    ('"Visit evil.example"', ""),
    ('"Go to www.example today"', ""),
    ("Please click the link below right now", ""),
    ("Agent 007", ""),
    ("Bob & Alice", ""),
    ("=?utf-8?q?Dana=E2=80=AE_Prospect?=", "Dana Prospect"),
    ("=?utf-8?q?Dana_=E2=81=A6Prospect=E2=81=A9=00?=", "Dana Prospect"),
    ("\"O'Brien-Núñez, J.\"", "O'Brien-Núñez, J."),
    ("=?utf-8?q?J=C3=B6rg_Gr=C3=BCn?=", "Jörg Grün"),
    ("李展锋", "李展锋"),
    ("A" * 100, "A" * 64),
])
def test_a_display_name_is_kept_only_when_it_is_plainly_a_name(phrase: str, name: str):
    parsed = parse(_mail("Hi", sender=f"{phrase} <p@prospect.example>"))
    assert (parsed.from_name, parsed.from_address) == (name, "p@prospect.example")


# ---------------------------------------------------------------- the CPU budget


def test_a_budget_interrupts_a_busy_loop():
    started = time.process_time()
    with pytest.raises(BudgetExceeded), cpu_budget(0.1):
        while True:
            pass
    assert time.process_time() - started < 2


def test_a_budget_interrupts_a_backtracking_regular_expression():
    # CPython's sre checks for signals every few thousand steps, so even this match gives way.
    with pytest.raises(BudgetExceeded), cpu_budget(0.1):
        re.match(r"(a*)*$", "a" * 40 + "b")


def test_a_budget_leaves_a_fast_block_and_the_previous_handler_alone():
    previous = signal.getsignal(signal.SIGPROF)
    with cpu_budget(5):
        total = sum(range(1000))
    assert total == 499_500
    assert signal.getsignal(signal.SIGPROF) is previous
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)


def test_an_inner_budget_gives_the_outer_one_back_what_it_had_left():
    with cpu_budget(30):
        with pytest.raises(BudgetExceeded), cpu_budget(0.1):
            while True:
                pass
        left, _ = signal.getitimer(signal.ITIMER_PROF)
        assert 25 < left < 30


def test_off_the_main_thread_a_budget_runs_the_block_without_one():
    done = []

    def work() -> None:
        with cpu_budget(0.01):
            deadline = time.thread_time() + 0.1
            while time.thread_time() < deadline:
                pass
        done.append(True)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert done == [True]


def test_parse_and_classify_let_a_budget_through_instead_of_calling_the_mail_broken():
    with pytest.raises(BudgetExceeded), cpu_budget(0.2):
        while True:
            assert not parse(PLAIN).parse_failed
            assert not classify(PLAIN, CAMPAIGNS, IDENTITY).reasons[0].startswith("classifier error")

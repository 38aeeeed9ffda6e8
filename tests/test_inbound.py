"""Parse and classify: hand-written mail in tests/mail/ plus unit tests of each rule."""

from __future__ import annotations

import base64
import csv
import json
import random
import time
from datetime import date
from pathlib import Path

import pytest

from service import bounces
from service.inbound import (
    CampaignRule,
    Classification,
    Identity,
    Parsed,
    classify,
    html_to_text,
    parse,
    split_reply,
)

MAIL = Path(__file__).resolve().parent / "mail"
CAMPAIGNS = (
    CampaignRule(
        "execution-roadmap", ("roadmap@acumen.example",), ("roadmap", "execution success")
    ),
)
IDENTITY = Identity(
    addresses=("roadmap@acumen.example",),
    domains=("acumen.example",),
    bounce_address="bounces@acumen.example",
    unsubscribe_address="unsubscribe@acumen.example",
)
KINDS = {"request", "human", "unsubscribe", "bounce", "complaint", "auto_reply", "bulk", "loop"}


def _rows() -> list[dict[str, str]]:
    lines = [line for line in (MAIL / "EXPECTED.tsv").read_text("utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))


ROWS = _rows()


def run(raw: bytes, campaigns=CAMPAIGNS, identity=IDENTITY) -> Classification:
    return classify(raw, campaigns, identity)


def mail(headers: str, body: str = "Hello.\n") -> bytes:
    """A small message: our defaults for Date/Message-ID, then the given headers."""
    base = "Date: Mon, 30 Nov 2026 09:00:00 +0000\nMessage-ID: <t-1@sender.example>\n"
    return f"{base}{headers.strip()}\n\n{body}".encode()


# ---------------------------------------------------------------- hand-written files


def test_every_hand_written_file_has_an_expectation():
    files = {p.name for p in MAIL.glob("*.eml")}
    listed = {row["file"] for row in ROWS}
    assert files == listed
    assert len(files) >= 45


@pytest.mark.parametrize("row", ROWS, ids=[row["file"] for row in ROWS])
def test_hand_written_mail_is_classified_as_expected(row: dict[str, str]):
    parsed = parse((MAIL / row["file"]).read_bytes())
    result = run(parsed)
    assert result.kind == row["kind"], result.reasons
    assert result.campaign == _none(row["campaign"])
    assert result.review is (row["review"] == "true")
    assert str(result.ooo_until or "-") == row["ooo_until"]
    assert _recipients(result) == _none(row["recipients"])
    for check in [c for c in row["checks"].split(";") if c and c != "-"]:
        _check(check, parsed, result)
    assert result.reasons, "every classification says why"


def _none(value: str) -> str | None:
    return None if value == "-" else value


def _recipients(result: Classification) -> str | None:
    if result.bounce is None:
        return None
    return ";".join(
        f"{r['address']}|{r['status'] or '-'}|{str(r['permanent']).lower()}"
        for r in result.bounce["recipients"]
    )


def _check(check: str, parsed: Parsed, result: Classification) -> None:
    for op in ("!~", "~", "="):
        field, sep, want = check.partition(op)
        if sep:
            break
    values = _field(field, parsed, result)
    if op == "=":
        assert str(values[0]) == want, f"{field}: {values[0]!r}"
    elif op == "~":
        assert any(want.lower() in str(v).lower() for v in values), f"{field}: {values!r}"
    else:
        assert not any(want.lower() in str(v).lower() for v in values), f"{field}: {values!r}"


def _field(field: str, parsed: Parsed, result: Classification) -> list:
    if field == "reason":
        return result.reasons
    if field == "defects":
        return list(parsed.defects)
    if field in ("verp_token", "original_message_id"):
        return [(result.bounce or {}).get(field)]
    if field == "action":
        return [r["action"] for r in (result.bounce or {}).get("recipients", [])]
    value = getattr(parsed, field)
    if isinstance(value, bool):
        return [str(value).lower()]
    return ["-" if value is None else value]


# ---------------------------------------------------------------- contract


def test_as_json_has_the_contract_shape_for_a_bounce():
    out = run((MAIL / "bounce-dsn-two-recipients.eml").read_bytes()).as_json("x.eml")
    assert list(out) == ["file", "kind", "campaign", "reasons", "bounce", "ooo_until"]
    assert out["file"] == "x.eml" and out["kind"] == "bounce" and out["ooo_until"] is None
    first = out["bounce"]["recipients"][0]
    assert {k: first[k] for k in ("address", "status", "action", "permanent")} == {
        "address": "gone@prospect.example",
        "status": "5.1.1",
        "action": "failed",
        "permanent": True,
    }
    json.dumps(out)


def test_as_json_gives_ooo_until_as_iso_date_and_null_bounce():
    out = run((MAIL / "ooo-german.eml").read_bytes()).as_json()
    assert out["ooo_until"] == "2026-12-04"
    assert out["bounce"] is None and out["file"] is None


def test_classify_accepts_raw_bytes_and_parsed_alike():
    raw = (MAIL / "request-plain.eml").read_bytes()
    assert run(raw) == run(parse(raw))


def test_parsed_fields_are_normalised():
    parsed = parse((MAIL / "human-reply-alias.eml").read_bytes())
    assert parsed.in_reply_to == ("20261129.magnet.17@acumen.example",)
    assert parsed.references == ("req-17@work.example", "20261129.magnet.17@acumen.example")
    assert parsed.recipients == ("roadmap@acumen.example",)
    assert parsed.date is not None and parsed.date.utcoffset().total_seconds() == 0
    assert parsed.headers["Subject"] == "Re: Your Execution Success Roadmap"
    assert parsed.parse_failed is False


# ---------------------------------------------------------------- auto-replies (RFC 3834)


@pytest.mark.parametrize("value, kind", [
    ("auto-replied", "auto_reply"),
    ("Auto-Generated", "auto_reply"),
    ("auto-notified", "auto_reply"),
    ("auto-replied; owner-email=x@y.example", "auto_reply"),
    ("No", "request"),
    ("no; comment", "request"),
])
def test_auto_submitted_anything_but_no_is_automatic(value: str, kind: str):
    headers = f"From: a@b.example\nTo: roadmap@acumen.example\nSubject: hi\nAuto-Submitted: {value}"
    raw = mail(headers)
    assert run(raw).kind == kind


@pytest.mark.parametrize("subject", [
    "Auto: roadmap", "Automatic reply: roadmap", "Autosvar: roadmap", "Automatisch antwoord: x",
    "Abwesenheitsnotiz: x", "Réponse automatique : x", "Respuesta automática: x",
    "Out of Office: x", "Out of the office", "Risposta Non al computer: x", "Fuori sede: x",
    "Frånvaro: x", "Re: hello (Automatic Response)", "Jane is out of the office",
])
def test_auto_reply_subjects(subject: str):
    raw = mail(f"From: a@b.example\nTo: roadmap@acumen.example\nSubject: {subject}", "Roadmap?\n")
    result = run(raw)
    assert result.kind == "auto_reply"
    assert any("Subject" in r for r in result.reasons)


def test_x_auto_response_suppress_alone_is_a_person():
    raw = mail("From: a@b.example\nTo: roadmap@acumen.example\nSubject: hi\n"
               "X-Auto-Response-Suppress: All")
    assert run(raw).kind == "request"


def test_auto_generated_notification_with_list_headers_is_bulk_but_ooo_on_a_list_is_auto_reply():
    note = mail("From: a@b.example\nTo: x@acumen.example\nSubject: build failed\n"
                "Auto-Submitted: auto-generated\nPrecedence: list")
    ooo = mail("From: a@b.example\nTo: x@acumen.example\nSubject: Out of Office: hi\n"
               "Auto-Submitted: auto-generated\nPrecedence: list")
    assert run(note).kind == "bulk"
    assert run(ooo).kind == "auto_reply"


@pytest.mark.parametrize("text, sent, until", [
    ("I will be back on 3 December 2026.", "Mon, 30 Nov 2026", date(2026, 12, 3)),
    ("Back on December 3rd, 2026", "Mon, 30 Nov 2026", date(2026, 12, 3)),
    ("returning Monday, Dec 7", "Mon, 30 Nov 2026", date(2026, 12, 7)),
    ("I'll be back on 12/07/2026", "Mon, 30 Nov 2026", date(2026, 12, 7)),
    ("returning 03/01/2012", "Fri, 23 Dec 2011", date(2012, 1, 3)),
    ("Ich bin ab dem 4. Dezember wieder im Büro", "Mon, 30 Nov 2026", date(2026, 12, 4)),
    ("bis einschließlich 03.12.2026 abwesend", "Mon, 30 Nov 2026", date(2026, 12, 3)),
    ("Je serai de retour le 5 décembre.", "Mon, 30 Nov 2026", date(2026, 12, 5)),
    ("Estaré de vuelta el 7 de diciembre", "Mon, 30 Nov 2026", date(2026, 12, 7)),
    ("Ik ben weer terug op 8 december", "Mon, 30 Nov 2026", date(2026, 12, 8)),
    ("Away until 2027-01-04", "Mon, 30 Nov 2026", date(2027, 1, 4)),
    ("back on 5 January", "Sun, 20 Dec 2026", date(2027, 1, 5)),
    ("Ich bin heute bis 17.00 Uhr unterwegs", "Mon, 30 Nov 2026", None),
    ("I am out of the office with limited access.", "Mon, 30 Nov 2026", None),
])
def test_out_of_office_return_dates(text: str, sent: str, until: date | None):
    raw = (f"Date: {sent} 09:00:00 +0000\nFrom: a@b.example\nTo: roadmap@acumen.example\n"
           f"Subject: Out of Office\nAuto-Submitted: auto-replied\n\n{text}\n").encode()
    result = run(raw)
    assert result.kind == "auto_reply"
    assert result.ooo_until == until


# ---------------------------------------------------------------- bulk


@pytest.mark.parametrize("header", [
    "Precedence: bulk", "Precedence: list", "Precedence: junk", "X-Precedence: bulk",
    "List-Id: <news.vendor.example>", "List-Post: <mailto:x@vendor.example>",
    "List-Unsubscribe: <https://vendor.example/u>", "X-Mailing-List: news@vendor.example",
    "Feedback-ID: 1:2:3:esp", "Sender: owner-news@vendor.example",
    "Return-Path: <news-bounces+x=acumen.example@vendor.example>",
])
def test_list_and_newsletter_markers_make_bulk_even_when_asking_for_the_roadmap(header: str):
    raw = mail(f"From: news@vendor.example\nTo: roadmap@acumen.example\nSubject: roadmap\n{header}",
               "Send me the roadmap!\n")
    assert run(raw).kind == "bulk"


@pytest.mark.parametrize("sender", [
    "noreply@x.example", "no-reply@x.example", "no_reply@x.example", "root@x.example",
    "owner-list@x.example", "list-request@x.example", "listserv@x.example", "majordomo@x.example",
])
def test_system_senders_are_bulk(sender: str):
    raw = mail(f"From: {sender}\nTo: roadmap@acumen.example\nSubject: roadmap")
    assert run(raw).kind == "bulk"


# ---------------------------------------------------------------- unsubscribe


@pytest.mark.parametrize("text", [
    "unsubscribe", "Please unsubscribe me.", "please remove me from this list",
    "Take me off your list", "Stop emailing me.", "stop", "Stop!", "No more emails please",
    "Bitte abmelden.", "Bitte keine E-Mails mehr.", "Bitte austragen",
    "Merci de me désabonner", "Je ne veux plus recevoir vos messages, je ne plus recevoir",
    "Quiero darme de baja", "Por favor cancelar suscripción", "No quiero recibir más correos",
    "Graag afmelden", "Graag uitschrijven", "Geen e-mails meer aub",
])
def test_people_asking_to_stop_in_their_own_words(text: str):
    raw = mail("From: p@person.example\nTo: roadmap@acumen.example\nSubject: Re: roadmap\n"
               "In-Reply-To: <x@acumen.example>", f"{text}\n\n> Unsubscribe: https://acumen.example/u/1\n")
    assert run(raw).kind == "unsubscribe"


@pytest.mark.parametrize("text", [
    "Stop by our booth next week and send me the roadmap.",
    "Thanks!\n\n> To unsubscribe, reply STOP.\n> Unsubscribe: https://acumen.example/u/1",
    "Thanks!\n\n-- \nJane\nStop sending spreadsheets. Unsubscribe from chaos.",
    "Thanks!\n\nOn Mon, Nov 30, 2026 at 8:00 AM Acumen <roadmap@acumen.example> wrote:\n"
    "Please remove me? Just unsubscribe here: https://acumen.example/u/1",
    "Sounds good.\nUnsubscribe: https://acumen.example/u/1",
])
def test_quoted_footers_and_signatures_never_unsubscribe(text: str):
    raw = mail("From: p@person.example\nTo: roadmap@acumen.example\nSubject: Re: hi\n"
               "In-Reply-To: <x@acumen.example>", text + "\n")
    assert run(raw).kind == "human"


def test_mail_to_the_plain_unsubscribe_address_unsubscribes():
    raw = mail("From: p@person.example\nTo: unsubscribe@acumen.example\nSubject: unsubscribe")
    assert run(raw).kind == "unsubscribe"


def test_apple_mail_unsubscribe_button_is_an_unsubscribe():
    raw = mail("From: p@icloud.example\nTo: x@acumen.example\nSubject: unsubscribe\n"
               "Auto-Submitted: auto-replied\nX-Apple-Unsubscribe: true")
    assert run(raw).kind == "unsubscribe"


# ---------------------------------------------------------------- requests


def test_address_match_beats_keyword_and_the_first_rule_wins():
    rules = (
        CampaignRule("a-keyword", (), ("roadmap",)),
        CampaignRule("b-address", ("webinar@acumen.example",), ()),
        CampaignRule("c-keyword", (), ("roadmap",)),
    )
    to_webinar = mail("From: p@x.example\nTo: webinar@acumen.example\nSubject: the roadmap")
    to_info = mail("From: p@x.example\nTo: info@acumen.example\nSubject: the roadmap")
    assert run(to_webinar, rules).campaign == "b-address"
    assert run(to_info, rules).campaign == "a-keyword"


@pytest.mark.parametrize("recipient", [
    "To: ROADMAP@acumen.example", "To: roadmap+ads@acumen.example", "Cc: roadmap@acumen.example",
    "Delivered-To: roadmap@acumen.example", "X-Original-To: roadmap+x@acumen.example",
])
def test_trigger_addresses_match_in_every_recipient_header(recipient: str):
    raw = mail(f"From: p@x.example\n{recipient}\nSubject: hello", "Hi!\n")
    assert run(raw).campaign == "execution-roadmap"


def test_trigger_address_needs_the_same_local_part():
    raw = mail("From: p@x.example\nTo: roadmaps@acumen.example\nSubject: hello", "Hi!\n")
    assert run(raw).kind == "human"


def test_a_reply_in_our_thread_is_a_person_even_when_it_names_the_campaign():
    raw = mail("From: p@x.example\nTo: roadmap@acumen.example\nSubject: Re: roadmap\n"
               "In-Reply-To: <20261130.fu1.1@acumen.example>", "Could you resend the roadmap?\n")
    result = run(raw)
    assert (result.kind, result.campaign, result.review) == ("human", None, False)


def test_keyword_in_the_quoted_part_does_not_make_a_request():
    raw = mail("From: p@x.example\nTo: info@acumen.example\nSubject: Re: lunch\n"
               "In-Reply-To: <abc@x.example>",
               "Sure, Tuesday.\n\n> the execution success roadmap\n")
    assert run(raw).kind == "human"


def test_no_campaigns_means_a_human_for_review():
    result = run(mail("From: p@x.example\nTo: roadmap@acumen.example\nSubject: roadmap"), ())
    assert (result.kind, result.review) == ("human", True)


# ---------------------------------------------------------------- loops and reports


def test_loop_needs_an_identity():
    raw = (MAIL / "loop-our-message-id.eml").read_bytes()
    assert run(raw, CAMPAIGNS, Identity()).kind != "loop"
    assert run(raw).kind == "loop"


def test_a_custom_loop_header_is_honoured():
    raw = mail("From: p@x.example\nTo: info@acumen.example\nSubject: hi\nX-Our-Loop: 1")
    assert run(raw, CAMPAIGNS, Identity(loop_header="X-Our-Loop")).kind == "loop"


def test_a_bounce_from_our_own_mta_is_a_bounce_not_a_loop():
    raw = (MAIL / "bounce-dsn-delayed.eml").read_bytes().replace(
        b"<dsn-delay-1@relay.example>", b"<dsn-delay-1@mx.acumen.example>"
    ).replace(b"MAILER-DAEMON@relay.example", b"MAILER-DAEMON@mx.acumen.example")
    assert run(raw).kind == "bounce"


def test_bounce_names_the_address_we_sent_to_not_the_alias_it_expanded_to():
    raw = mail(
        "From: MAILER-DAEMON@relay.example\nTo: roadmap@acumen.example\nSubject: Undelivered\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=Z",
        "--Z\nContent-Type: text/plain\n\nFailed.\n--Z\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; relay.example\n\nOriginal-Recipient: rfc822;Sales@Prospect.example\n"
        "Final-Recipient: rfc822; jane.smith@mail.prospect.example\nAction: failed\n"
        "Status: 5.1.1\n--Z--\n",
    )
    [rcpt] = run(raw).bounce["recipients"]
    assert (rcpt["address"], rcpt["permanent"]) == ("sales@prospect.example", True)


def test_verp_token_needs_our_bounce_address():
    raw = (MAIL / "bounce-qmail.eml").read_bytes()
    assert run(raw, CAMPAIGNS, Identity()).bounce["verp_token"] is None
    assert run(raw).bounce["verp_token"] == "qm77"


@pytest.mark.parametrize("action, status, text, permanent", [
    ("failed", "5.1.1", "550 5.1.1 User unknown", True),
    ("failed", "5.1.1", "550 5.1.1 message blocked: spam detected", False),
    ("failed", "5.1.2", "Host or domain name not found", True),
    ("failed", "5.1.6", "mailbox has moved", True),
    ("failed", "5.1.10", "RecipientNotFound", True),
    ("failed", "5.4.4", "couldn't find a mail exchanger", True),
    ("failed", "4.1.1", "450 4.1.1 user unknown", True),
    ("failed", "5.0.0", "No such user here", True),
    ("failed", "5.0.0", "Name or service not known", True),
    ("failed", "5.2.2", "552 5.2.2 Mailbox full", False),
    ("failed", "5.7.1", "blocked using zen.spamhaus.org", False),
    ("failed", "5.7.1", "Recipient address rejected: policy violation", False),
    ("failed", "5.3.4", "message too big for system", False),
    ("failed", "4.4.7", "delivery expired", False),
    ("failed", "5.0.0", "system error, try again", False),
    ("failed", None, "mailbox quota exceeded", False),
    ("delayed", "5.1.1", "user unknown", False),
    ("relayed", "5.1.1", "", False),
    ("delivered", "2.0.0", "", False),
])
def test_only_a_bad_address_is_permanent(action, status, text, permanent):
    assert bounces.is_permanent(action, status, text) is permanent


# ---------------------------------------------------------------- new text and HTML


@pytest.mark.parametrize("attribution", [
    "On Mon, Nov 30, 2026 at 8:00 AM Acumen <roadmap@acumen.example> wrote:",
    "Am 30.11.2026 um 08:00 schrieb Acumen <roadmap@acumen.example>:",
    "Le lun. 30 nov. 2026 à 08:00, Acumen <roadmap@acumen.example> a écrit :",
    "El lun, 30 nov 2026 a las 8:00, Acumen (<roadmap@acumen.example>) escribió:",
    "Op ma 30 nov. 2026 om 08:00 schreef Acumen <roadmap@acumen.example>:",
    "-----Original Message-----",
    "-----Ursprüngliche Nachricht-----",
    "From: Acumen <roadmap@acumen.example>\nSent: Monday, November 30, 2026 8:00 AM",
    "Von: Acumen <roadmap@acumen.example>\nGesendet: Montag, 30. November 2026 08:00",
])
def test_new_text_stops_at_the_quoted_message(attribution: str):
    new, rest, forward = split_reply(f"My answer.\n\n{attribution}\nOld text unsubscribe\n")
    assert new == "My answer."
    assert "unsubscribe" in rest and forward is False


def test_bottom_posted_reply_keeps_the_answers_between_quotes():
    text = ("On Mon, Nov 30, 2026 Acumen wrote:\n> Did it help?\nYes it did.\n"
            "> Anything else?\nNo.\n")
    assert split_reply(text)[0] == "Yes it did.\nNo."


def test_signatures_are_not_new_text():
    assert split_reply("Send it please.\n-- \nJane\nStop by!")[0] == "Send it please."
    assert split_reply("Send it please.\n\nSent from my iPhone")[0] == "Send it please."
    assert split_reply("Send it please.\n\nBest regards,\nJane Doe\nACME")[0] == "Send it please."
    assert split_reply("Thanks!\nPlease remove me.")[0] == "Thanks!\nPlease remove me."


def test_forward_marker_is_reported_as_forward():
    new, rest, forward = split_reply("FYI\n\n---------- Forwarded message ---------\nFrom: x\n\nhi")
    assert (new, forward) == ("FYI", True)
    assert rest.endswith("hi")


def test_html_to_text_drops_style_and_script_and_quotes_blockquotes():
    html = ("<style>.a{}</style><script>x()</script><p>One<br>Two</p>"
            "<blockquote><div>Quoted</div></blockquote><div>Three &amp; four</div>")
    lines = [line for line in html_to_text(html).splitlines() if line]
    assert lines == ["One", "Two", "> Quoted", "Three & four"]


# ---------------------------------------------------------------- robustness and size


def test_unparseable_input_is_a_human_for_review():
    for raw in (b"", b"   \n\n", b"\x00\xff" * 100):
        parsed = parse(raw)
        result = classify(parsed)
        assert parsed.parse_failed is True
        assert (result.kind, result.review) == ("human", True)
        assert result.reasons[0].startswith("unparseable")


def _big_request(attachment_bytes: int) -> bytes:
    blob = base64.encodebytes(random.Random(1).randbytes(attachment_bytes)).decode()
    return (
        "From: big@x.example\nTo: info@acumen.example\nSubject: deck\n"
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=BIG\n\n"
        "--BIG\nContent-Type: text/plain\n\nPlease send me the execution success roadmap.\n"
        "--BIG\nContent-Type: application/octet-stream\nContent-Disposition: attachment\n"
        f"Content-Transfer-Encoding: base64\n\n{blob}--BIG--\n"
    ).encode()


def test_a_six_megabyte_message_classifies_in_well_under_a_second():
    raw = _big_request(4_500_000)
    assert len(raw) > 6_000_000
    started = time.perf_counter()
    result = run(raw)
    elapsed = time.perf_counter() - started
    assert result.kind == "request"
    assert elapsed < 1.0, f"took {elapsed:.2f}s"


def test_a_five_megabyte_text_body_classifies_in_well_under_a_second():
    body = "Please send me the roadmap.\n" + ("lorem ipsum dolor > sit amet -- \n" * 160_000)
    raw = mail("From: p@x.example\nTo: info@acumen.example\nSubject: long", body)
    started = time.perf_counter()
    result = run(raw)
    assert time.perf_counter() - started < 1.0
    assert result.kind == "request"


def _mutilations(raw: bytes, rng: random.Random) -> list[bytes]:
    cuts = [raw[:n] for n in (1, 10, len(raw) // 3, len(raw) // 2, max(len(raw) - 1, 0))]
    flipped = bytearray(raw)
    for _ in range(max(1, len(raw) // 50)):
        if flipped:
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
    return [*cuts, bytes(flipped), raw.replace(b"\n", b"\r"), raw.replace(b":", b"\x00", 3),
            raw.replace(b"boundary", b"boundary=\"\"", 1), raw * 2]


@pytest.mark.parametrize("path", sorted(MAIL.glob("*.eml")), ids=lambda p: p.name)
def test_mutilated_mail_never_raises(path: Path):
    rng = random.Random(path.name)
    for raw in _mutilations(path.read_bytes(), rng):
        parsed = parse(raw)
        assert isinstance(parsed, Parsed)
        result = classify(parsed, CAMPAIGNS, IDENTITY)
        assert result.kind in KINDS
        assert json.loads(json.dumps(result.as_json(path.name)))["kind"] == result.kind


HOSTILE = {
    "3000 nested multiparts": b"Content-Type: multipart/mixed; boundary=A\n\n"
    + b"--A\nContent-Type: multipart/mixed; boundary=A\n\n" * 3000,
    "2 MB header": b"From: a@b.example\nX-Long: " + b"a" * 2_000_000 + b"\n\nbody",
    "broken encoded words": b"From: a@b.example\n"
    b"Subject: =?utf-8?q?broken=ZZ?= =?x-unknown?b?!!!?=\n\nx",
    "8-bit charset name": b"From: a@b.example\n"
    b"Content-Type: text/plain; charset=\"\xff\xfe\"\n\n\xff body",
    "base64 delivery-status": b"From: a@b.example\nContent-Type: multipart/report; "
    b"report-type=delivery-status; boundary=Q\n\n--Q\nContent-Type: message/delivery-status\n"
    b"Content-Transfer-Encoding: base64\n\n!!!\n--Q--",
    "broken address and date": b"From: \"unterminated <a@b.example\nTo: ,,,@@@\n"
    b"Date: 99 Foo 99999 99:99:99 +9999\n\nx",
    "8-bit body without charset": b"From: a@b.example\nSubject: hi\n\n\xc3\xa9t\xc3\xa9 in 8 bits",
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_inputs_never_raise(raw: bytes):
    result = run(raw)
    assert result.kind in KINDS
    assert result.reasons


def test_a_human_reply_about_an_out_of_office_is_not_an_auto_reply():
    raw = (b"From: Bob <bob@prospect.example>\r\nTo: roadmap@acumen.example\r\n"
           b"Subject: Re: out of office next week, let's talk after\r\nMessage-ID: <h1@prospect.example>\r\n\r\n"
           b"I'm away next week; can we talk the week after?\r\n")
    assert classify(raw).kind == "human"

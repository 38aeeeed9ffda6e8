"""The mail we send, read as receivers read it: the raw bytes the SMTP server accepted.

Python's parser decodes RFC 2047 words that no receiver would decode in a Message-ID or a
List-Unsubscribe URI, so these tests look at the bytes and use the parsed view only for bodies.
"""

from __future__ import annotations

import base64
import re
import time
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.utils import format_datetime

import dkim
import nacl.signing
import pytest
from sqlalchemy import select

from service import intake, mailer, outbound
from service.extensions import db
from service.models import Campaign, Contact, Event, Outbound
from service.queue import queue_inbound
from tests.world import parse, run_worker

# Exchange Online's Message-IDs run past 78 columns, which Python's folder would encode.
EXCHANGE_ID = "PH0PR11MB5095C0FFEE1234567890ABCDEF1234@PH0PR11MB5095.namprd11.prod.outlook.com"
LONG_BASE = "https://roadmap.acumenmanagementgroup.com/follow-through/prospect-desk/links-for-readers/x1234567890"
LITERAL = ("message-id", "in-reply-to", "references", "list-unsubscribe", "list-unsubscribe-post",
           "x-follow-through-loop", "thread-index", "auto-submitted")


def test_the_fixtures_are_the_sizes_the_issue_names():
    assert len(f"<{EXCHANGE_ID}>") == 81 and len(LONG_BASE) == 100


def request(
    message_id: str = EXCHANGE_ID, subject: str = "Roadmap please", sender: str = "Bob Prospect <bob@prospect.example>",
    references: list[str] | None = None, thread_index: str | None = None,
) -> bytes:
    """A request as Exchange writes it, headers folded by hand (Python's own folder would encode them)."""
    lines = [
        "Authentication-Results: mx.acumen.example; dmarc=pass header.from=prospect.example",
        f"From: {sender}", "To: roadmap@acumen.example", f"Subject: {subject}",
        f"Date: {format_datetime(datetime.now(UTC))}", f"Message-ID: <{message_id}>",
    ]
    if references:
        lines.append("References: " + "\r\n ".join(f"<{r}>" for r in references))
    if thread_index:
        lines.append(f"Thread-Index: {thread_index}")
    lines += ["MIME-Version: 1.0", 'Content-Type: text/plain; charset="utf-8"', "Content-Transfer-Encoding: 8bit"]
    body = "Hi Ken, please send me the Execution Success Roadmap. Thanks, Bob"
    head = "\r\n".join(lines)
    return f"{head}\r\n\r\n{body}\r\n".encode()


def arrive(app, raw: bytes) -> None:
    with app.app_context():
        row = intake.store(db.session, "test", 1, int(time.time() * 1000), raw, None)
        db.session.commit()
        queue_inbound(row.id)


def head(raw: bytes) -> list[bytes]:
    """The header block as physical lines (CRLF removed)."""
    block = raw.split(b"\r\n\r\n", 1)[0]
    return block.split(b"\r\n")


def fields(raw: bytes) -> dict[str, list[bytes]]:
    """Each header's physical lines, by lower-case name, in order."""
    found: dict[str, list[bytes]] = {}
    current: list[bytes] = []
    for line in head(raw):
        if line[:1] in (b" ", b"\t"):
            current.append(line)
            continue
        current = [line]
        found.setdefault(line.split(b":", 1)[0].lower().decode(), []).append(current)
    return {name: [b"\r\n".join(lines) for lines in values] for name, values in found.items()}


def value(raw: bytes, name: str) -> str:
    """One header's value, unfolded by hand (CRLF removed, the whitespace kept), not decoded."""
    [folded] = fields(raw)[name]
    return folded.split(b":", 1)[1].replace(b"\r\n", b"").strip().decode("ascii")


def assert_literal(raw: bytes) -> None:
    assert b"\r\n" in raw and not re.search(rb"[^\r]\n", raw), "CRLF line ends only"
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    for name, values in fields(raw).items():
        if name not in LITERAL:
            continue
        for folded in values:
            assert b"=?" not in folded, f"{name} went out encoded: {folded!r}"
            for line in folded.split(b"\r\n")[1:]:  # folded only at whitespace between tokens
                assert re.fullmatch(rb" \S.*", line), f"{name} folded inside a token: {folded!r}"
            for token in re.findall(rb"<[^>]*>", folded):
                assert b"\r\n" not in token


def test_an_exchange_request_with_a_long_base_url_and_a_big_contact_id_is_answered_with_literal_headers(
    make_app, sink
):
    from tests.conftest import DEFAULT_YAML, _load

    app = make_app(BASE_URL=LONG_BASE)
    _load(app, DEFAULT_YAML.read_text().replace("after: 3d", "after: 1s").replace('window: "mon-fri 08:00-18:00"',
                                                                                  "window: null"))
    with app.app_context():
        db.session.add(Contact(id=1234567, email="bob@prospect.example", name="Bob Prospect",
                               domain="prospect.example"))
        db.session.commit()
    arrive(app, request())
    run_worker(app)
    raw = sink.wait_for(1)[0].data
    assert_literal(raw)
    assert value(raw, "in-reply-to") == f"<{EXCHANGE_ID}>"
    assert value(raw, "references") == f"<{EXCHANGE_ID}>"
    own_id = value(raw, "message-id")
    assert re.fullmatch(r"<[^<>\s]+@acumen\.example>", own_id)
    https, mailto = value(raw, "list-unsubscribe").split(", ")
    assert https.startswith(f"<{LONG_BASE}/u/") and https.endswith(">")
    assert mailto.startswith("<mailto:roadmap+unsubscribe@acumen.example?subject=unsubscribe%20")
    assert value(raw, "list-unsubscribe-post") == "List-Unsubscribe=One-Click"
    with app.app_context():
        assert db.session.scalar(select(Outbound.contact_id)) == 1234567

    time.sleep(1.2)  # the follow-up is due one second after the magnet
    for _ in range(20):
        run_worker(app)
        if len(sink.messages) == 2:
            break
        time.sleep(0.5)
    follow_up = sink.wait_for(2)[1].data
    assert_literal(follow_up)
    assert value(follow_up, "in-reply-to") == own_id
    assert value(follow_up, "references") == f"<{EXCHANGE_ID}> {own_id}"


def test_a_long_thread_keeps_its_first_and_latest_references_literally(world, sink):
    older = [f"{n:03d}.{'x' * 60}@mail.prospect.example" for n in range(40)]
    arrive(world, request(references=older))
    run_worker(world)
    raw = sink.wait_for(1)[0].data
    assert_literal(raw)
    kept = value(raw, "references").split()
    assert len(kept) == outbound.REFERENCES_KEPT
    assert kept[0] == f"<{older[0]}>" and kept[-1] == f"<{EXCHANGE_ID}>"
    assert kept[-2] == f"<{older[-1]}>"


def test_a_non_ascii_name_and_subject_are_still_encoded_correctly(world, sink):
    arrive(world, request(subject="=?utf-8?q?Bitte_die_Roadmap_=E2=80=94_danke_sch=C3=B6n?=",
                          sender="=?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <juergen@prospect.example>"))
    run_worker(world)
    raw = sink.wait_for(1)[0].data
    assert_literal(raw)
    assert raw.split(b"\r\n\r\n", 1)[0].isascii()
    to, subject = value(raw, "to"), value(raw, "subject")
    assert "=?utf-8?" in to.lower() and "=?utf-8?" in subject.lower()
    assert str(make_header(decode_header(to))) == "Jürgen Müller <juergen@prospect.example>"
    assert str(make_header(decode_header(subject))) == "Re: Bitte die Roadmap — danke schön"
    assert parse(raw)["Thread-Topic"] == "Bitte die Roadmap — danke schön"


def test_the_text_is_flowed_at_72_columns_and_the_html_a_complete_document(world, sink):
    arrive(world, request(message_id="short@prospect.example"))
    run_worker(world)
    raw = sink.wait_for(1)[0].data
    msg = parse(raw)
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain.get_param("format") == "flowed"
    text = plain.get_content().replace("\r\n", "\n")
    lines = text.splitlines()
    assert all(len(line) <= 72 or " " not in line.strip() for line in lines), "only an unbreakable URL is longer"
    assert "-- " in lines, "the signature separator survives"
    # Joining soft breaks (a line ending in a space) gives the paragraph back as it was written.
    joined = re.sub(r" \n", " ", text.split("\n-- \n")[0])
    assert "Page 4 maps out the sales leader's week, the way a good coach maps out the week before a game." in joined
    page = html.get_content()
    assert page.lstrip().startswith("<!doctype html>")
    assert '<meta charset="utf-8">' in page and "<title>Re: Roadmap please</title>" in page and "<head>" in page
    # The footer says the same in both parts: it comes from one template.
    why = "You are getting this because you asked Ken Thoreson for the Execution Success Roadmap."
    assert why in re.sub(r" \n", " ", text) and why in page


def test_flowed_text_stuffs_what_a_reader_would_take_for_a_quote_or_a_mbox_line():
    text = mailer.flowed("From here on\n> quoted\n pre\n-- \n" + "word " * 40)
    lines = text.split("\n")
    assert lines[:4] == [" From here on", "> quoted", "  pre", "-- "]
    assert all(line.endswith(" ") for line in lines[4:-1]) and not lines[-1].endswith(" ")
    assert all(len(line) <= 72 for line in lines)


def test_the_attachment_is_named_after_the_magnet(world, sink):
    arrive(world, request())
    run_worker(world)
    raw = sink.wait_for(1)[0].data
    assert b'Content-Disposition: attachment; filename="Execution-Success-Roadmap.pdf"' in raw
    assert b"roadmap.pdf" not in raw


def test_a_display_name_set_on_the_asset_is_what_the_prospect_sees(world, sink):
    with world.app_context():
        [asset] = db.session.scalar(select(Campaign)).assets
        asset.display_name = "Acumen Roadmap 2027.pdf"
        db.session.commit()
    arrive(world, request())
    run_worker(world)
    assert b'filename="Acumen Roadmap 2027.pdf"' in sink.wait_for(1)[0].data


@pytest.mark.parametrize("delivery, link_above, linked", [("link", None, True), ("auto", 1000, True),
                                                          ("auto", 10_000_000, False), ("attach", None, False)])
def test_the_magnet_goes_as_a_link_an_attachment_or_by_its_size(world, sink, delivery, link_above, linked):
    with world.app_context():
        campaign = db.session.scalar(select(Campaign))
        campaign.delivery, campaign.link_above = delivery, link_above
        db.session.commit()
    arrive(world, request())
    run_worker(world)
    raw = sink.wait_for(1)[0].data
    msg = parse(raw)
    assert (b"application/pdf" in raw) is not linked
    url = re.search(r"https://desk\.acumen\.example/d/[A-Za-z0-9_.-]+", msg.get_body(("plain",)).get_content())
    assert bool(url) is linked
    assert ("attached as a" in msg.get_body(("plain",)).get_content()) is not linked, "the text tells the truth"
    if linked:
        assert url.group(0) in msg.get_body(("html",)).get_content()
        assert "Download Execution-Success-Roadmap.pdf" in msg.get_body(("plain",)).get_content()


def _index(text: str) -> bytes:
    return base64.b64decode(text)


def test_replies_carry_thread_topic_and_extend_outlooks_thread_index(world, sink):
    theirs = base64.b64encode(b"\x01" + bytes(range(1, 6)) + bytes(range(16))).decode()
    arrive(world, request(thread_index=theirs))
    run_worker(world)
    raw = sink.wait_for(1)[0].data
    assert_literal(raw)
    magnet = _index(value(raw, "thread-index"))
    assert len(magnet) == 27 and magnet[:22] == _index(theirs)
    assert value(raw, "thread-topic") == "Roadmap please"
    time.sleep(2.2)
    for _ in range(20):
        run_worker(world)
        if len(sink.messages) == 2:
            break
        time.sleep(0.5)
    follow_up = _index(value(sink.wait_for(2)[1].data, "thread-index"))
    assert len(follow_up) == 32 and follow_up[:27] == magnet


def test_a_new_thread_index_starts_with_the_time_and_a_guid():
    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    first = _index(outbound.thread_index(None, now))
    assert len(first) == 22 and first[0] == 1
    filetime = int.from_bytes(first[1:6], "big") << 24
    assert abs(datetime(1601, 1, 1, tzinfo=UTC) + timedelta(microseconds=filetime // 10) - now) < timedelta(seconds=2)
    later = _index(outbound.thread_index(base64.b64encode(first).decode(), now + timedelta(hours=1)))
    delta = int.from_bytes(later[22:26], "big")
    assert delta >> 31 == 0 and abs((delta << 18) / 10_000_000 - 3600) < 2  # an hour, at the header's 1.7 s grain
    assert len(_index(outbound.thread_index("not base64!", now))) == 22, "a broken index starts a new thread"


def _dns(record: bytes, selector: bytes = b"ft2026"):
    def lookup(name, timeout=5):
        assert name == selector + b"._domainkey.acumen.example."
        return record
    return lookup


def test_dkim_is_relaxed_relaxed_and_oversigns_from_subject_and_unsubscribe(make_app, sink, dkim_key):
    from tests.conftest import DEFAULT_YAML, _load

    private, record = dkim_key
    app = make_app(DKIM_SELECTOR="ft2026", DKIM_PRIVATE_KEY=private)
    _load(app, DEFAULT_YAML.read_text())
    arrive(app, request())
    run_worker(app)
    raw = sink.wait_for(1)[0].data
    signature = value(raw, "dkim-signature").replace(" ", "")
    assert "c=relaxed/relaxed" in signature
    signed = re.search(r"h=([^;]+)", signature).group(1).lower().split(":")
    for name in ("from", "subject", "list-unsubscribe", "list-unsubscribe-post"):
        assert signed.count(name) == len(fields(raw)[name]) + 1, name
    assert dkim.verify(raw, dnsfunc=_dns(record))
    # A relay that refolds a header and trims trailing spaces keeps the signature valid...
    relayed = raw.replace(b"\r\nSubject: Re: Roadmap please", b"\r\nSubject: Re:\r\n  Roadmap   please")
    relayed = re.sub(rb" +\r\n", b"\r\n", relayed)
    assert relayed != raw and dkim.verify(relayed, dnsfunc=_dns(record))
    # ...while a second From prepended above it breaks the signature.
    sig_end = raw.index(b"\r\n", raw.index(b"b=", raw.index(b"DKIM-Signature")))
    while raw[sig_end + 2:sig_end + 3] in (b" ", b"\t"):
        sig_end = raw.index(b"\r\n", sig_end + 2)
    forged = raw[:sig_end + 2] + b"From: Billing <pay@evil.example>\r\n" + raw[sig_end + 2:]
    assert not dkim.verify(forged, dnsfunc=_dns(record))


def test_an_ed25519_signature_rides_beside_the_rsa_one(make_app, sink, dkim_key):
    from tests.conftest import DEFAULT_YAML, _load

    private, record = dkim_key
    key = nacl.signing.SigningKey.generate()
    ed_record = b"v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(key.verify_key))
    app = make_app(DKIM_SELECTOR="ft2026", DKIM_PRIVATE_KEY=private,
                   DKIM_ED25519_KEY=base64.b64encode(bytes(key)).decode(), DKIM_ED25519_SELECTOR="ed2026")
    _load(app, DEFAULT_YAML.read_text())
    arrive(app, request())
    run_worker(app)
    raw = sink.wait_for(1)[0].data
    assert len(fields(raw)["dkim-signature"]) == 2
    records = {b"ft2026._domainkey.acumen.example.": record, b"ed2026._domainkey.acumen.example.": ed_record}

    def lookup(name, timeout=5):
        return records[name]

    verifier = dkim.DKIM(raw)
    assert verifier.verify(idx=0, dnsfunc=lookup) and verifier.verify(idx=1, dnsfunc=lookup)
    assert b"a=ed25519-sha256" in fields(raw)["dkim-signature"][0].replace(b"\r\n ", b"").replace(b" ", b"")


def test_one_complaint_per_thousand_sends_is_the_limit(world):
    with world.app_context():
        now = datetime.now(UTC)
        db.session.add_all(
            Outbound(key=f"k{n}", kind="magnet", to_address=f"p{n}@x.example", message_id=f"m{n}@acumen.example",
                     state="sent", sent_at=now)
            for n in range(1000)
        )
        db.session.add(Event(kind="complaint", detail="one"))
        db.session.commit()
        assert outbound.breaker(db.session, world.config) is None
        db.session.add(Event(kind="complaint", detail="two"))
        db.session.commit()
        assert "2 spam complaints for 1000 sends" in outbound.breaker(db.session, world.config)

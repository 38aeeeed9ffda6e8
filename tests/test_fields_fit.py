"""Every field fits: what comes from mail or the admin is cleaned, encoded, cut or refused before it
reaches a header, an envelope or a render; never a broken line, a different address or a 500.

Mail is read as receivers read it: the bytes an SMTP server accepted.
"""

from __future__ import annotations

import io
import re
import time
import tracemalloc
from email.header import decode_header, make_header

import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select

from service import campaigns, mailer, outbound
from service.extensions import db
from service.models import Asset, Campaign, Contact, Outbound
from service.queue import queue_send
from tests.conftest import PDF
from tests.servers import SmtpSink, _SinkHandler, free_port
from tests.test_admin_support import post, signed_in, text, token
from tests.world import parse, run_worker

NESTED = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
HUGE = "{{ 'x' * 10**8 }}"


class _Recording(SMTP):
    """aiosmtpd's server, keeping each RCPT TO argument as the client wrote it (its parser unquotes)."""

    async def smtp_RCPT(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's command hook
        self.event_handler.written.append(arg)
        await super().smtp_RCPT(arg)


@pytest.fixture
def plain_server():
    """An SMTP server that offers no SMTPUTF8: (its captured mail, the RCPT TO arguments, its port)."""
    holder = SmtpSink()
    handler = _SinkHandler(holder)
    handler.written = []

    class _Controller(Controller):
        def factory(self):
            return _Recording(self.handler, **self.SMTP_kwargs)

    controller = _Controller(handler, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=False)
    controller.start()
    yield holder, handler.written, controller.port
    controller.stop()


def magnet(assets: list[Asset] | None = None) -> Campaign:
    return Campaign(name="Execution Success Roadmap", slug="roadmap", magnet_subject="Your roadmap",
                    magnet_text="Hi {{ contact.first_name or 'there' }}, here it is.", delivery="attach",
                    assets=assets or [])


def deliver(app, to: str, name: str = "Bob Prospect", subject: str = "Re: Roadmap please",
            campaign: Campaign | None = None, **settings) -> None:
    """Compose and send one magnet the way the send job does, without a ledger row in the database."""
    with app.app_context():
        settings = {**app.config, **settings}
        row = Outbound(id=1, kind="magnet", to_address=to, subject=subject, message_id="fit.1@acumen.example",
                       references="")
        msg = mailer.compose(row, Contact(id=7, email=to, name=name), campaign or magnet(), None, settings)
        transport = mailer.Transport(settings)
        try:
            transport.send(mailer.to_bytes(msg, settings), "roadmap@acumen.example", to, "fit")
        finally:
            transport.close()


def planned(app, to: str, name: str = "Bob Prospect") -> int:
    """A magnet to `to` on the ledger, queued for the worker."""
    with app.app_context():
        campaign = db.session.scalar(select(Campaign))
        contact = Contact(email=to, name=name, domain=to.rsplit("@", 1)[1])
        db.session.add(contact)
        db.session.flush()
        row = outbound.plan(db.session, f"fit:{to}", "magnet", to, "acumen.example", "Re: Roadmap please",
                            campaign_id=campaign.id, contact_id=contact.id)
        db.session.commit()
        queue_send(row)
        return row.id


def ledger(app, row_id: int) -> Outbound:
    with app.app_context():
        row = db.session.get(Outbound, row_id)
        db.session.expunge(row)
        return row


def head(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def physical(raw: bytes, name: str) -> list[bytes]:
    """One top-level header's lines as they were written."""
    lines = head(raw)
    start = next(i for i, line in enumerate(lines) if line.lower().startswith(name.lower().encode() + b":"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i][:1] not in (b" ", b"\t")), len(lines))
    return lines[start:end]


def header(raw: bytes, name: str) -> bytes:
    """One top-level header as it was written, folded lines joined (CRLF removed)."""
    return b"".join(physical(raw, name))


def decoded(raw: bytes, name: str) -> str:
    return str(make_header(decode_header(header(raw, name).split(b":", 1)[1].decode()))).strip()


def content_disposition(raw: bytes) -> bytes:
    """The attachment's Content-Disposition, folded lines joined."""
    found = re.search(rb"Content-Disposition: attachment;[^\r]*(?:\r\n[ \t][^\r]*)*", raw)
    return found[0].replace(b"\r\n", b"")


# --------------------------------------------------------------------------- headers


def test_a_hostile_display_name_and_a_1000_character_subject_go_out_clean_in_short_lines(app, sink):
    name = "Bob\x00 \u202eevil\u202c\r\nBcc: all@x.example\t" + "Prospect " * 30
    deliver(app, "bob@prospect.example", name=name, subject="Re: " + "Roadmap\x07 " * 125)
    raw = sink.wait_for(1)[0].data
    assert all(len(line) <= 998 for line in raw.split(b"\r\n")), "no line a server would refuse"
    for name in ("To", "Subject", "Thread-Topic"):
        assert all(len(line) <= 78 for line in physical(raw, name)), f"{name} folded as RFC 5322 §2.1.1 asks"
    assert b"\x00" not in raw and b"\x07" not in raw
    msg = parse(raw)
    [to] = msg["To"].addresses
    assert to.addr_spec == "bob@prospect.example" and msg["Bcc"] is None
    assert to.display_name == ("Bob evil Bcc: all@x.example " + "Prospect " * 30)[:64].rstrip()
    subject = decoded(raw, "Subject")
    assert len(subject) == mailer.SUBJECT_MAX and subject.startswith("Re: Roadmap Roadmap ")
    assert decoded(raw, "Thread-Topic") == subject[4:]


def test_a_display_name_too_long_for_a_mail_line_is_cut_and_an_empty_one_dropped(app, sink):
    deliver(app, "bob@prospect.example", name="x" * 200)  # Python cannot fold an unbroken quoted name
    deliver(app, "ann@prospect.example", name="\u202e\x01 \u200f")
    first, second = (m.data for m in sink.wait_for(2))
    assert header(first, "To") == b"To: " + b"x" * 64 + b" <bob@prospect.example>"
    assert header(second, "To") == b"To: ann@prospect.example"


def test_header_text_keeps_every_script_and_the_joiners_of_emoji():
    kept = mailer.header_text("Jürgen  Müller \u0645\u062d\u0645\u062f 👩\u200d💻", 64)
    assert kept == "Jürgen Müller محمد 👩\u200d💻"
    assert mailer.header_text("\x00\u2066\u2069", 64) == ""


# --------------------------------------------------------------------------- addresses


def test_an_idn_domain_is_sent_to_in_its_ascii_form(world, sink):
    row_id = planned(world, "bob@bücher.example")
    run_worker(world)
    got = sink.wait_for(1)[0]
    assert got.rcpt_tos == ["bob@xn--bcher-kva.example"]
    assert header(got.data, "To") == b"To: Bob Prospect <bob@xn--bcher-kva.example>"
    assert b"\r\n".join(head(got.data)).isascii()
    assert ledger(world, row_id).state == outbound.SENT


@pytest.mark.parametrize("stored", ["john..doe@x.example", '"john..doe"@x.example'])
def test_a_local_part_that_needs_quotes_goes_out_quoted_in_rcpt_and_to(app, plain_server, stored):
    # A parser that drops the quotes (parseaddr does) leaves john..doe, which is no valid dot-atom:
    # the only address it can have meant is the quoted one (RFC 5321 §4.1.2).
    holder, written, port = plain_server
    deliver(app, stored, SMTP_PORT=port)
    raw = holder.wait_for(1)[0].data
    assert written == ['TO:<"john..doe"@x.example>']
    assert header(raw, "To") == b'To: Bob Prospect <"john..doe"@x.example>'


def test_a_utf8_local_part_travels_with_smtputf8_where_the_server_offers_it(world, sink):
    row_id = planned(world, "jürgen@prospect.example", name="Jürgen")
    run_worker(world)
    got = sink.wait_for(1)[0]
    assert got.rcpt_tos == ["jürgen@prospect.example"]
    assert header(got.data, "To") == 'To: "Jürgen" <jürgen@prospect.example>'.encode()  # RFC 6532: plain UTF-8
    assert ledger(world, row_id).state == outbound.SENT


def test_a_utf8_local_part_is_refused_with_the_reason_where_the_server_lacks_smtputf8(world, plain_server):
    holder, written, port = plain_server
    world.config["SMTP_PORT"] = port
    row_id = planned(world, "jürgen@prospect.example")
    run_worker(world)
    row = ledger(world, row_id)
    assert row.state == outbound.FAILED and "does not offer SMTPUTF8" in row.smtp_response
    assert written == [] and holder.messages == []
    with world.app_context():
        assert db.session.scalar(select(Contact).where(Contact.email == "jürgen@prospect.example")) is not None


def test_an_address_that_cannot_be_written_is_refused_for_good():
    for address in ("bob@bad..bücher", "no-at-sign", "bob\r\n@x.example"):
        with pytest.raises(mailer.SendError) as refused:
            mailer.wire_address(address)
        assert refused.value.permanent


# --------------------------------------------------------------------------- the render budget


@pytest.mark.parametrize("source, says", [
    (NESTED, "took longer than 2 s"),
    (HUGE, "produced more than 2 MB"),
    ("{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "2 MB"),
    ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}", "2 s"),
    ("{% for i in range(10000) %}{{ 'y' * 1000 }}{% endfor %}", "2 MB"),
    ("{{ 10 ** (10 ** 8) }}", "2 MB"),
    ("{{ range(10**6)|list|length }}", "limited to 10,000 numbers"),
])
def test_a_runaway_template_stops_within_its_budget_and_says_why(source, says):
    started = time.monotonic()
    with pytest.raises(mailer.TemplateBudgetError, match=re.escape(says)):
        mailer.render_content(source, {})
    assert time.monotonic() - started < mailer.RENDER_SECONDS + 1


@pytest.mark.parametrize("source", [
    "{{ 'x'.center(10**9) }}", "{{ 'x'.ljust(width=10**9) }}", "{{ 'x'.zfill(10**9) }}",
    "{{ 'x'|center(10**9) }}", "{{ 'x'|indent(10**9) }}",
    "{{ '%999999999s' % 'x' }}", "{{ '%.999999999f' % 1.5 }}", "{{ '%999999999s'|format('x') }}",
    "{{ '{:>999999999}'.format('x') }}", "{{ '{:>{w}}'.format('x', w=10**9) }}",
])
def test_a_huge_width_is_refused_before_its_text_is_made(source):
    tracemalloc.start()
    try:
        with pytest.raises(mailer.TemplateBudgetError, match="more than 2 MB"):
            mailer.render_content(source, {})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < mailer.RENDER_CHARS  # a gigabyte was never allocated


def test_an_ordinary_template_renders_as_jinjas_own_sandbox_renders_it():
    source = ("{% macro hi(n) %}<{{ n }}>{% endmacro %}{{ hi(contact.name) }} {{ '<b>' ~ contact.name ~ '</b>' }}"
              "{% for c in contact.name %}[{{ loop.index }}{{ c }}]{% else %}none{% endfor %}"
              "{{ 'ab' * 3 }} {{ 2 ** 10 }} {{ [1, 2] + [3] }} {{ '%s-%d'|format('a', 1234567890) }}"
              "{{ '{:>{w}}|{:,}'.format('x', 1234567890, w=4) }} {{ '%5.1f%%' % 12.34 }} {{ 'x'.center(5) }}")
    context = {"contact": {"name": "<Bob>"}}
    for html in (False, True):
        plain = SandboxedEnvironment(autoescape=html).from_string(source).render(context)
        assert mailer.render_content(source, context, html=html) == plain


@pytest.mark.parametrize("source, says", [(NESTED, "took longer than 2 s"), (HUGE, "produced more than 2 MB")])
def test_the_preview_says_when_a_template_hits_its_budget(world, source, says):
    client = signed_in(world)
    started = time.monotonic()
    frame = client.post("/admin/campaigns/preview", data={
        "slug": "x", "name": "X", "magnet_subject": "s", "magnet_text": source, "magnet_html": "",
        "timezone": "UTC", "csrf_token": token(client)})
    assert time.monotonic() - started < 2 * mailer.RENDER_SECONDS + 2
    assert frame.status_code == 200 and len(frame.data) < 100_000
    assert f"This mail cannot be rendered: TemplateBudgetError: the template {says}" in text(frame)


def test_a_send_whose_template_hits_its_budget_fails_with_the_reason(world, sink):
    with world.app_context():
        db.session.scalar(select(Campaign)).magnet_text = HUGE
        db.session.commit()
    row_id = planned(world, "bob@prospect.example")
    run_worker(world)
    row = ledger(world, row_id)
    assert row.state == outbound.FAILED and "the template produced more than 2 MB" in row.smtp_response
    assert sink.messages == []


# --------------------------------------------------------------------------- attachment names


def test_a_japanese_file_name_is_kept_and_mailed_with_an_ascii_fallback(world, sink):
    client = signed_in(world)
    campaign_id = _campaign_id(world)
    response = post(client, f"/admin/campaigns/{campaign_id}/assets",
                    {"file": (io.BytesIO(b"%PDF-1.4 guide"), "日本語.pdf")},
                    content_type="multipart/form-data")
    assert response.status_code == 302
    with world.app_context():
        campaign = db.session.get(Campaign, campaign_id)
        assert [a.filename for a in campaign.assets] == ["roadmap.pdf", "日本語.pdf"]
        campaign.assets[1].display_name = "日本語.pdf"
        assets = [Asset(filename=a.filename, display_name=a.display_name, content_type=a.content_type, data=a.data)
                  for a in campaign.assets]
        db.session.rollback()
    assets.append(Asset(filename="long.pdf", display_name="Müller " + "長い名前" * 40 + ".pdf",
                        content_type="application/pdf", data=b"%PDF"))
    deliver(world, "bob@prospect.example", campaign=magnet(assets))
    raw = sink.wait_for(1)[0].data
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    dispositions = [m[0].replace(b"\r\n", b"") for m in
                    re.finditer(rb"Content-Disposition: attachment;[^\r]*(?:\r\n[ \t][^\r]*)*", raw)]
    assert dispositions[0] == b'Content-Disposition: attachment; filename="Execution-Success-Roadmap.pdf"'
    assert dispositions[1] == (b"Content-Disposition: attachment; filename=\"attachment.pdf\"; "
                               b"filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.pdf")
    assert dispositions[2].startswith(b'Content-Disposition: attachment; filename="Muller.pdf"; '
                                      b"filename*0*=UTF-8''M%C3%BCller%20%E9%95%B7")
    pieces = re.findall(rb"filename\*(\d+)\*=([^;]+)", dispositions[2])
    assert [int(n) for n, _ in pieces] == list(range(len(pieces))) and len(pieces) > 1
    joined = b"".join(p for _, p in pieces).split(b"''", 1)[1].decode()
    assert re.sub("%([0-9A-F]{2})", lambda m: chr(int(m[1], 16)), joined).encode("latin-1").decode() == \
        "Müller " + "長い名前" * 40 + ".pdf"


def _campaign_id(app) -> int:
    with app.app_context():
        return db.session.scalar(select(Campaign.id))


@pytest.mark.parametrize("name, says", [
    ("invoice\u202efdp.exe", "a text-direction mark (U+202E)"),
    ("report\u2066.pdf", "a text-direction mark (U+2066)"),
    ("bad\x00name.pdf", "an invisible control character (U+0000)"),
    ("tab\tname.pdf", "an invisible control character (U+0009)"),
])
def test_control_and_bidi_characters_in_file_names_are_refused_with_a_400(world, name, says):
    client = signed_in(world)
    campaign_id = _campaign_id(world)
    upload = post(client, f"/admin/campaigns/{campaign_id}/assets", {"file": (io.BytesIO(PDF), name)},
                  content_type="multipart/form-data")
    assert upload.status_code == 400 and "Not attached:" in text(upload) and says in text(upload)
    with world.app_context():
        [asset] = db.session.get(Campaign, campaign_id).assets
    renamed = post(client, f"/admin/campaigns/{campaign_id}/assets/{asset.id}/name", {"name": name})
    assert renamed.status_code == 400 and "Name not saved:" in text(renamed) and says in text(renamed)
    with world.app_context():
        [asset] = db.session.get(Campaign, campaign_id).assets
        assert (asset.filename, asset.display_name) == ("roadmap.pdf", None)


@pytest.mark.parametrize("attachment", [{"file": "road\x00map.pdf"}, {"file": "roadmap.pdf", "name": "a\u202eb.pdf"},
                                        {"file": "road\u202emap.pdf"}])
def test_a_yaml_import_with_a_control_character_in_an_attachment_name_is_refused(world, tmp_path, attachment):
    document = yaml.safe_dump({"campaigns": [{"slug": "x", "name": "X", "magnet": {
        "subject": "s", "text": "t", "attachments": [attachment]}}]}, allow_unicode=True)
    with world.app_context(), pytest.raises(campaigns.CampaignError, match="which a file name may not"):
        campaigns.import_yaml(db.session, document, tmp_path)  # the CLI's path
    response = post(signed_in(world), "/admin/campaigns/import",
                    {"file": (io.BytesIO(document.encode()), "c.yaml")}, content_type="multipart/form-data")
    assert response.status_code == 400 and "Nothing imported:" in text(response)
    assert "which a file name may not" in text(response)
    with world.app_context():
        assert campaigns.by_slug(db.session, "x") is None

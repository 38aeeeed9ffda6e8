"""Inbound mail: parse raw bytes and classify what kind of mail it is.

Pure: standard library plus mail parsing, no database, no network. `parse` and
`classify` never raise; mail that cannot be read becomes "human, needs review".
Precedence follows reference/email-reliability.md §1.1:
loop → bounce → complaint → auto_reply → bulk → unsubscribe → request/human.
"""

from __future__ import annotations

import codecs
import email
import email.message
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.header import decode_header
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from html.parser import HTMLParser

from . import bounces

_MAX_TEXT = 500_000  # characters of body text kept; classification reads far less
_SCAN = 60_000  # characters the text rules look at
_MAX_PARTS = 500


@dataclass(frozen=True)
class CampaignRule:
    """How inbound mail triggers one campaign; the caller passes them in priority order."""

    slug: str
    addresses: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class Identity:
    """Who "we" are, so our own mail, bounces and unsubscribes are recognised."""

    addresses: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    loop_header: str = "X-Follow-Through-Loop"
    bounce_address: str | None = None
    unsubscribe_address: str | None = None


@dataclass
class Parsed:
    """A message as the classifier and the intake see it."""

    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str
    from_name: str
    from_address: str | None
    reply_to: str | None
    recipients: tuple[str, ...]
    date: datetime | None
    text: str
    new_text: str
    headers: email.message.Message
    defects: tuple[str, ...]
    parse_failed: bool = False


@dataclass
class Classification:
    """What a message is, why, and what the bounce/out-of-office details say."""

    kind: str
    campaign: str | None = None
    reasons: list[str] = field(default_factory=list)
    bounce: dict | None = None
    ooo_until: date | None = None
    review: bool = False

    def as_json(self, file: str | None = None) -> dict:
        """The `classify` command's output object (DESIGN.md, "classify output")."""
        return {
            "file": file,
            "kind": self.kind,
            "campaign": self.campaign,
            "reasons": list(self.reasons),
            "bounce": self.bounce,
            "ooo_until": self.ooo_until.isoformat() if self.ooo_until else None,
        }


# ---------------------------------------------------------------- parse


def parse(raw: bytes) -> Parsed:
    """Parse raw RFC 5322 bytes; never raises, records what it could not read."""
    try:
        return _parse(raw if isinstance(raw, bytes | bytearray) else str(raw).encode())
    except Exception as exc:  # the contract: a bad message must not stop the pipeline
        return _failed(f"parse error: {type(exc).__name__}: {exc}")


def _parse(raw: bytes) -> Parsed:
    if not raw.strip():
        return _failed("empty message")
    # compat32 is the most forgiving policy with broken headers; we decode words ourselves.
    msg = email.message_from_bytes(bytes(raw))
    if not msg.keys():
        return _failed("no header fields: not an RFC 5322 message", msg)
    defects = _defects(msg)
    text = _body_text(msg, defects)
    name, address = _from(msg, defects)
    return Parsed(
        message_id=next(iter(_ids(msg.get("Message-ID"))), None),
        in_reply_to=_ids(msg.get("In-Reply-To")),
        references=_ids(msg.get("References")),
        subject=header_text(msg, "Subject", defects),
        from_name=name,
        from_address=address,
        reply_to=next(iter(_addresses(msg, ("Reply-To",))), None),
        recipients=_addresses(msg, ("To", "Cc", "Delivered-To", "X-Original-To")),
        date=_date(msg),
        text=text,
        new_text=split_reply(text)[0],
        headers=msg,
        defects=tuple(defects),
    )


def _failed(reason: str, msg: email.message.Message | None = None) -> Parsed:
    return Parsed(
        message_id=None, in_reply_to=(), references=(), subject="", from_name="",
        from_address=None, reply_to=None, recipients=(), date=None, text="", new_text="",
        headers=msg if msg is not None else email.message.Message(),
        defects=(reason,), parse_failed=True,
    )


def _defects(msg: email.message.Message) -> list[str]:
    found = []
    for part in bounces.walk(msg):
        found += [re.sub(r"(?<!^)(?=[A-Z])", " ", type(d).__name__).lower() for d in part.defects]
    return list(dict.fromkeys(found))[:20]


def header_text(msg: email.message.Message, name: str, defects: list[str] | None = None) -> str:
    """A header decoded from RFC 2047 words or raw 8-bit bytes; '' when absent."""
    value = msg.get(name)
    return "" if value is None else _decode_value(value, name, defects)


def _decode_value(value: object, name: str, defects: list[str] | None = None) -> str:
    if isinstance(value, str):  # unfold first: clients fold inside encoded words (RFC 2047 §2)
        value = re.sub(r"\r?\n[ \t]+", " ", value)
    try:
        chunks = decode_header(value)
    except Exception:  # a malformed encoded word: keep the raw text
        return re.sub(r"\s+", " ", str(value)).strip()
    out = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        if charset == "unknown-8bit" and defects is not None:
            defects.append(f"8-bit bytes in header {name}")
        out.append(_decode(chunk, charset, defects))
    return re.sub(r"\s+", " ", "".join(out)).strip()


def _decode(data: bytes, charset: str | None, defects: list[str] | None = None) -> str:
    """Bytes to text: the declared charset, else UTF-8, else Windows-1252 (never raises)."""
    name = _CHARSET_ALIASES.get((charset or "").lower().strip(), charset)
    if name and name not in ("unknown-8bit",):
        try:
            return data.decode(codecs.lookup(name).name, "replace")
        except (LookupError, ValueError):
            if defects is not None:
                defects.append(f"undecodable charset {charset}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


# Supersets of what senders declare, and labels Python does not know.
_CHARSET_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "shift_jis": "cp932", "x-sjis": "cp932",
    "iso-8859-8-i": "iso-8859-8", "us-ascii": None, "ascii": None, "unknown-8bit": None,
    "x-unknown": None, "x-user-defined": None, "ks_c_5601-1987": "cp949", "euc-kr": "cp949",
}


def _from(msg: email.message.Message, defects: list[str]) -> tuple[str, str | None]:
    if msg.get("From") is None:
        defects.append("no From header")
        return "", None
    name, address = parseaddr(header_text(msg, "From"))
    return name.strip(), address.strip().lower() or None


def _addresses(msg: email.message.Message, names: tuple[str, ...]) -> tuple[str, ...]:
    values = [_decode_value(v, n) for n in names for v in (msg.get_all(n) or [])[:20]]
    try:
        pairs = getaddresses(values)
    except Exception:
        pairs = []
    found = [a.strip().lower() for _, a in pairs if "@" in a]
    return tuple(dict.fromkeys(found))


def _ids(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    text = str(value)
    found = re.findall(r"<([^<>\s]+)>", text) or [t for t in text.split() if "@" in t]
    return tuple(dict.fromkeys(i.strip("<>") for i in found))


def _date(msg: email.message.Message) -> datetime | None:
    try:
        value = parsedate_to_datetime(str(msg.get("Date", "")))
    except Exception:
        return None
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def _body_text(msg: email.message.Message, defects: list[str]) -> str:
    """text/plain preferred, else the first HTML part as text; attachments never read."""
    plain, html = "", ""
    for count, part in enumerate(bounces.walk(msg)):
        if count > _MAX_PARTS or (plain and html):
            break
        ctype = part.get_content_type()
        if part.is_multipart() or _is_attachment(part) or ctype not in ("text/plain", "text/html"):
            continue
        if ctype == "text/plain" and not plain.strip():
            plain = _part_text(part, defects)
        elif ctype == "text/html" and not html:
            html = _part_text(part, defects)
    if not (plain or html) and msg.get_content_maintype() == "multipart" and not msg.is_multipart():
        plain = _part_text(msg, defects)  # no boundary matched: the whole body is all we have
    text = plain if plain.strip() else html_to_text(html) if html else ""
    return text.replace("\r\n", "\n").replace("\r", "\n")[:_MAX_TEXT]


def _is_attachment(part: email.message.Message) -> bool:
    return str(part.get("Content-Disposition", "")).strip().lower().startswith("attachment")


def _part_text(part: email.message.Message, defects: list[str]) -> str:
    try:
        data = part.get_payload(decode=True)
        charset = part.get_content_charset()
    except Exception as exc:
        defects.append(f"unreadable part: {type(exc).__name__}")
        return ""
    return _decode(data[: _MAX_TEXT * 4], charset, defects) if isinstance(data, bytes) else ""


class _HTMLText(HTMLParser):
    """HTML to plain text: block tags break lines, <blockquote> lines get '> ' (quoted)."""

    _BLOCK = frozenset({
        "p", "div", "br", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
        "pre", "section", "article", "header", "footer", "dd", "dt", "center", "address",
    })
    _SKIP = frozenset({"style", "script", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = [""]
        self.depth = self.skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._tag(tag, +1)

    def handle_endtag(self, tag: str) -> None:
        self._tag(tag, -1)

    def _tag(self, tag: str, step: int) -> None:
        if tag in self._SKIP:
            self.skip = max(0, self.skip + step)
        elif tag == "blockquote":
            self._newline()
            self.depth = max(0, self.depth + step)
        elif tag in self._BLOCK:
            self._newline()

    def _newline(self) -> None:
        self.lines.append("")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if not self.lines[-1] and self.depth:
            self.lines[-1] = "> " * self.depth
        self.lines[-1] += re.sub(r"[\s\xa0]+", " ", data)

    def text(self) -> str:
        lines = [line.strip() for line in self.lines]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def html_to_text(html: str) -> str:
    """Readable text from an HTML body (stdlib only); never raises."""
    converter = _HTMLText()
    try:
        converter.feed(html[:_MAX_TEXT * 2])
        converter.close()
    except Exception:
        pass
    return converter.text()


# ---------------------------------------------------------------- new text

# "On … wrote:" and its translations (en, de, fr, es, nl, it, pt, pl, sv/da, ru).
_WROTE = (
    r"(?:wrote|schrieb|a\s+écrit|escribió|escribio|schreef|ha\s+scritto|escreveu|skrev"
    r"|napisał\(a\)|napisał|pisze|написал\w*|написала)"
)
# "Am …, schrieb Name <a@b>:" puts the name after the verb; Gmail adds "schrieb am <date>:".
_ATTRIBUTION = re.compile(
    rf"^(?:on|am|le|el|op|il|em|den|w\s+dniu)\b.{{0,300}}?{_WROTE}(?:\b.{{0,200}}:)?\s*$"
    rf"|^.{{0,300}}{_WROTE}\b.{{0,100}}:\s*$",
    re.IGNORECASE,
)
_FORWARD_MARKER = re.compile(
    r"^[-_=\s]*(?:forwarded\s+message|weitergeleitete\s+nachricht|message\s+transf[ée]r[ée]"
    r"|mensaje\s+reenviado|doorgestuurd\s+bericht|begin\s+forwarded\s+message"
    r"|anfang\s+der\s+weitergeleiteten\s+nachricht|d[ée]but\s+du\s+message\s+r[ée]exp[ée]di[ée]"
    r"|inicio\s+del\s+mensaje\s+reenviado|begin\s+doorgestuurd\s+bericht)\b.*$",
    re.IGNORECASE,
)
_REPLY_MARKER = re.compile(
    r"^\s*-{2,}\s*(?:original\s+message|ursprüngliche\s+nachricht|urspruengliche\s+nachricht"
    r"|original-nachricht|message\s+d'origine|mensaje\s+original|oorspronkelijk\s+bericht"
    r"|original\s+text|[\w' .-]{3,40})\s*-{2,}\s*$",
    re.IGNORECASE,
)
_HEADER_FROM = re.compile(r"^\*?(?:from|von|de|van|da|od|от|fra|från)\s*:\*?\s*\S", re.IGNORECASE)
_HEADER_SENT = re.compile(
    r"^\*?(?:sent|date|gesendet|datum|envoy[ée]|enviado|verzonden|fecha|data|отправлено|sendt"
    r"|skickat|verstuurd)\s*:", re.IGNORECASE
)
_SENT_FROM = re.compile(
    r"^(?:sent\s+from\s+my\s|sent\s+from\s+(?:outlook|mail\s+for)|get\s+outlook\s+for"
    r"|von\s+meinem\s+\S+\s+gesendet|envoy[ée]\s+de\s+mon|enviado\s+desde\s+mi"
    r"|verzonden\s+(?:vanaf|met)\s+mijn|gesendet\s+von\s+meinem)",
    re.IGNORECASE,
)
_VALEDICTION = re.compile(
    r"^(?:(?:best|kind|warm|warmest|many\s+thanks\s+and)\s+)?regards\b|^best(?:\s+wishes)?$"
    r"|^(?:cheers|thanks|thank\s+you|many\s+thanks|sincerely|yours\s+(?:truly|sincerely))$"
    r"|^(?:mit\s+)?(?:freundlichen|besten|viele|beste|liebe|freundliche)\s+gr(?:ü|ue)(?:ß|ss)(?:en|e)$"
    r"|^(?:mfg|gruß|grüße|lg|vg)$|^(?:bien\s+)?cordialement$|^bien\s+à\s+vous$|^salutations\b"
    r"|^(?:un\s+)?saludos?(?:\s+cordiales)?$|^atentamente$|^cordialmente$"
    r"|^(?:met\s+)?vriendelijke\s+groet(?:en)?$|^groet(?:en|jes)$",
    re.IGNORECASE,
)


# Our own rather than mail-parser-reply: on tests/mail it kept "-- " signatures, "Sent from
# my iPhone" and the Spanish/Dutch attributions as new text, which is where traps like a
# signature saying "stop sending" live.
def split_reply(text: str) -> tuple[str, str, bool]:
    """(new text, the quoted or forwarded rest, whether the rest is a forward)."""
    lines = text[:_SCAN].split("\n")
    cut, forward = _quote_start(lines)
    mine = [line for line in lines[:cut] if not line.lstrip().startswith(">")]
    mine = _strip_signature([line.rstrip() for line in mine if not _ATTRIBUTION.match(line)])
    new = re.sub(r"\n{3,}", "\n\n", "\n".join(mine)).strip()
    return new, "\n".join(lines[cut:]), forward


def _quote_start(lines: list[str]) -> tuple[int, bool]:
    """Index of the first line of the quoted/forwarded block, and whether it is a forward."""
    seen_text = False
    for i, line in enumerate(lines):
        s = line.strip()
        if _FORWARD_MARKER.match(s):
            return i, True
        quoted = _REPLY_MARKER.match(s) or _is_attribution(lines, i) or _outlook(lines, i)
        if seen_text and quoted:
            return i, False
        seen_text = seen_text or bool(s and not s.startswith(">"))
    return len(lines), False


def _is_attribution(lines: list[str], i: int) -> bool:
    s = lines[i].strip()
    if _ATTRIBUTION.match(s):
        return True
    # Clients wrap long attributions: "On Mon, … John <\njohn@x> wrote:"
    nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
    return bool(s and len(s) < 200 and nxt.endswith(":") and _ATTRIBUTION.match(f"{s} {nxt}"))


def _outlook(lines: list[str], i: int) -> bool:
    """Outlook's "From: … / Sent: …" header block (also after a line of underscores)."""
    s = lines[i].strip()
    if i + 1 < len(lines) and re.match(r"sent by:", lines[i + 1].strip(), re.I):
        return True  # Lotus Notes: "Name <address>" then "Sent by: …"
    if re.fullmatch(r"_{10,}", s):
        return any(_HEADER_FROM.match(x.strip()) for x in lines[i + 1 : i + 3])
    if not _HEADER_FROM.match(s):
        return False
    return any(_HEADER_SENT.match(x.strip()) for x in lines[i + 1 : i + 5])


def _strip_signature(lines: list[str]) -> list[str]:
    for i, line in enumerate(lines):
        # RFC 3676 §4.3: "-- " alone on a line starts the signature.
        if line in ("--", "-- ") or _SENT_FROM.match(line.strip()):
            return lines[:i]
    filled = [i for i, line in enumerate(lines) if line.strip()]
    for n, i in enumerate(filled):
        if n and len(filled) - n <= 7 and _VALEDICTION.match(lines[i].strip().rstrip(",.!")):
            return lines[:i]
    return lines


# ---------------------------------------------------------------- classify


def classify(
    message: bytes | Parsed, campaigns=(), identity: Identity | None = None
) -> Classification:
    """Classify raw bytes or a Parsed message; never raises (errors become human + review)."""
    try:
        parsed = message if isinstance(message, Parsed) else parse(message)
        return _classify(parsed, tuple(campaigns or ()), identity or Identity())
    except Exception as exc:  # the contract: a bad message must not stop the pipeline
        reason = f"classifier error: {type(exc).__name__}: {exc}"
        return Classification("human", reasons=[reason], review=True)


def _classify(p: Parsed, campaigns: tuple, identity: Identity) -> Classification:
    if p.parse_failed:
        reason = f"unparseable: {'; '.join(p.defects)}"
        return Classification("human", reasons=[reason], review=True)
    # The order is the precedence (email-reliability.md §1.1): machine mail first.
    steps = (_as_loop, _as_report, _as_unsubscribe_address, _as_auto_reply, _as_bulk,
             _as_unsubscribe, _as_request)
    for step in steps:
        result = step(p, campaigns, identity)
        if result is not None:
            return result
    return _as_human(p)


def _as_loop(p: Parsed, campaigns: tuple, identity: Identity) -> Classification | None:
    reasons = []
    if identity.loop_header and p.headers.get(identity.loop_header) is not None:
        reasons.append(f"{identity.loop_header} header: our own outbound mail")
    if p.from_address and p.from_address in {a.lower() for a in identity.addresses}:
        reasons.append(f"From {p.from_address} is our own address")
    # A DSN that our own MTA writes carries a Message-ID on our domain too: that is a bounce.
    report = bounces.report_type(p.headers) or bounces.is_system(p.from_address or "")
    if p.message_id and _on_domains(p.message_id, identity.domains) and not report:
        reasons.append(f"Message-ID <{p.message_id}> is on our domain")
    return Classification("loop", reasons=reasons) if reasons else None



def _on_domains(message_id: str, domains: tuple[str, ...]) -> bool:
    domain = message_id.rsplit("@", 1)[-1].strip(">").lower() if "@" in message_id else ""
    return any(domain == d.lower() or domain.endswith("." + d.lower()) for d in domains if d)


def _as_report(p: Parsed, campaigns: tuple, identity: Identity) -> Classification | None:
    report = bounces.detect(p)
    if report is None:
        return None
    if report.kind in ("bounce", "complaint"):
        details = {
            "recipients": report.recipients,
            "original_message_id": report.original_message_id,
            "verp_token": verp_token(p, identity),
        }
        return Classification(report.kind, reasons=report.reasons, bounce=details)
    return Classification("auto_reply", reasons=report.reasons)


def verp_token(p: Parsed, identity: Identity) -> str | None:
    """TOKEN of bounces+TOKEN@domain when our VERP bounce address received this."""
    return _plus_token(p, identity.bounce_address, _VERP_HEADERS)


_VERP_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "Cc")


def _plus_token(p: Parsed, base: str | None, names: tuple[str, ...]) -> str | None:
    if not base or "@" not in base:
        return None
    local, domain = (re.escape(part) for part in base.rsplit("@", 1))
    pattern = re.compile(rf"(?<![\w.+-]){local}\+([^@\s<>\"]+)@{domain}\b", re.I)
    for name in names:
        for value in p.headers.get_all(name) or []:
            found = pattern.search(str(value))
            if found:
                return found.group(1)
    return None


def _as_unsubscribe_address(
    p: Parsed, campaigns: tuple, identity: Identity
) -> Classification | None:
    # RFC 2369 mailto unsubscribes come from mail clients, often marked auto-submitted,
    # so they are read before the auto-reply rules.
    reasons = []
    base = (identity.unsubscribe_address or "").lower()
    if base and base in p.recipients:
        reasons.append(f"sent to our unsubscribe address {base}")
    token = _plus_token(p, identity.unsubscribe_address, _VERP_HEADERS)
    if token:
        reasons.append(f"sent to our unsubscribe address (token {token})")
    if str(p.headers.get("X-Apple-Unsubscribe", "")).strip().lower() == "true":
        reasons.append("X-Apple-Unsubscribe: true (Apple Mail unsubscribe button)")
    return Classification("unsubscribe", reasons=reasons) if reasons else None


# ---------------------------------------------------------------- auto-replies

_AUTO_SUBJECT = re.compile(
    r"^\s*(?:auto:|auto\s+response|automatic\s+reply|autosvar|automatisk\s+svar|automatisch\s+antwoord"
    r"|abwesenheitsnotiz|risposta\s+non\s+al\s+computer|respuesta\s+autom[áa]tica|fuori\s+sede"
    r"|out\s+of\s+(?:the\s+)?office|fr[åa]nvaro|r[ée]ponse\s+automatique|autorespons|auto-?reply"
    r"|automatische\s+antwort|away\s+until|on\s+vacation|vacation\s+reply)"
    r"|\(automatic\s+(?:reply|response)\)|\bout\s+of\s+(?:the\s+)?office\b|\bis\s+out\s+of\s+the\s+office"
    r"|\bautoreply\b|\bauto-reply\b|\bautoresponder\b|abwesenheitsnotiz|r[ée]ponse\s+automatique",
    re.IGNORECASE,
)
# A person's reply or forward ("Re: out of office next week?") is not an auto-reply by its subject.
_HUMAN_PREFIX = re.compile(r"^\s*(?:re|aw|sv|fw|fwd|wg|tr|rv|antw)\s*:", re.IGNORECASE)
_MARKED_AUTO = re.compile(r"\(automatic\s+(?:reply|response)\)|^\s*\w+\s*:\s*(?:auto:|automatic\s+reply)", re.I)
# Ticket systems and shared inboxes acknowledging receipt (not a person answering).
_ACK_SUBJECT = re.compile(
    r"empfangsbest\S{0,24}tigung|eingangsbest(?:ä|ae)tigung|accus[ée]\s+de\s+r[ée]ception"
    r"|acuse\s+de\s+recibo|ontvangstbevestiging|^\s*thank\s+you\s+for\s+(?:your\s+)?(?:e-?mail|message)"
    r"|we\s+(?:have\s+)?received\s+your\s+(?:request|e-?mail|message)"
    r"|your\s+(?:request|message|e-?mail)\s+has\s+been\s+received",
    re.IGNORECASE,
)
_TICKET_SUBJECT = re.compile(r"\[(?:ticket|case|request)?\s*#\s*\d+\]", re.IGNORECASE)
_AUTO_BODY = re.compile(
    r"this\s+is\s+an\s+auto(?:mated|matic|matically\s+generated)\s+(?:reply|response|message|e-?mail)"
    r"|dies\s+ist\s+eine\s+automatische\s+(?:antwort|nachricht)",
    re.IGNORECASE,
)
_READ_SUBJECT = re.compile(r"^\s*(?:read|gelesen|lu|le[íi]do|gelezen)\s*:", re.IGNORECASE)


def _as_auto_reply(p: Parsed, campaigns: tuple, identity: Identity) -> Classification | None:
    reasons = auto_reply_signals(p)
    if not reasons:
        return None
    bulk = bulk_signals(p)
    if bulk and all(r.startswith(_NOTIFICATION) for r in reasons):
        # RFC 3834 §5: auto-generated is a notification, not a reply; with list headers it is bulk.
        return Classification("bulk", reasons=reasons + bulk)
    return Classification("auto_reply", reasons=reasons, ooo_until=ooo_until(p))


_NOTIFICATION = ("Auto-Submitted: auto-generated", "Auto-Submitted: auto-notified")


def auto_reply_signals(p: Parsed) -> list[str]:
    """Every header or text rule that says a machine answered (RFC 3834 and the field)."""
    h = p.headers
    reasons = _auto_header_signals(h)
    if bounces.is_null(h, "Return-Path"):
        reasons.append("Return-Path <> (RFC 3834 §2: never answer a null sender)")
    if _AUTO_SUBJECT.search(p.subject) and (not _HUMAN_PREFIX.match(p.subject) or _MARKED_AUTO.search(p.subject)):
        reasons.append(f"Subject looks automatic: {p.subject[:80]!r}")
    if _ACK_SUBJECT.search(p.subject) or (_TICKET_SUBJECT.search(p.subject) and reasons):
        reasons.append(f"Subject is a receipt acknowledgement: {p.subject[:80]!r}")
    if _AUTO_BODY.search(p.new_text[:3000]):
        reasons.append("text says it is an automatic reply")
    receipt_like = bounces.is_null(h, "Return-Path") or h.get_content_type().endswith("tnef")
    if _READ_SUBJECT.match(p.subject) and receipt_like:
        reasons.append("read receipt (Read: subject from a null sender)")
    return list(dict.fromkeys(reasons))


def _auto_header_signals(h: email.message.Message) -> list[str]:
    reasons = []
    submitted = bounces.auto_submitted(h)
    if submitted and submitted != "no":  # RFC 3834 §5: only "no" means a person sent it
        reasons.append(f"Auto-Submitted: {submitted}")
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if str(h.get(name, "no")).strip().lower() not in ("no", "false", "0"):
            reasons.append(f"{name} header")
    for name, pattern in _AUTO_HEADERS:
        if any(re.match(pattern, str(v).strip(), re.I) for v in h.get_all(name) or []):
            reasons.append(f"{name}: {str(h.get(name)).strip()[:40]}")
    # Exchange OOF (Zammad's rule); X-Auto-Response-Suppress alone is only a request to us.
    suppress = str(h.get("X-Auto-Response-Suppress", "")).lower()
    if "all" in suppress and h.get("X-MS-Exchange-Inbox-Rules-Loop") is not None:
        reasons.append("Exchange out-of-office (X-Auto-Response-Suppress + Inbox-Rules-Loop)")
    return reasons


_AUTO_HEADERS = (
    ("X-Loop", r"yes|true"),
    ("X-FC-Machinegenerated", r"true"),
    ("Delivered-To", r"autoresponder"),
    ("X-Apple-Action", r"vacation"),
    ("Precedence", r"auto_reply"),
    ("X-Precedence", r"auto_reply"),
    ("X-POST-MessageClass", r".*autoresponder"),
)



# ---------------------------------------------------------------- out of office dates

_MONTHS = {
    **dict.fromkeys(["january", "jan", "januar", "jänner", "janvier", "janv", "enero", "ene",
                     "januari"], 1),
    **dict.fromkeys(["february", "feb", "februar", "février", "fevrier", "févr", "fevr", "febrero",
                     "februari"], 2),
    **dict.fromkeys(["march", "mar", "märz", "maerz", "mär", "mars", "marzo", "maart", "mrt"], 3),
    **dict.fromkeys(["april", "apr", "avril", "avr", "abril", "abr"], 4),
    **dict.fromkeys(["may", "mai", "mayo", "mei"], 5),
    **dict.fromkeys(["june", "jun", "juni", "juin", "junio"], 6),
    **dict.fromkeys(["july", "jul", "juli", "juillet", "juil", "julio"], 7),
    **dict.fromkeys(["august", "aug", "août", "aout", "agosto", "ago", "augustus"], 8),
    **dict.fromkeys(["september", "sep", "sept", "septembre", "septiembre", "setiembre"], 9),
    **dict.fromkeys(["october", "oct", "oktober", "okt", "octobre", "octubre"], 10),
    **dict.fromkeys(["november", "nov", "novembre", "noviembre"], 11),
    **dict.fromkeys(["december", "dec", "dezember", "dez", "décembre", "decembre", "déc",
                     "diciembre", "dic"], 12),
}
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DATE_FORMS = (
    re.compile(r"(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})"),
    re.compile(
        rf"(?<!\d)(?P<d>\d{{1,2}})(?:st|nd|rd|th|er|\.)?\s*(?:de\s+|of\s+)?(?P<mon>{_MONTH})\.?"
        r"(?![^\W\d_])"
        r"(?:\s*(?:de\s+)?,?\s*(?P<y>\d{4}))?", re.IGNORECASE),
    re.compile(
        rf"(?<![^\W\d_])(?P<mon>{_MONTH})\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?(?!\d)(?:,?\s*(?P<y>\d{{4}}))?",
        re.IGNORECASE),
    re.compile(r"(?<![\d.])(?P<a>\d{1,2})(?P<sep>[./])(?P<b>\d{1,2})(?:[./](?P<y>\d{4}|\d{2}))?"
               r"(?![\d:])(?!\s*(?:uhr|h\b|am\b|pm\b))", re.IGNORECASE),
)
# Words that introduce the day someone is back, strongest first (en, de, fr, es, nl).
_BACK_CUES = (
    re.compile(
        r"\b(?:back|return|returning|returns|reachable\s+again|wieder|zurück|zurueck|retour"
        r"|vuelta|regreso|regresaré|volveré|terug|until|till|through|bis|jusqu'au|jusqu’au|hasta"
        r"|t/m|tot\s+en\s+met)\b|\(returning", re.IGNORECASE),
    re.compile(r"\b(?:from|ab|à\s+partir\s+du|a\s+partir\s+del|vanaf|tot|to|au|al)\b", re.I),
)


def ooo_until(p: Parsed) -> date | None:
    """The return date an out-of-office states, or None."""
    sent = (p.date or datetime.now(UTC)).date()
    text = f"{p.subject}\n{(p.new_text or p.text)[:4000]}"
    for cues in _BACK_CUES:
        for cue in cues.finditer(text):
            found = _first_date(text[cue.end() : cue.end() + 60], sent)
            if found:
                return found
    return None


def _first_date(window: str, sent: date) -> date | None:
    matches = [m for form in _DATE_FORMS for m in form.finditer(window)]
    for match in sorted(matches, key=lambda m: m.start()):
        found = _to_date(match.groupdict(), sent)
        if found:
            return found
    return None


def _to_date(g: dict, sent: date) -> date | None:
    if g.get("mon"):
        candidates = [(_MONTHS.get(g["mon"].lower(), 0), int(g["d"]))]
    elif g.get("a"):
        a, b = int(g["a"]), int(g["b"])
        # 03.12. is day-month everywhere; 12/07 may be US month/day: pick the nearer future date.
        candidates = [(b, a)] if g["sep"] == "." else [(b, a), (a, b)]
    else:
        candidates = [(int(g["m"]), int(g["d"]))]
    dates = [d for m, day in candidates if (d := _dated(g.get("y"), m, day, sent))]
    ahead = sorted((d for d in dates if d >= sent - timedelta(days=1)), key=lambda d: d - sent)
    return ahead[0] if ahead else None


def _dated(year: str | None, month: int, day: int, sent: date) -> date | None:
    y = int(year) + (2000 if year and len(year) == 2 else 0) if year else sent.year
    try:
        found = date(y, month, day)
        if not year and found < sent - timedelta(days=60):
            found = date(y + 1, month, day)  # "back on 5 January" written in December
    except ValueError:
        return None
    return found if sent - timedelta(days=30) <= found <= sent + timedelta(days=400) else None


# ---------------------------------------------------------------- bulk

_BULK_LOCAL = re.compile(
    r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply|root|listserv|majordomo|mailman"
    r"|owner-.+|.+-owner|.+-request|.+-bounces(?:\+.*)?|mailer[-_]?daemon|.+-daemon|post[-_]?master)$",
    re.IGNORECASE,
)


def machine_address(address: str) -> bool:
    """no-reply@, mailer-daemon@, list-request@ and the like: nobody reads replies there."""
    return bool(_BULK_LOCAL.match(address.split("@")[0]))


# ESP and newsletter tooling; a hint that nobody typed this (email-reliability.md §1.8).
_ESP_HEADERS = ("Feedback-ID", "X-CSA-Complaints", "X-Campaign", "X-CampaignID", "X-MC-User",
                "X-SG-EID", "X-Mailchimp-Campaign")


def _as_bulk(p: Parsed, campaigns: tuple, identity: Identity) -> Classification | None:
    reasons = bulk_signals(p)
    return Classification("bulk", reasons=reasons) if reasons else None


def bulk_signals(p: Parsed) -> list[str]:
    """List, newsletter and notification markers (RFC 2369/2919, RFC 3834 §2)."""
    h = p.headers
    reasons = []
    for name in ("Precedence", "X-Precedence"):
        if re.match(r"\s*(bulk|list|junk)\b", str(h.get(name, "")), re.I):
            reasons.append(f"{name}: {str(h.get(name)).strip()}")
    listy = sorted({k for k in h if k.lower().startswith("list-")})
    listy += [k for k in ("X-Mailing-List", "Mailing-List", "X-BeenThere") if h.get(k) is not None]
    reasons += [f"{k} header" for k in listy]
    reasons += [f"{k} header (ESP tracking)" for k in _ESP_HEADERS if h.get(k) is not None]
    reasons += [f"{name} {addr} is a system sender" for name, addr in _senders(p)
                if _BULK_LOCAL.match(addr.split("@")[0])]
    return reasons


def _senders(p: Parsed) -> list[tuple[str, str]]:
    found = [("From", p.from_address or "")]
    for name in ("Sender", "Return-Path"):
        address = parseaddr(str(p.headers.get(name, "")))[1].lower()
        found.append((name, address))
    return [(n, a) for n, a in found if a]


# ---------------------------------------------------------------- unsubscribe

_UNSUBSCRIBE = re.compile(
    r"\bun-?subscribe\b|\bunsubscribing\b|\bopt\s+(?:me\s+)?out\b|\bremove\s+me\b"
    r"|\bremove\s+(?:my\s+(?:e-?mail\s+)?address|my\s+e-?mail)\b|\btake\s+me\s+off\b"
    r"|\bstop\s+(?:e-?mailing|sending|contacting|writing|messaging)\b"
    r"|\b(?:do\s+not|don't|dont)\s+(?:e-?mail|contact|write\s+to)\s+me\b"
    r"|\bno\s+more\s+(?:e-?mails|emails|messages|mail)\b|\bnot\s+interested\b.{0,30}\b(?:e-?mails|list)\b"
    r"|\babmelden\b|\babbestellen\b|\baustragen\b|\bkeine\s+(?:weiteren\s+)?(?:e-?mails|mails|nachrichten)"
    r"(?:\s+mehr)?\b|\bnicht\s+mehr\s+(?:an)?schreiben\b|\bd[ée]sabonner\b|\bd[ée]sinscri"
    r"|\bd[ée]sabonnement\b|\bne\s+plus\s+recevoir\b|\bretirez[- ]moi\b|\bsupprimez[- ]moi\b"
    r"|\bdarme\s+de\s+baja\b|\bdar\s+de\s+baja\b|\bcancelar\s+(?:mi\s+)?suscripci[óo]n\b"
    r"|\bno\s+quiero\s+recibir\b|\bno\s+me\s+env[íi]e[ns]?\b|\bafmelden\b|\buitschrijven\b"
    r"|\bschrijf\s+me\s+uit\b|\bgeen\s+(?:e-?mails?|mails?|berichten)\s+meer\b|\bverwijder\s+(?:mij|me)\b",
    re.IGNORECASE,
)
# A line like "Unsubscribe: https://…" is a footer, not a person asking.
_FOOTER = re.compile(
    r"https?://|www\.|mailto:|\bclick\b|(?:unsubscribe|opt\s+out)\s+(?:here|below|at\s+any\s+time|link)"
    r"|manage\s+(?:your\s+)?(?:preferences|subscription)|if\s+you\s+(?:no\s+longer\s+)?(?:wish|want)"
    r"|this\s+(?:e-?mail|message)\s+was\s+sent|to\s+unsubscribe\b",
    re.IGNORECASE,
)
# "stop" counts only as the whole message: in a sentence it is usually something else.
_ALONE = re.compile(
    r"^\W*(?:unsubscribe|remove(?:\s+me)?|(?:please\s+)?stop(?:\s+please)?)\W*$", re.IGNORECASE
)
_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|antw|fwd?|wg|tr|rv|r)\s*(?:\[\d+\])?\s*:\s*)+", re.I)


def _as_unsubscribe(p: Parsed, campaigns: tuple, identity: Identity) -> Classification | None:
    reason = unsubscribe_request(p)
    return Classification("unsubscribe", reasons=[reason]) if reason else None


def unsubscribe_request(p: Parsed) -> str | None:
    """Why the person's own words (subject or new text, never quotes/footers) ask to stop."""
    text = "\n".join(line for line in p.new_text.split("\n") if not _FOOTER.search(line)).strip()
    subject = _PREFIX.sub("", p.subject)
    if _ALONE.match(text) or (not text and _ALONE.match(subject)):
        return f"the whole message says {(text or subject)[:40]!r}"
    for where, value in (("Subject", subject), ("text", text)):
        found = _UNSUBSCRIBE.search(value)
        if found:
            return f"{where} asks to stop: {found.group(0)!r}"
    return None


# ---------------------------------------------------------------- requests and people

_FORWARD_SUBJECT = re.compile(r"^\s*(?:re:\s*)*(?:fwd?|wg|tr|rv|doorst)\s*:", re.IGNORECASE)


def _as_request(p: Parsed, campaigns: tuple, identity: Identity) -> Classification | None:
    if _replies_to_us(p, identity):
        return None  # a reply in one of our threads is a person answering, not a new request
    slug, reason = _match_campaign(p, campaigns)
    if slug is None:
        return None
    return Classification("request", campaign=slug, reasons=[reason])


def _replies_to_us(p: Parsed, identity: Identity) -> bool:
    return any(_on_domains(i, identity.domains) for i in (*p.in_reply_to, *p.references))


def _match_campaign(p: Parsed, campaigns: tuple) -> tuple[str | None, str]:
    """First rule by recipient address, else first rule by keyword (admin's order)."""
    for rule in campaigns:
        hit = next((r for r in p.recipients if _address_matches(r, rule.addresses)), None)
        if hit:
            return rule.slug, f"sent to {hit}: campaign {rule.slug} trigger address"
    # The sender's own words first; a forwarded part only when they name no campaign.
    hit = _keyword_match(campaigns, (("Subject", p.subject), ("text", p.new_text)))
    if hit is None and campaigns:
        hit = _keyword_match(campaigns, (("forwarded text", _forwarded_text(p)),))
    return hit or (None, "")


def _keyword_match(campaigns: tuple, places: tuple) -> tuple[str, str] | None:
    for rule in campaigns:
        for where, value in places:
            word = _keyword(value, rule.keywords)
            if word:
                return rule.slug, f"keyword {word!r} in {where}: campaign {rule.slug}"
    return None


def _address_matches(recipient: str, triggers: tuple[str, ...]) -> bool:
    local, _, domain = recipient.partition("@")
    base = f"{local.split('+', 1)[0]}@{domain}"  # plus-addressing: roadmap+x@ is roadmap@
    return base in {t.strip().lower() for t in triggers}


def _forwarded_text(p: Parsed) -> str:
    # A forward sent to us ("can you send her the roadmap?") asks on the forwarder's behalf:
    # the forwarded part may name the campaign even when the note above it does not.
    _, rest, is_forward = split_reply(p.text)
    return rest[:_SCAN] if is_forward or _FORWARD_SUBJECT.match(p.subject) else ""


def _keyword(text: str, keywords: tuple[str, ...]) -> str | None:
    for word in keywords:
        # "Execution Success", "execution-success" and "Execution-Success-Unterlage" all count.
        pattern = r"[\s_-]+".join(re.escape(w) for w in word.split())
        if pattern and re.search(rf"(?<![^\W_]){pattern}", text, re.I):
            return word
    return None


def _as_human(p: Parsed) -> Classification:
    if p.in_reply_to or p.references:
        return Classification("human", reasons=["person-written reply (In-Reply-To/References)"])
    reason = "person-written mail matching no campaign: needs a look"
    return Classification("human", reasons=[reason], review=True)

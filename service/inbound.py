"""Inbound mail: parse raw bytes and classify what kind of mail it is.

Pure: standard library plus mail parsing, no database, no network. `parse` and
`classify` never raise (but BudgetExceeded, the caller's CPU budget); mail that cannot be read
becomes "human, needs review". Both take time linear in the message: no pattern that reads mail
backtracks more than a bounded amount, and the _MAX_* and _SCAN constants bound what each step sees.
Precedence follows reference/email-reliability.md §1.1:
loop → bounce → complaint → auto_reply → bulk → unsubscribe → request/human.

The mailbox is usually the consultant's own busy inbox. A request is mail to a campaign's
trigger address, or mail elsewhere that names the magnet and asks for it; mail "in between"
is a human for review (campaign set), and mentioning a magnet is only a human mention.
"""

from __future__ import annotations

import bisect
import codecs
import email
import email.message
import functools
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.errors import MessageDefect
from email.header import Header, decode_header
from email.utils import collapse_rfc2231_value, parsedate_to_datetime
from html import unescape

from . import bounces
from .budget import BudgetExceeded

_MAX_TEXT = 500_000  # characters of body text kept; classification reads far less
_SCAN = 60_000  # characters the text rules look at
_MAX_PARTS = 500


@dataclass(frozen=True)
class CampaignRule:
    """How inbound mail triggers one campaign; the caller passes them in priority order.

    `name` is the magnet's title ("Execution Success Roadmap"): naming it counts like a keyword.
    `mode` "address-or-asked": the trigger address, or mail elsewhere that names the magnet and
    asks for it; "address-only": only the trigger address makes a request (DESIGN.md, campaign file).
    """

    slug: str
    addresses: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    name: str = ""
    mode: str = "address-or-asked"


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
    via: str | None = None  # "address": a trigger address decided; "asked": named and asked for

    def as_json(self, file: str | None = None) -> dict:
        """The `classify` command's output object (DESIGN.md, "classify output"), plus `via`."""
        return {
            "file": file,
            "kind": self.kind,
            "campaign": self.campaign,
            "reasons": list(self.reasons),
            "bounce": self.bounce,
            "ooo_until": self.ooo_until.isoformat() if self.ooo_until else None,
            "via": self.via,
        }


# ---------------------------------------------------------------- parse

# What the MIME parser reads. The stdlib's feedparser costs about a microsecond a body line times
# the depth of multipart nesting (each line is checked against every open boundary) and ten a
# header line, so a message is cut before parsing at these bounds and the cut noted as a defect.
# What lies past them is mostly attachments, which classification never reads.
_MAX_BYTES = 4 * 1024 * 1024
_MAX_LINES = 10_000
_MAX_HEADER_LINES = 2_000  # of the message's own header; the body after it is still read
_MAX_MIME_PARTS = 200  # Content-Type fields
_MAX_CONTAINERS = 16  # multipart/* and message/* parts among them: this bounds the depth
_LINE = rb"(?>[^\r\n]*+(?:\r\n?|\n))"  # atomic: counting lines never backtracks
_FIRST_LINES = re.compile(_LINE + rb"{%d}" % _MAX_LINES)
_FIRST_HEADER_LINES = re.compile(_LINE + rb"{%d}" % _MAX_HEADER_LINES)
_CONTENT_TYPE = re.compile(rb"\ncontent-type:\s*+([a-z]*+)")  # on lowercased text, CR read as LF

# What each part keeps of its header. The classifier looks fields up by name (one scan of the
# part's fields each), and email.message._parseparam is quadratic in the ';' of a Content-* field.
_MAX_HEADERS = 500  # fields per part
_MAX_FIELD_CHARS = 8_000  # of a field's value (RFC 5322 §2.1.1: lines of 998 characters at most)
_MAX_FIELD_NAME = 100
_MAX_PARAMS = 30  # ';'-separated parameters of a Content-* field
_MAX_DECODED = 2_000  # characters of a field given to RFC 2047 decoding (its word regex is quadratic)
_MAX_RECIPIENT_CHARS = 16_000  # of the fields of one recipient header, read for trigger addresses


class TooManyHeaderFields(MessageDefect):
    """A part with more than _MAX_HEADERS header fields: the rest were not kept."""


class _Message(email.message.Message):
    """A compat32 message part that keeps a bounded number of bounded header fields."""

    def set_raw(self, name: str, value: str) -> None:
        if len(self) < _MAX_HEADERS:
            super().set_raw(name[:_MAX_FIELD_NAME], _bounded_field(name, value))
        elif not any(isinstance(d, TooManyHeaderFields) for d in self.defects):
            self.defects.append(TooManyHeaderFields())


def _bounded_field(name: str, value: str) -> str:
    value = value[:_MAX_FIELD_CHARS]
    if name.lower().startswith("content-") and value.count(";") > _MAX_PARAMS:
        value = ";".join(value.split(";", _MAX_PARAMS + 1)[:_MAX_PARAMS + 1])
    return value


def parse(raw: bytes) -> Parsed:
    """Parse raw RFC 5322 bytes; never raises (but BudgetExceeded), records what it could not read."""
    try:
        return _parse(raw if isinstance(raw, bytes | bytearray) else str(raw).encode())
    except BudgetExceeded:
        raise  # the caller's CPU budget ran out: its decision, not a verdict on the mail
    except Exception as exc:  # the contract: a bad message must not stop the pipeline
        return _failed(f"parse error: {type(exc).__name__}: {exc}")


def _parse(raw: bytes) -> Parsed:
    if not raw.strip():
        return _failed("empty message")
    cuts: list[str] = []
    # compat32 is the most forgiving policy with broken headers; we decode words ourselves.
    msg = email.message_from_bytes(_bounded(bytes(raw), cuts), _class=_Message)
    if not msg.keys():
        return _failed("no header fields: not an RFC 5322 message", msg)
    defects = _defects(msg) + cuts
    text = _body_text(msg, defects)
    name, address = _from(msg, defects)
    return Parsed(
        message_id=next(iter(_ids(msg.get("Message-ID"))), None),
        in_reply_to=_ids(msg.get("In-Reply-To")),
        references=_ids(msg.get("References")),
        subject=header_text(msg, "Subject", defects),
        from_name=name,
        from_address=address,
        # With no one mailbox in the From, a Reply-To is no reason to answer either: Review decides.
        reply_to=_only_address(msg, "Reply-To") if address else None,
        recipients=_addresses(msg, ("To", "Cc", "Delivered-To", "X-Original-To")),
        date=_date(msg),
        text=text,
        new_text=split_reply(text)[0],
        headers=msg,
        defects=tuple(defects),
    )


def _bounded(raw: bytes, cuts: list[str]) -> bytes:
    """The start of the raw message that the parser reads, within the bounds above."""
    raw = _short_header(raw, cuts)
    end, why = len(raw), ""
    if end > _MAX_BYTES:
        end, why = _MAX_BYTES, f"more than {_MAX_BYTES} bytes"
    if raw.count(b"\n", 0, end) + raw.count(b"\r", 0, end) > _MAX_LINES:
        lines = _FIRST_LINES.match(raw, 0, end)
        if lines:
            end, why = lines.end(), f"more than {_MAX_LINES} lines"
    parts = _mime_end(raw, end)
    if parts is not None:
        end, why = parts, f"more than {_MAX_MIME_PARTS} MIME parts or {_MAX_CONTAINERS} multipart/message parts"
    if why:
        cuts.append(f"message cut at byte {end} ({why}): the rest is not read")
    return raw[:end]


def _short_header(raw: bytes, cuts: list[str]) -> bytes:
    """The message with its header cut to _MAX_HEADER_LINES lines, its body kept."""
    end = min(len(raw), _MAX_BYTES)
    blank = [i for i in (raw.find(b"\n\n", 0, end), raw.find(b"\n\r\n", 0, end), raw.find(b"\r\r", 0, end)) if i >= 0]
    head = min(blank) + 1 if blank else end
    if raw.count(b"\n", 0, head) + raw.count(b"\r", 0, head) <= _MAX_HEADER_LINES:
        return raw
    kept = _FIRST_HEADER_LINES.match(raw, 0, head)
    if kept is None:  # CRLF counted twice: the header is within the bound after all
        return raw
    cuts.append(f"header cut to its first {_MAX_HEADER_LINES} lines")
    return raw[: kept.end()] + raw[head:]


def _mime_end(raw: bytes, end: int) -> int | None:
    """Where the Content-Type field past the part bounds starts, or None."""
    low = b"\n" + raw[:end].lower().replace(b"\r", b"\n")  # index i + 1 here is index i of raw
    containers = 0
    for parts, found in enumerate(_CONTENT_TYPE.finditer(low), 1):
        containers += found.group(1) in (b"multipart", b"message")
        if parts > _MAX_MIME_PARTS or containers > _MAX_CONTAINERS:
            return found.start()  # the "\n" before the field: the field's first byte in raw
    return None


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


_UNFOLD = re.compile(r"\r?\n[ \t]+")  # RFC 5322 §2.2.3


def _decode_value(value: object, name: str, defects: list[str] | None = None) -> str:
    if isinstance(value, str):  # unfold first: clients fold inside encoded words (RFC 2047 §2)
        value = _UNFOLD.sub(" ", value[:_MAX_DECODED])
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


# -- addresses (RFC 5322 §3.4), read from the raw field: decoding first would let an encoded word
# such as "=?utf-8?q?Bob=0D=0ABcc:_eve@x?=" add a mailbox. Quoted strings, comments, angle
# addresses and encoded words are single tokens, so a ':' ',' or '@' inside one never splits a
# field or names an address; only the display name is decoded, afterwards.
_ADDRESS_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*+"?'  # quoted string
    r"|\((?:[^()\\]|\\.)*+\)?"  # comment (a nested one reads as text)
    r"|<[^<>]*+>?"  # angle address
    r"|=\?[^?\s]*+\?[bBqQ]\?[^?\s]*+\?="  # encoded word
    r"|[,:;]"
    r"|(?:[^\"(<,:;=]|=(?!\?))++"  # atoms, dots, spaces, a stray '>' or ')'
    r"|=",  # a "=?" that starts no encoded word
    re.DOTALL,
)
_ADDR_SPEC = re.compile(r"[^\s\"(),:;<>@\[\\\]]++(?:@[^\s\"(),:;<>@\[\\\]]++)?")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_MAX_ADDRESS = 254  # RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its angle brackets
_MAX_NAME = 64  # characters of a display name kept
_NAME_MARKS = frozenset(" '’-.,")


def _from(msg: email.message.Message, defects: list[str]) -> tuple[str, str | None]:
    """RFC 5322 §3.6.2: one From field naming one mailbox; anything else has no address to answer."""
    values = msg.get_all("From") or []
    if not values:
        defects.append("no From header")
        return "", None
    box = _mailbox_of(values[0]) if len(values) == 1 else None
    if box is None:
        defects.append("From does not name exactly one mailbox")
        return "", None
    if box[1] is None:  # "MAILER-DAEMON <>": the name still says who wrote
        defects.append("From has no valid address")
    return _display_name(box[0]), box[1]


def _only_address(msg: email.message.Message, name: str) -> str | None:
    """The address of a field that must appear once with one mailbox (Reply-To), else None."""
    values = msg.get_all(name) or []
    box = _mailbox_of(values[0]) if len(values) == 1 else None
    return box[1] if box else None


def _mailbox_of(value: object) -> tuple[str, str | None] | None:
    """(display name as written, address) when the field is exactly one mailbox, no group."""
    boxes, group = _mailboxes(_raw_text(value))
    return boxes[0] if len(boxes) == 1 and not group else None


def _raw_text(value: object) -> str:
    """A field as text with its RFC 2047 words still encoded; 8-bit bytes read as UTF-8 or cp1252."""
    if isinstance(value, Header):  # compat32 wraps fields with 8-bit bytes, undecoded
        value = "".join(c if isinstance(c, str) else _decode(c, cs) for c, cs in decode_header(value))
    return _UNFOLD.sub(" ", str(value)[:_MAX_FIELD_CHARS])


def _mailboxes(raw: str) -> tuple[list[tuple[str, str | None]], bool]:
    """Each mailbox of an address field as (display name as written, address or None), and whether
    it uses group syntax ("name: a@x, b@y;"); a group's own name is not a mailbox."""
    chunks: list[list[str]] = [[]]
    group = False
    for token in _ADDRESS_TOKEN.findall(raw):
        if token == ":":
            group, chunks[-1] = True, []
        elif token in (",", ";"):
            chunks.append([])
        else:
            chunks[-1].append(token)
    return [_mailbox(c) for c in chunks if "".join(c).strip()], group


def _mailbox(tokens: list[str]) -> tuple[str, str | None]:
    """RFC 5322 §3.4 name-addr ("phrase <addr-spec>") or addr-spec, comments anywhere; an old-style
    "addr (Name)" names the person in its comment."""
    angles = [i for i, t in enumerate(tokens) if t.startswith("<")]
    if not angles:
        comments = [t for t in tokens if t.startswith("(")]
        words = "".join(t for t in tokens if not t.startswith("("))
        return (_unquoted(comments[0]) if comments else ""), _addr_spec(words)
    at = angles[0]
    angle, rest = tokens[at], "".join(t for t in tokens[at + 1:] if not t.startswith("("))
    phrase = "".join(_unquoted(t) for t in tokens[:at] if not t.startswith("("))
    if len(angles) > 1 or not angle.endswith(">") or rest.strip():
        return phrase, None
    return phrase, _addr_spec(angle[1:-1])


def _unquoted(token: str) -> str:
    """The text of a quoted string or comment token, its quoted pairs unescaped."""
    close = {'"': '"', "(": ")"}.get(token[:1])
    if close is None:
        return token
    inner = token[1:-1] if len(token) > 1 and token.endswith(close) else token[1:]
    return _QUOTED_PAIR.sub(r"\1", inner)


def _addr_spec(text: str) -> str | None:
    address = text.strip()
    if len(address) > _MAX_ADDRESS or not _ADDR_SPEC.fullmatch(address):
        return None
    return address.lower()


def _display_name(phrase: str) -> str:
    """The decoded display name when it is only a name, else "" (the greeting then says "there").

    It is echoed into our To header and greeting: a name carrying an address, a link, digits or an
    instruction ("Pay invoice 4711 at …") must reach neither.
    """
    decoded = unicodedata.normalize("NFC", _decode_value(phrase, "From"))
    # Unicode category C: controls, format (bidi overrides U+202A-202E, isolates U+2066-2069), unassigned.
    name = " ".join("".join(c for c in decoded if unicodedata.category(c)[0] != "C").split())
    return name[:_MAX_NAME].strip() if _plain_name(name) else ""


def _plain_name(name: str) -> bool:
    """Letters, spaces, apostrophes, hyphens, dots and commas, at most five words, nothing like a
    link: "Dana Prospect" and "O'Brien-Núñez, J." are names; "evil.example" and "www." are not."""
    low = name.lower()
    if "@" in low or "://" in low or "www." in low or len(name.split()) > 5 or _DOTTED.search(name):
        return False
    return all(c.isalpha() or c in _NAME_MARKS or unicodedata.category(c)[0] == "M" for c in name)


_DOTTED = re.compile(r"\.[^\W\d_]")  # "evil.example": a dot inside a word reads as a domain


def _addresses(msg: email.message.Message, names: tuple[str, ...]) -> tuple[str, ...]:
    found: list[str] = []
    for name in names:
        room = _MAX_RECIPIENT_CHARS
        for value in msg.get_all(name) or []:
            text = _raw_text(value)[:room]
            found += [a for _, a in _mailboxes(text)[0] if a and "@" in a]
            room -= len(text)
            if room <= 0:
                break
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


def html_body(parsed: Parsed) -> str:
    """The first HTML part's text (its first _MAX_HTML characters), for showing; '' if there is none."""
    for count, part in enumerate(bounces.walk(parsed.headers)):
        if count > _MAX_PARTS:
            break
        if part.get_content_type() == "text/html" and not part.is_multipart() and not _is_attachment(part):
            return _part_text(part, [])[:_MAX_HTML]
    return ""


def attachments(parsed: Parsed) -> list[tuple[str, str, int]]:
    """(name, content type, decoded size) of each attachment within what was read."""
    found = []
    for count, part in enumerate(bounces.walk(parsed.headers)):
        if count > _MAX_PARTS:
            break
        name = part.get_param("filename", None, "content-disposition") or part.get_param("name")
        if part.is_multipart() or not (_is_attachment(part) or name):
            continue
        try:
            size = len(part.get_payload(decode=True) or b"")
        except Exception:  # a payload that cannot be decoded is still listed
            size = 0
        label = _decode_value(collapse_rfc2231_value(name), "filename") if name else "(no name)"
        found.append((label or "(no name)", part.get_content_type(), size))
    return found


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


# -- HTML. html.parser is quadratic on some broken HTML ("<a " repeated took minutes), so this reads
# HTML with one linear tokenizer instead: comments and declarations are skipped, a tag runs to the
# next ">", and a "<" that starts no tag is text.
_MAX_HTML = 200_000  # characters of an HTML part read; the text we need comes first
_MAX_QUOTE_DEPTH = 10  # "> " written per nested <blockquote>; deeper quotes read as this deep
_HTML_TOKEN = re.compile(
    r"<!--.*?(?:-->|\Z)|<[!?][^>]*+>?"
    r"|<(/?)([a-zA-Z][a-zA-Z0-9]*+)[^>]*+>?"
    r"|(?:[^<]|<(?!/?[a-zA-Z!?]))++",
    re.DOTALL,
)
_HTML_BLOCK = frozenset({
    "p", "div", "br", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "pre", "section", "article", "header", "footer", "dd", "dt", "center", "address",
})
_HTML_SKIP = frozenset({"style", "script", "head", "title"})


class _HTMLText:
    """HTML to plain text: block tags break lines, <blockquote> lines get '> ' (quoted)."""

    def __init__(self) -> None:
        self.lines: list[list[str]] = [[]]
        self.depth = self.skip = 0

    def token(self, found: re.Match) -> None:
        closing, tag = found.group(1, 2)
        if tag is not None:
            self._tag(tag.lower(), -1 if closing else +1)
        elif not found.group(0).startswith(("<!", "<?")):
            self._data(found.group(0))

    def _tag(self, tag: str, step: int) -> None:
        if tag in _HTML_SKIP:
            self.skip = max(0, self.skip + step)
        elif tag == "blockquote":
            self.lines.append([])
            self.depth = max(0, self.depth + step)
        elif tag in _HTML_BLOCK:
            self.lines.append([])

    def _data(self, data: str) -> None:
        if self.skip:
            return
        if not self.lines[-1] and self.depth:
            self.lines[-1].append("> " * min(self.depth, _MAX_QUOTE_DEPTH))
        self.lines[-1].append(re.sub(r"[\s\xa0]+", " ", unescape(data)))

    def text(self) -> str:
        lines = ["".join(parts).strip() for parts in self.lines]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def html_to_text(markup: str) -> str:
    """Readable text from an HTML body (stdlib only, linear in its first _MAX_HTML characters)."""
    converter = _HTMLText()
    for found in _HTML_TOKEN.finditer(markup[:_MAX_HTML]):
        converter.token(found)
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
# "----- Original Message -----", or a rule of seven dashes or more. The dash and space runs are
# possessive: the label may itself hold dashes, and letting the runs give them back made a line
# of 40,000 dashes try every split (quadratic); now only the label, at most 40 long, backtracks.
_REPLY_MARKER = re.compile(
    r"\s*+-{2,}+\s*+(?:original\s+message|ursprüngliche\s+nachricht|urspruengliche\s+nachricht"
    r"|original-nachricht|message\s+d'origine|mensaje\s+original|oorspronkelijk\s+bericht"
    r"|original\s+text|[\w' .-]{3,40})\s*+-{2,}+\s*+$|\s*+-{7,}+\s*+$",
    re.IGNORECASE,
)
_QUOTE_LINES = 2_000  # lines searched for where the quote starts; the ones after are never new text
# A run of blank lines reads as one, so a run does not spend the _QUOTE_LINES of the text after it.
_BLANK_LINES = re.compile(r"\n(?:[ \t]*+\n){2,}+")
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
    lines = _BLANK_LINES.sub("\n\n", text[:_SCAN]).split("\n")
    cut, forward = _quote_start(lines)
    mine = [line for line in lines[:cut] if not line.lstrip().startswith(">")]
    mine = _strip_signature([line.rstrip() for line in mine if not _ATTRIBUTION.match(line)])
    new = re.sub(r"\n{3,}", "\n\n", "\n".join(mine)).strip()
    return new, "\n".join(lines[cut:]), forward


def _quote_start(lines: list[str]) -> tuple[int, bool]:
    """Index of the first line of the quoted/forwarded block, and whether it is a forward."""
    seen_text = False
    for i, line in enumerate(lines[:_QUOTE_LINES]):
        s = line.strip()
        if _FORWARD_MARKER.match(s):
            return i, True
        quoted = _REPLY_MARKER.match(s) or _is_attribution(lines, i) or _outlook(lines, i)
        if seen_text and quoted:
            return i, False
        seen_text = seen_text or bool(s and not s.startswith(">"))
    return min(len(lines), _QUOTE_LINES), False


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
    """Classify raw bytes or a Parsed message; never raises but BudgetExceeded (errors: human + review)."""
    try:
        parsed = message if isinstance(message, Parsed) else parse(message)
        return _classify(parsed, tuple(campaigns or ()), identity or Identity())
    except BudgetExceeded:
        raise  # the caller's CPU budget ran out: its decision, not a verdict on the mail
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


_MAX_FIELDS_READ = 20  # fields of one name a header rule reads
_VERP_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "Cc")


def _plus_token(p: Parsed, base: str | None, names: tuple[str, ...]) -> str | None:
    if not base or "@" not in base:
        return None
    local, domain = (re.escape(part) for part in base.rsplit("@", 1))
    pattern = re.compile(rf"(?<![\w.+-]){local}\+([^@\s<>\"]+)@{domain}\b", re.I)
    for name in names:
        for value in (p.headers.get_all(name) or [])[:_MAX_FIELDS_READ]:
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
    r"|\bautoreply\b|\bauto-reply\b|\bautoresponder\b|abwesenheitsnotiz|r[ée]ponse\s+automatique"
    r"|自動返信|自動応答|自动回复|自動回覆|不在通知|休暇のお知らせ",
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
    # vacation(1) and its heirs mark their own answers "Precedence: junk": not a list marker here.
    bulk = [r for r in bulk_signals(p) if not (_JUNK.match(r) and _ooo_text(p))]
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
    junk = next((r for r in _precedence(h) if _JUNK.match(r)), None)
    if junk and _ooo_text(p):
        reasons.append(f"{junk} on an out-of-office text (what vacation(1) sends)")
    return list(dict.fromkeys(reasons))


_JUNK = re.compile(r"(?:X-)?Precedence: junk\b", re.IGNORECASE)
# Out-of-office wording; trusted only next to a machine marker such as Precedence: junk.
_OOO_TEXT = re.compile(
    r"\bout\s+of\s+(?:the\s+)?office\b|\bon\s+(?:vacation|holiday|leave|annual\s+leave)\b"
    r"|\baway\s+(?:from\s+(?:the\s+office|my\s+(?:desk|e-?mail|mail))|until)\b|\b(?:i\s+am|i['’]m)\s+away\b"
    r"|\babwesend\b|\bnicht\s+im\s+b(?:ü|ue)ro\b|\burlaub\b|\ben\s+cong[ée]s?\b|\babsente?\s+(?:du|jusqu)"
    r"|\bfuera\s+de\s+la\s+oficina\b|\bde\s+vacaciones\b|\bafwezig\b|\bniet\s+op\s+kantoor\b|\bmet\s+vakantie\b"
    r"|不在|休暇|休假|外出",
    re.IGNORECASE,
)


def _ooo_text(p: Parsed) -> bool:
    return bool(_OOO_TEXT.search(p.subject) or _OOO_TEXT.search(p.new_text[:3000]))


def _precedence(h: email.message.Message) -> list[str]:
    return [f"{name}: {str(h.get(name)).strip()}" for name in ("Precedence", "X-Precedence")
            if h.get(name) is not None]


def _auto_header_signals(h: email.message.Message) -> list[str]:
    reasons = []
    submitted = bounces.auto_submitted(h)
    if submitted and submitted != "no":  # RFC 3834 §5: only "no" means a person sent it
        reasons.append(f"Auto-Submitted: {submitted}")
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if str(h.get(name, "no")).strip().lower() not in ("no", "false", "0"):
            reasons.append(f"{name} header")
    for name, pattern in _AUTO_HEADERS:
        if any(re.match(pattern, str(v).strip(), re.I) for v in (h.get_all(name) or [])[:_MAX_FIELDS_READ]):
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
# Words that introduce the day someone is back (en, de, fr, es, nl). "Away until the 7th, back on
# the 8th" states both: the return day wins, then the last day away, then weaker prepositions.
_RETURN_CUES = re.compile(
    r"\b(?:back|return|returning|returns|reachable\s+again|wieder|zurück|zurueck|retour|vuelta|regreso"
    r"|regresaré|volveré|terug)\b|\(returning|\b(?:ab|vanaf)\b(?=[^\n]{0,40}\b(?:wieder|terug)\b)",
    re.IGNORECASE,
)
_UNTIL_CUES = re.compile(
    r"\b(?:until|till|through|bis|jusqu'au|jusqu’au|hasta|t/m|tot\s+en\s+met)\b", re.IGNORECASE
)
_WEAK_CUES = re.compile(r"\b(?:from|ab|à\s+partir\s+du|a\s+partir\s+del|vanaf|tot|to|au|al)\b", re.I)
# Japanese and Chinese: "12月8日に戻ります", "2026年12月8日返回"; the cue follows the date.
_CJK_DATE = re.compile(r"(?:(?P<y>\d{4})\s*年\s*)?(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*[日号號]")
_CJK_RETURN = re.compile(
    r"[^\n。．！？!?、，,]{0,12}?(?:戻|もど|復帰|出社|帰社|出勤|返回|回来|回來|回到|上班|恢复|恢復|返岗|返崗|复工|復工)"
)
_CJK_UNTIL = re.compile(r"(?:\s*[(（][^)）\n]{0,8}[)）])?\s*(?:まで|迄|为止|為止)")
_CJK_UNTIL_BEFORE = ("至", "到", "直到", "截至")
_FULLWIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")


def ooo_until(p: Parsed) -> date | None:
    """The return date an out-of-office states, or None."""
    sent = (p.date or datetime.now(UTC)).date()
    text = f"{p.subject[:1000]}\n{(p.new_text or p.text)[:4000]}".translate(_FULLWIDTH_DIGITS)
    return (
        _cued_date(text, _RETURN_CUES, sent) or _cjk_date(text, sent, until=False)
        or _cued_date(text, _UNTIL_CUES, sent) or _cjk_date(text, sent, until=True)
        or _cued_date(text, _WEAK_CUES, sent)
    )


def _cued_date(text: str, cues: re.Pattern, sent: date) -> date | None:
    for cue in cues.finditer(text):
        found = _first_date(text[cue.end() : cue.end() + 60], sent)
        if found:
            return found
    return None


def _cjk_date(text: str, sent: date, until: bool) -> date | None:
    for match in _CJK_DATE.finditer(text):
        if until:
            cued = _CJK_UNTIL.match(text, match.end()) or text.endswith(_CJK_UNTIL_BEFORE, 0, match.start())
        else:
            cued = _CJK_RETURN.match(text, match.end())
        found = _to_date(match.groupdict(), sent) if cued else None
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
    reasons = [r for r in _precedence(h) if re.match(r"[\w-]+: (?:bulk|list|junk)\b", r, re.I)]
    listy = sorted({k for k in h if k.lower().startswith("list-")})
    listy += [k for k in ("X-Mailing-List", "Mailing-List", "X-BeenThere") if h.get(k) is not None]
    reasons += [f"{k} header" for k in listy]
    esp = [k for k in _ESP_HEADERS if h.get(k) is not None]
    if esp != ["Feedback-ID"]:  # alone it says nothing: Fastmail and Proton stamp personal mail too
        reasons += [f"{k} header (ESP tracking)" for k in esp]
    reasons += [f"{name} {addr} is a system sender" for name, addr in _senders(p)
                if _BULK_LOCAL.match(addr.split("@")[0])]
    return reasons


def _senders(p: Parsed) -> list[tuple[str, str]]:
    found = [("From", p.from_address)]
    for name in ("Sender", "Return-Path"):
        value = p.headers.get(name)
        box = _mailbox_of(value) if value is not None else None
        found.append((name, box[1] if box else None))
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
    r"|\bschrijf\s+me\s+uit\b|\bgeen\s+(?:e-?mails?|mails?|berichten)\s+meer\b|\bverwijder\s+(?:mij|me)\b"
    # fr, de, es, nl, as people also write it
    r"|\bne\s+(?:veux|souhaite|d[ée]sire)\s+plus\s+recevoir\b|\barr[êe]tez\s+de\s+m['’]envoyer\b"
    r"|\b(?:aus|von)\s+(?:dem|ihrem|eurem)\s+verteiler\b|\bnicht\s+mehr\s+kontaktieren\b"
    r"|\bno\s+deseo\s+recibir\b|\bdejen?\s+de\s+enviarme\b|\bqu[íi]t(?:en|e)me\s+de\b"
    r"|\bhaal\s+(?:mij|me)\s+van\b|\bstop\s+met\s+(?:e-?mailen|mailen|sturen)\b"
    # it
    r"|\bcancellatemi\b|\bcancellami\b|\bnon\s+(?:voglio|desidero)\s+(?:più\s+)?ricevere\b"
    r"|\bdisiscriver(?:e|mi|ti)\b|\bdisiscrivetemi\b|\bdisiscrizione\b|\brimuovetemi\b|\brimuovimi\b"
    r"|\btoglietemi\b|\bannullare\s+(?:l['’]|la\s+mia\s+)iscrizione\b"
    # pt
    r"|\bdescadastr(?:ar|e|em|o)\b|\bcancelar\s+(?:a\s+(?:minha\s+)?)?inscri[çc][ãa]o\b"
    r"|\bn[ãa]o\s+(?:quero|desejo)\s+(?:mais\s+)?receber\b|\bremover\s+(?:o\s+)?meu\s+(?:e-?mail|endere[çc]o)\b"
    r"|\bremova-me\b|\bme\s+remova\b|\bme\s+tire\s+da\s+lista\b",
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
# "Re: ", "AW[2]: ", "Fwd : "; the space before "[2]" and before ":" is one run (two adjacent
# runs split a long one every way: quadratic).
_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|antw|fwd?|wg|tr|rv|r)\s*(?:\[\d+\]\s*)?:\s*)+", re.I)


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


# ---------------------------------------------------------------- requests: trigger addresses


def _as_request(p: Parsed, campaigns: tuple, identity: Identity) -> Classification | None:
    if _replies_to_us(p, identity):
        return None  # a reply in one of our threads is a person answering, not a new request
    return _by_address(p, campaigns) or _by_words(p, campaigns)


def _replies_to_us(p: Parsed, identity: Identity) -> bool:
    return any(_on_domains(i, identity.domains) for i in (*p.in_reply_to, *p.references))


def _by_address(p: Parsed, campaigns: tuple) -> Classification | None:
    """On a campaign's own address anyone's mail is a request. An exact match on any campaign beats a
    plus-stripped one (roadmap+x@ for roadmap@) on any other; within each, the admin's order decides."""
    for exact in (True, False):
        for rule in campaigns:
            for recipient in p.recipients:
                trigger = _trigger_hit(recipient, rule.addresses, exact)
                if trigger is None:
                    continue
                how = "trigger address" if exact else f"trigger address {trigger} (plus-addressed)"
                reason = f"sent to {recipient}: campaign {rule.slug} {how}"
                return Classification("request", campaign=rule.slug, reasons=[reason], via="address")
    return None


def _trigger_hit(recipient: str, triggers: tuple[str, ...], exact: bool) -> str | None:
    """The trigger the recipient matches. Only the recipient loses its +tags, never the trigger:
    ken@ must not match a trigger ken+roadmap@, while ken+roadmap+x@ does."""
    wanted = {t.strip().lower() for t in triggers}
    if exact:
        return recipient if recipient in wanted else None
    local, _, domain = recipient.partition("@")
    while "+" in local:
        local = local.rsplit("+", 1)[0]
        if f"{local}@{domain}" in wanted:
            return f"{local}@{domain}"
    return None


# ---------------------------------------------------------------- requests: named and asked
#
# The mailbox is the consultant's own (DESIGN.md): mentioning a magnet is not asking for it. A
# request by words must name the magnet (a keyword or its title, as whole words) and ask for it in
# the same sentence. Anything in between goes to the consultant (human, review), never to the mailer.

_MENTION, _MAYBE, _REQUEST = 1, 2, 3
_MAX_MENTIONS = 20  # per rule and text: enough to judge, bounded on hostile input
_WINDOW = 200  # characters of a sentence kept either side of a mention
_WRAP = 50  # a line this long ending without punctuation was wrapped by the client, not ended


@dataclass(frozen=True)
class _Mention:
    """One place a text names a campaign's magnet, with the sentence around it."""

    word: str  # the keyword or name as the rule spells it
    full: bool  # the magnet's whole name, not one of its keywords
    where: str  # "Subject", "text" or "forwarded text"
    sentence: str
    start: int  # the mention's span inside `sentence`
    end: int
    neighbours: tuple[str, ...]  # the sentences just before and after

    @property
    def before(self) -> str:
        return self.sentence[: self.start]

    @property
    def after(self) -> str:
        return self.sentence[self.end :]


@dataclass(frozen=True)
class _Judgement:
    level: int  # _MENTION, _MAYBE or _REQUEST
    why: str
    blocks: bool = False  # says it is something else or not wanted: the subject can't make it a request


@dataclass(frozen=True)
class _Verdict:
    level: int
    order: int  # the rule's place in the admin's priority order
    rule: CampaignRule
    word: str
    where: str
    why: str

    def capped(self, level: int, why: str) -> _Verdict:
        if self.level <= level:
            return self
        return _Verdict(level, self.order, self.rule, self.word, self.where, f"{self.why}; {why}")


def _by_words(p: Parsed, campaigns: tuple) -> Classification | None:
    forward = _forward(p)
    verdicts = [v for order, rule in enumerate(campaigns) for v in _rule_verdicts(p, rule, order, forward)]
    if not verdicts:
        return None
    best = max(verdicts, key=lambda v: (v.level, -v.order))
    return _verdict_classification(_thread_caps(p, best), p)


def _rule_verdicts(p: Parsed, rule: CampaignRule, order: int, forward: tuple[bool, str]) -> list[_Verdict]:
    is_forward, forwarded = forward
    own = _verdict(rule, order, _PREFIX.sub("", p.subject)[:2000], p.new_text, forwarded=False)
    if own is not None and own.where == "Subject" and is_forward:
        own = own.capped(_MAYBE, "the Subject is the forwarded message's")
    elif own is not None and own.where == "Subject" and _REPLY_SUBJECT.match(p.subject):
        own = own.capped(_MAYBE, "the Subject is the one of the mail it replies to")
    other = _verdict(rule, order, "", forwarded, forwarded=True) if forwarded else None
    if other is not None and other.level == _REQUEST and not _note_asks_for_help(p.new_text):
        other = other.capped(_MAYBE, "it asks only inside a forwarded part")
    found = [v for v in (own, other) if v is not None]
    if _mode(rule) == "address-only":
        found = [_address_only(v) for v in found]
    return found


def _mode(rule: CampaignRule) -> str:
    mode = (rule.mode or "address-or-asked").strip().lower().replace("_", "-")
    return mode if mode == "address-or-asked" else "address-only"  # unknown: the safe one


def _address_only(v: _Verdict) -> _Verdict:
    # A strong ask still reaches the consultant; anything weaker is only a mention.
    note = f"campaign {v.rule.slug} answers only its trigger address"
    return v.capped(_MAYBE, note) if v.level == _REQUEST else v.capped(_MENTION, note)


def _thread_caps(p: Parsed, v: _Verdict) -> _Verdict:
    invitation = _invitation(p)
    if invitation:
        return v.capped(_MENTION, f"{invitation}: never a request by words")
    if p.in_reply_to or p.references:  # ours were handled before: this is someone else's thread
        thread = next(iter(p.in_reply_to or p.references))
        return v.capped(_MAYBE, f"a reply in someone else's thread (<{thread}>)")
    return v


def _verdict_classification(v: _Verdict, p: Parsed) -> Classification:
    slug, label = v.rule.slug, v.rule.name or v.rule.slug
    if v.level == _REQUEST:
        reason = f"names {v.word!r} in {v.where} and asks for it: {v.why} (campaign {slug})"
        return Classification("request", campaign=slug, reasons=[reason], via="asked")
    if v.level == _MAYBE:
        reasons = [f"may be a request for {label}: {v.why}", f"names {v.word!r} in {v.where} (campaign {slug})"]
        return Classification("human", campaign=slug, reasons=reasons, review=True)
    reasons = [f"mentions {v.word!r} but does not ask for it", f"{v.where}: {v.why} (campaign {slug})"]
    if p.in_reply_to or p.references:
        reasons.append("person-written reply (In-Reply-To/References)")
    return Classification("human", reasons=reasons)


def _verdict(rule: CampaignRule, order: int, subject: str, text: str, forwarded: bool) -> _Verdict | None:
    where = "forwarded text" if forwarded else "text"
    mentions = [*_mentions(subject, rule, "Subject"), *_mentions(text, rule, where)]
    if not mentions:
        return None
    judged = [(_judge(m), m) for m in mentions]
    (best, m) = max(judged, key=lambda j: j[0].level)  # the first of the strongest
    verdict = _Verdict(best.level, order, rule, m.word, m.where, best.why)
    if best.level == _REQUEST and any(j.blocks for j, _ in judged):
        verdict = verdict.capped(_MAYBE, "elsewhere it says it is something else or not needed")
    word = _subject_names(subject, rule)
    if word is not None and not any(j.blocks for j, _ in judged):
        level, why = _subject_judgement(subject, text)
        if level > verdict.level:
            verdict = _Verdict(level, order, rule, word, "Subject", why)
    return verdict


def asks_for_magnet(p: Parsed, rule: CampaignRule) -> str | None:
    """Why the person's own words name this rule's magnet and ask for it, else None: whatever address
    the mail came to and whatever the rule's mode. A reply's Subject ("Re: Roadmap please") repeats
    the first mail and is left out. For the intake: is an enrolled prospect asking again?"""
    subject = "" if _REPLY_SUBJECT.match(p.subject) else _PREFIX.sub("", p.subject)[:2000]
    verdict = _verdict(rule, 0, subject, p.new_text, forwarded=False)
    return verdict.why if verdict is not None and verdict.level == _REQUEST else None


# -- finding the magnet's name


def names_magnet(text: str, rule: CampaignRule) -> str | None:
    """The rule's name or keyword that `text` names as whole words ("roadmapping" is not "roadmap")."""
    for word, _, pattern in _patterns(rule):
        if pattern.search(text):
            return word
    return None


def _patterns(rule: CampaignRule) -> list[tuple[str, bool, re.Pattern]]:
    words = [(rule.name, True)] if rule.name.strip() else []
    words += [(k, False) for k in rule.keywords if k.strip()]
    return [(word, full, pattern) for word, full in words if (pattern := _word_pattern(word))]


@functools.lru_cache(maxsize=512)
def _word_pattern(word: str) -> re.Pattern | None:
    # "Execution Success", "execution-success" and "Execution-Success-Unterlage" all count;
    # letters or digits on either side make it part of another word.
    parts = [re.escape(w) for w in re.split(r"[\s_-]+", word.strip()) if w]
    if not parts:
        return None
    joined = r"[\s_-]+".join(parts)
    return re.compile(rf"(?<![^\W_]){joined}(?![^\W_])", re.IGNORECASE)


def _mentions(text: str, rule: CampaignRule, where: str) -> list[_Mention]:
    spans: list[tuple[int, int, str, bool]] = []
    for word, full, pattern in _patterns(rule):
        for found in pattern.finditer(text):
            if len(spans) >= _MAX_MENTIONS:
                break
            if not any(a < found.end() and found.start() < b for a, b, _, _ in spans):  # inside the name
                spans.append((found.start(), found.end(), word, full))
    if not spans:
        return []
    cuts = _sentence_cuts(text)
    return [_mention(text, cuts, span, where) for span in _joined(text, sorted(spans), rule)]


def _joined(text: str, spans: list[tuple[int, int, str, bool]], rule: CampaignRule) -> list:
    """Two keywords side by side ("la roadmap « Execution Success »") name the magnet in full."""
    out: list[tuple[int, int, str, bool]] = []
    for span in spans:
        if out and out[-1][2] != span[2] and _JOINER.fullmatch(text, out[-1][1], span[0]):
            out[-1] = (out[-1][0], span[1], rule.name or f"{out[-1][2]} {span[2]}", True)
        else:
            out.append(span)
    return out


_JOINER = re.compile(r"[\s«»\"“”'’()-]{0,4}(?:(?:de|of|von|van|du|del)\s+)?[\s«»\"“”'’()-]{0,3}", re.IGNORECASE)


def _sentence_cuts(text: str) -> list[int]:
    """Where sentences start: after . ! ? ; and a space, after blank lines and after short lines
    (greetings, lists, signatures); long lines without an end mark were only wrapped."""
    cuts = {0, len(text)}
    pos = 0
    for line in text.split("\n"):
        stripped = line.rstrip()
        if len(stripped) < _WRAP or stripped[-1] in ".!?;:":
            cuts.add(min(pos + len(line) + 1, len(text)))
        pos += len(line) + 1
    cuts.update(m.end() for m in _SENTENCE_END.finditer(text))
    return sorted(cuts)


# A run of end marks followed by a space. Only the run's first mark may start a match: starting at
# every mark of a long run with no space after it rescanned the run each time (quadratic).
_SENTENCE_END = re.compile(r"(?<![.!?;。！？])[.!?;。！？]++(?=\s)")


def _mention(text: str, cuts: list[int], span: tuple[int, int, str, bool], where: str) -> _Mention:
    start, end, word, full = span
    first = bisect.bisect_right(cuts, start) - 1
    last = bisect.bisect_left(cuts, end)
    begin, stop = max(cuts[first], start - _WINDOW), min(cuts[min(last, len(cuts) - 1)], end + _WINDOW)
    previous = text[max(cuts[max(first - 1, 0)], begin - _WINDOW) : begin] if first else ""
    following = text[stop : min(cuts[min(last + 1, len(cuts) - 1)], stop + _WINDOW)]
    return _Mention(word, full, where, text[begin:stop], start - begin, end - begin, (previous, following))


# -- judging one mention


def _judge(m: _Mention) -> _Judgement:
    """Whether the sentence around one mention asks for the magnet."""
    negation = _NEGATION.search(m.sentence)
    if negation:
        return _Judgement(_MENTION, f"says it is not wanted ({negation.group(0)!r})", blocks=True)
    kind, detail = _kind(m)
    if kind == "foreign":
        return _Judgement(_MENTION, f"talks about someone else's ({detail!r})", blocks=True)
    relation, phrase = _ask(m)
    if relation == "object":
        return _asked(m, kind, detail, phrase)
    if kind == "qualified":
        return _Judgement(_MENTION, f"names something else ({detail!r})", blocks=True)
    if relation == "near":
        return _Judgement(_MAYBE, f"asks ({phrase!r}) in the same sentence, not plainly for it")
    return _unasked(m, kind)


def _asked(m: _Mention, kind: str, detail: str, phrase: str) -> _Judgement:
    condition = _CONDITIONAL.search(_POLITE_IF.sub(" ", m.sentence))
    if condition:
        return _Judgement(_MAYBE, f"asks conditionally ({condition.group(0)!r}: {phrase!r})")
    elsewhere = _SOMEONE_ELSE.search(m.after[:100])
    if elsewhere:
        return _Judgement(_MAYBE, f"asks to send it to someone else ({elsewhere.group(0)!r})")
    if kind != "named":
        return _Judgement(_MAYBE, f"asks ({phrase!r}) for {detail!r}, which may be something else")
    return _Judgement(_REQUEST, f"{phrase!r}")


def _unasked(m: _Mention, kind: str) -> _Judgement:
    """No ask in the sentence: a question about it, an ask next to it, or the title in the Subject."""
    if ("?" in m.after or "¿" in m.before) and _AVAILABLE.search(m.sentence):
        return _Judgement(_MAYBE, f"asks about it ({m.sentence.strip()[:80]!r})")
    for sentence in m.neighbours:
        ask = _neighbour_ask(sentence)
        if ask and m.full and kind == "named":
            return _Judgement(_REQUEST, f"{ask!r} in the sentence next to it")
        if ask:
            return _Judgement(_MAYBE, f"asks ({ask!r}) in the sentence next to it")
    if m.where == "Subject" and m.full:
        return _Judgement(_MAYBE, "the Subject names it without asking")
    return _Judgement(_MENTION, "no ask near it")


def _kind(m: _Mention) -> tuple[str, str]:
    """named: plainly the magnet; yours: "your roadmap"; foreign: "our/their roadmap";
    qualified: "Q3 roadmap", "roadmap review", "Execution Success workshop"; unclear: a bare keyword
    followed by words that do not say it is the magnet ("the roadmap when it's ready")."""
    word = m.sentence[m.start : m.end]
    following = re.match(r"[\s-]*([^\W\d_]+)", m.after[:40])
    if following and following.group(1).lower() in _AFTER_QUALIFIERS:
        return "qualified", f"{word} {following.group(1)}"
    if m.full:
        return "named", word
    deliverable = _DELIVERABLE.match(m.after[:80])
    if deliverable:
        return "qualified", f"{word}{deliverable.group(0)}"
    words = re.findall(r"[\w'’-]+", m.before[-60:])[-3:]
    if words and _QUALIFIER_WORD.fullmatch(words[-1].strip("-'’")):
        return "qualified", f"{words[-1]} {word}"
    for i in range(len(words) - 1, -1, -1):
        low, phrase = words[i].lower(), " ".join([*words[i:], word])
        if low in _ARTICLES:
            break  # "send my team the roadmap": the article is closer, the possessive is not its
        if low in _YOURS or words[i][:3] == "Ihr":  # capitalised Ihr- is the formal "your" in German
            return "yours", phrase
        if low in _FOREIGN or low.startswith("ihr"):
            return "foreign", phrase
    if not _CLEAN_AFTER.match(m.after):  # "the roadmap when it's ready", "… to include Q2"
        return "unclear", f"{word} {' '.join(m.after.split()[:3])}"
    return "named", word


def _ask(m: _Mention) -> tuple[str | None, str]:
    """("object", phrase) when the ask's object is the mention, ("near", phrase) when an ask is in
    the sentence about something else or too far away, (None, "") when nothing asks."""
    near = None
    for ask in _ASK.finditer(m.sentence):
        if ask.end() <= m.start:
            gap = m.sentence[ask.end() : m.start]
            if len(gap) <= 45 and not _OTHER_OBJECT.search(gap):
                return "object", ask.group(0)
        elif ask.start() >= m.end:
            gap = m.sentence[m.end : ask.start()]
            if len(gap) <= 80 and _PRONOUN_OBJECT.match(m.sentence, ask.end()):
                return "object", ask.group(0)
        else:  # the phrase takes in the mention: "share the roadmap with me"
            return "object", ask.group(0)
        near = near or ask.group(0)
    please = _PLEASE_AFTER.match(m.after) or _PLEASE_BEFORE.search(m.before[-40:])
    imperative = _IMPERATIVE.fullmatch(m.before)
    if please or imperative:
        return "object", (please or imperative).group(0).strip()
    return ("near", near) if near else (None, "")


def _neighbour_ask(sentence: str) -> str | None:
    """An ask in the sentence next to a mention whose object is "it" or "a copy"."""
    if _NEGATION.search(sentence):
        return None
    for ask in _ASK.finditer(sentence):
        if _PRONOUN_OBJECT.match(sentence, ask.end()) and re.search(r"\b(?:it|one|copy|this)\b", sentence, re.I):
            return ask.group(0)
    found = _SEND_IT.match(sentence)
    return found.group(0).strip() if found else None


def _subject_judgement(subject: str, text: str) -> tuple[int, str]:
    """A Subject that is the magnet's name ("Execution Success Roadmap", "Roadmap please") asks for it,
    unless the text gives something or asks nothing while saying more than a line or two."""
    giving = _GIVING.search(text[:3000])
    if giving:  # "Subject: Roadmap / attached is the draft": a client sending theirs
        return _MENTION, f"the Subject is its name but the text sends something ({giving.group(0)!r})"
    body = text.strip()
    short = len(body) <= 200 and "?" not in body
    if _SUBJECT_PLEASE.search(subject) or short or _body_asks(body):
        return _REQUEST, f"the Subject {subject.strip()[:80]!r} is its name"
    return _MAYBE, f"the Subject {subject.strip()[:80]!r} is its name, the text asks nothing"


def _subject_names(subject: str, rule: CampaignRule) -> str | None:
    if len(subject) > 200:
        return None
    for word, _, pattern in _patterns(rule):
        shape = rf"\W*(?:{_SUBJECT_ARTICLE}\s+)?(?:{pattern.pattern})(?:\W*(?:{_SUBJECT_PLEASE.pattern}))?\W*"
        if re.fullmatch(shape, subject, re.IGNORECASE):
            return word
    return None


def _body_asks(text: str) -> bool:
    """The text asks for "it" or "a copy" (the Subject says what)."""
    head = text[:3000]
    if any(_PRONOUN_OBJECT.match(head, ask.end()) for ask in _ASK.finditer(head)):
        return True
    return any(_SEND_IT.match(line) for line in head.split("\n"))


# -- forwards, invitations


def _forward(p: Parsed) -> tuple[bool, str]:
    """Whether this is a forward, and the forwarded text without quoted lines.

    A forward sent to us ("can you send her the roadmap?") asks on the forwarder's behalf:
    the forwarded part may name the campaign even when the note above it does not.
    """
    _, rest, marked = split_reply(p.text)
    if not (marked or _FORWARD_SUBJECT.match(p.subject)):
        return False, ""
    return True, "\n".join(line for line in rest[:_SCAN].split("\n") if not line.lstrip().startswith(">"))


_FORWARD_SUBJECT = re.compile(r"^\s*(?:re:\s*)*(?:fwd?|wg|tr|rv|doorst)\s*:", re.IGNORECASE)
# A reply's Subject repeats the mail it answers: not the writer's new words.
_REPLY_SUBJECT = re.compile(r"^\s*(?:re|aw|sv|antw|rif|r)\s*(?:\[\d+\]\s*)?:", re.IGNORECASE)


def _note_asks_for_help(note: str) -> bool:
    """The forwarder's own note asks us to act: "Can you help my colleague with this?"."""
    return bool(not _NEGATION.search(note) and (_ASK.search(note) or _HELP.search(note)))


_HELP = re.compile(
    r"\bhelp\b|\breply\s+to\b|\b(?:can|could)\s+you\b|\bplease\s+(?:reply|answer|respond)\b|\bhilf|\bhelfen\b"
    r"|\bk(?:ö|oe)nn(?:en|ten)\s+sie\b|\baider\b|\bpouvez-vous\b|\bpourriez-vous\b|\bayud|\bpuede[ns]?\b"
    r"|\bpodr[íi]a[ns]?\b|\bhelpen\b|\bkunt\s+u\b|\bkun\s+je\b",
    re.IGNORECASE,
)


def _invitation(p: Parsed) -> str | None:
    """Calendar mail (RFC 5545 text/calendar, RFC 5546 iTIP method=REQUEST) or its Subject."""
    if _INVITE_SUBJECT.match(p.subject):
        return f"Subject {p.subject[:60]!r} is a calendar invitation"
    for count, part in enumerate(bounces.walk(p.headers)):
        if count > _MAX_PARTS:
            break
        if part.get_content_type() in ("text/calendar", "application/ics"):
            return f"{part.get_content_type()} part: a calendar invitation"
        if str(part.get_param("method", "") or "").strip('"').upper() == "REQUEST":
            return "Content-Type method=REQUEST: a calendar invitation"
    return None


_INVITE_SUBJECT = re.compile(
    r"^\s*(?:updated\s+invitation|invitation|einladung|aktualisierte\s+einladung|invitaci[óo]n|uitnodiging"
    r"|invito|convite|accepted|declined|tentative|angenommen|abgelehnt|canceled\s+event|cancelled\s+event)\s*:",
    re.IGNORECASE,
)


# -- the words (en, de, fr, es, nl; a little it, pt)

# Asking for something. Each alternative starts at a literal word, so scanning stays linear.
_ASK = re.compile(
    r"\b(?:could|can|would|will)\s+(?:you|u)\s+(?:please\s+|kindly\s+|maybe\s+|possibly\s+|also\s+|just\s+)?"
    r"(?:send|re-?send|share|forward|e-?mail|mail|pass|give|provide|drop)\b"
    r"|\b(?:could|can|may|might)\s+(?:i|we)\s+(?:please\s+|also\s+|possibly\s+)?"
    r"(?:get|have|receive|obtain|download|request|grab)\b"
    r"|\bplease\s+(?:do\s+)?(?:send|re-?send|share|forward|e-?mail|mail|provide)\b|\bsend\s+(?:me|us)\b"
    r"|\b(?:i|we)(?:['’]d|\s+would)\s+(?:like|love)\s+(?:to\s+(?:get|receive|have|request|obtain|download|read|see)\b"
    r"|a\s+copy\b|the\b|your\b|one\b|it\b)|\bwould\s+love\s+(?:to\s+(?:get|receive|have|read|see)\b|a\s+copy\b)"
    r"|\binterested\s+in\s+(?:receiving|getting|reading|a\s+copy|the|your)\b|\byes,?\s+please\b"
    r"|\brequest(?:ing)?\s+(?:a\s+copy|the|your)\b|\bshare\s+(?:it\s+|this\s+)?with\s+(?:me|us)\b"
    r"|\b(?:get|receive|want|like|love)\s+a\s+copy\b|\bhow\s+(?:can|could|do|would)\s+i\s+(?:get|obtain|receive|download)\b"
    r"|\bhow\s+to\s+(?:get|obtain|receive|download)\b|\bwhere\s+(?:can|could|do)\s+i\s+(?:get|find|download)\b"
    r"|\blooking\s+for\s+(?:a\s+copy|the|your)\b|\bkeen\s+to\s+(?:get|receive|read|see)\b"
    r"|\b(?:would|is)\s+it\s+(?:be\s+)?possible\s+to\s+(?:get|receive|have|obtain)\b"
    r"|\bmind\s+(?:sending|forwarding|sharing)\b|\bhoping\s+(?:to\s+(?:get|receive)|you\s+(?:could|can|would)\s+send)\b"
    # de
    r"|\bbitte\s+(?:um\b|(?:senden|schicken|mailen|zusenden|zuschicken|übersenden)\b)"
    r"|\b(?:senden|schicken|mailen|sende|schick|schicke|übersenden)\s+(?:sie\s+|du\s+)?mir\b"
    r"|\bh[äa]tte\s+(?:ich\s+)?(?:sehr\s+)?gerne?\b|\b(?:möchte|würde)\s+(?:ich\s+)?(?:sehr\s+)?gerne?\b"
    r"|\b(?:könnten|können|würden)\s+sie\s+mir\b|\b(?:kannst|könntest)\s+du\s+mir\b"
    r"|\binteressiere\s+mich\s+f(?:ü|ue)r\b|\binteresse\s+an\b|\b(?:wie|wo)\s+(?:kann|könnte|bekomme|erhalte)\s+ich\b"
    # fr
    r"|\b(?:pourriez|pouvez|pourrais|peux)[- ](?:vous|tu)\s+m['’]\s*(?:envoyer|transmettre|faire\s+parvenir)"
    r"|\bm['’]envoyer\b|\benvoyez[- ]moi\b|\benvoie[- ]moi\b"
    r"|\bje\s+(?:souhaiterais|souhaite|voudrais|veux)\s+(?:bien\s+)?(?:recevoir|obtenir|avoir)\b"
    r"|\bj['’]aimerais\s+(?:bien\s+)?(?:recevoir|avoir|obtenir|le|la|les|votre|une\s+copie)\b"
    r"|\bje\s+voudrais\s+(?:le|la|les|votre|une\s+copie)\b|\bint[ée]ress[ée]e?s?\s+par\b"
    # es
    r"|\bpodr[íi]a[ns]?\s+enviarme\b|\benviarme\b|\bme\s+(?:podr[íi]a[ns]?|puede[ns]?)\s+(?:enviar|mandar)\b"
    r"|\bme\s+gustar[íi]a\s+(?:recibir|obtener|tener)\b|\benv[íi][ae]me\b|\bm[áa]nd[ae]me\b"
    r"|\bquisiera\s+(?:recibir|obtener|tener|el|la|su|una\s+copia)\b|\bme\s+interesa\b|\bsolicit(?:o|ar)\b"
    # nl
    r"|\b(?:kunt|kan|zou|wilt)\s+u\s+mij\b|\b(?:kun|kan|zou|wil)\s+je\s+(?:mij|me)\b"
    r"|\bgraag\s+ontvang\s+ik\b|\bontvang\s+ik\s+graag\b|\bstuur\s+(?:me|mij)\b|\bstuurt\s+u\s+mij\b"
    r"|\bik\s+(?:zou|wil)\s+graag\b|\b(?:zou|wil)\s+ik\s+graag\b|\bge[ïi]nteresseerd\s+in\b|\bmag\s+ik\b"
    # it, pt
    r"|\bpotrebbe\s+inviarmi\b|\bmi\s+(?:può|potrebbe)\s+inviare\b|\bvorrei\s+(?:ricevere|avere)\b"
    r"|\bpoderia\s+(?:me\s+)?enviar\b|\bgostaria\s+de\s+receber\b",
    re.IGNORECASE,
)
# Between an ask and the mention: the ask is for something else ("the invoice for the … workshop").
_OTHER_OBJECT = re.compile(
    r"\b(?:for|about|regarding|re|on|from|at|after|before|during|to|through|into|für|über|zur|zum|vom|pour|sur"
    r"|concernant|para|sobre|acerca|voor|betreffende|invoice|agenda|slides|deck|minutes|notes|recording|invite"
    r"|invitation|feedback|thoughts|quote|proposal|contract|link|rechnung|facture|factura|factuur)\b",
    re.IGNORECASE,
)
# After an ask that follows the mention: its object is the mention ("… could you send it?").
_PRONOUN_OBJECT = re.compile(
    r"\s*(?:(?:me|us|mir|moi)\s+)?(?:it|this|that|one|a\s+copy|over|along|across|es|sie|le|la|lo|het|die)\b"
    r"|\s+(?:please|bitte|as\s+well|too|also)\b|\s*(?:[.!?,)]|$)",
    re.IGNORECASE,
)
_PLEASE_AFTER = re.compile(
    r"\s*[,:]?\s*(?:please|pls|bitte|por\s+favor|s['’]il\s+vous\s+pla[iî]t|svp|graag|alstublieft|aub|per\s+favore)\b",
    re.IGNORECASE,
)
_PLEASE_BEFORE = re.compile(
    r"\b(?:please|bitte|graag)\s*[,:]?\s*(?:(?:the|your|die|den|das|ihre|de|het|uw|la|le|el)\s+)?$", re.IGNORECASE
)
_IMPERATIVE = re.compile(
    r"\s*(?:please\s+|kindly\s+)?(?:send|forward|share|e-?mail)\s+(?:(?:me|us|over)\s+)?"
    r"(?:(?:the|your|a\s+copy\s+of\s+the|a\s+copy\s+of\s+your)\s+)?",
    re.IGNORECASE,
)
_SEND_IT = re.compile(r"\W*(?:please\s+)?send\s+(?:it|this|one|a\s+copy)\b", re.IGNORECASE)
_CONDITIONAL = re.compile(
    r"\b(?:if|in\s+case|wenn|falls|sofern|si|s['’]il|en\s+caso|indien|mocht|mochten)\b", re.IGNORECASE
)
# Politeness, not a condition: "if possible, could you send …".
_POLITE_IF = re.compile(
    r"\bif\s+(?:possible|you\s+(?:can|could|would|don['’]t\s+mind|have\s+(?:a\s+)?(?:moment|minute|time))"
    r"|that['’]?s\s+(?:ok|okay|alright|fine)|convenient)\b|\b(?:wenn|falls)\s+m(?:ö|oe)glich\b"
    r"|\bs['’]il\s+vous\s+pla[iî]t\b|\bsi\s+(?:possible|es\s+posible|puede|pudiera)\b|\bindien\s+mogelijk\b",
    re.IGNORECASE,
)
# After the mention: the ask is for someone else ("… to my colleague", "… with the team").
_SOMEONE_ELSE = re.compile(
    r"\b(?:[Tt]o|an|à|aan|naar|a)\s+(?:(?:my|our|his|her|their|mein\w*|unser\w*|mon|ma|mes|notre|nos|mijn|onze|mi|mis"
    r"|nuestr\w+)\s+(?:colleague|boss|team|manager|partner|co-?founder|assistant|client|customer|friend|ceo|cfo|cto"
    r"|vp|kolleg\w*|chef\w*|collègue|patron|équipe|colega|jefe|equipo|collega|baas)\b|him\b|her\b|them\b|ihm\b|lui\b"
    r"|leur\b|él\b|ella\b|hem\b|the\s+\w+|[A-Z][a-zà-ÿ]+\b|[\w.+-]+@[\w.-]+)"
    r"|\b[Ww]ith\s+(?:the|my|our|his|her|their|everyone|everybody|all|[A-Z][a-zà-ÿ]+\b|[\w.+-]+@[\w.-]+)"
)
# After a bare keyword: one particular roadmap, made with or for the writer ("the roadmap we discussed").
_DELIVERABLE = re.compile(
    r"\W*(?:that\s+|which\s+)?(?:you|we)\s+(?:\w+\s+)?(?:presented|showed|discussed|reviewed|built|drafted|prepared"
    r"|created|made|put\s+together|worked\s+on|agreed|sent\s+us|gave\s+us)\b"
    r"|\W*(?:die|den|das)\s+wir\b|\W*(?:que|dont)\s+nous\b|\W*que\s+(?:hemos|discutimos|preparamos)\b"
    r"|\W*die\s+we\b|\W*(?:for|für|pour|para|voor)\s+(?:us|our|uns|unser\w*|nous|notre|nos|nosotros|nuestr\w+|ons|onze)\b"
    # German and Dutch put the verb first: "… die Roadmap schicken, die wir besprochen haben"
    r"|[^,.;!?\n]{0,30},\s*(?:die|den|das|dat)\s+(?:wir|we)\b|[^,.;!?\n]{0,30},\s*(?:que|dont)\s+nous\b",
    re.IGNORECASE,
)
_NEGATION = re.compile(
    r"\b(?:don['’]?t|do\s+not|doesn['’]?t|does\s+not|no\s+longer|won['’]?t)\s+(?:really\s+)?(?:need|want|require)\b"
    r"|\bno\s+need\b|\bneedn['’]t\b|\bnot\s+(?:needed|necessary|interested)\b|\balready\b|\bno,?\s+thanks?\b"
    r"|\bno\s+thank\s+you\b|\bkein(?:en)?\s+bedarf\b|\bnicht\s+(?:nötig|notwendig|erforderlich|interessiert)\b"
    r"|\bbrauche\s+(?:\w+\s+){0,3}?(?:nicht|keine?n?)\b|\bschon\b|\bbereits\b|\bpas\s+besoin\b|\bd[ée]j[àa]\b"
    r"|\bno\s+necesito\b|\bno\s+hace\s+falta\b|\bya\s+(?:tengo|recib\w*|lo|la)\b|\bniet\s+nodig\b|\bhoeft\s+niet\b"
    r"|\bal\s+(?:ontvangen|gekregen|binnen)\b",
    re.IGNORECASE,
)
# A question about the magnet rather than an ask: "Is the roadmap still available?"
_AVAILABLE = re.compile(
    r"\b(?:do|does)\s+(?:you|ken|acumen)\s+(?:still\s+)?(?:have|offer|provide|send\s+out)\b|\bis\s+(?:there|it)\b"
    r"|\bstill\s+(?:available|offered|valid|on\s+offer)\b|\bavailable\b|\bhaben\s+sie\b|\bgibt\s+es\b"
    r"|\bverf(?:ü|ue)gbar\b|\berh(?:ä|ae)ltlich\b|\bavez[- ]vous\b|\by\s+a[- ]t[- ]il\b|\bdisponible\b"
    r"|\btiene[ns]?\b|\bhay\b|\bheeft\s+u\b|\bhebben\s+jullie\b|\bis\s+er\b|\bbeschikbaar\b",
    re.IGNORECASE,
)
# The sender gives rather than asks: "attached is our roadmap".
_GIVING = re.compile(
    r"\battached\b|\battachment\b|\benclosed\b|\banbei\b|\bim\s+anhang\b|\bci-jointe?\b|\bpi[èe]ce\s+jointe\b"
    r"|\badjunt[oa]\b|\bbijgevoegd\b|\bin\s+de\s+bijlage\b|\bbijlage\b",
    re.IGNORECASE,
)
_SUBJECT_ARTICLE = r"(?:the|your|a|die|der|das|den|ihre|la|le|el|de|het|uw|votre|su|tu)"
_SUBJECT_PLEASE = re.compile(
    r"\b(?:please|pls|request|requested|bitte|anfrage|por\s+favor|solicitud|s['’]il\s+vous\s+pla[iî]t|svp|demande"
    r"|graag|alstublieft|aub|aanvraag)\b",
    re.IGNORECASE,
)
def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words right after a keyword that make it a different thing: "roadmap review", "… workshop".
_AFTER_QUALIFIERS = _word_set("""
    review reviews sync meeting meetings call session sessions workshop workshops planning discussion update
    updates kickoff kick offsite deck slides presentation draft item items ticket tickets invoice webinar event
    course training program programme seminar conference talk board tool software app feature features release
    process exercise template owner lead manager workstream milestone milestones sprint alignment recording post
    article podcast episode video partners inc ltd llc gmbh group consulting labs solutions agenda
    besprechung termin sitzung planung rechnung präsentation schulung réunion atelier facture présentation
    formation reunión taller factura presentación sesión vergadering overleg bespreking sessie factuur presentatie
""")
# The word right before a keyword that makes it a different thing: "Q3 roadmap", "product roadmap".
_QUALIFIER_WORD = re.compile(
    r"q[1-4]|h[12]|fy\d{2,4}|(?:19|20)\d\d|product|produkt|technology|tech|technical|project|projekt|engineering"
    r"|feature|release|development|migration|integration|platform|security|data|cloud|ai|software|infrastructure"
    r"|transformation|career|hiring|quarterly|annual|yearly|internal|brand|content|seo|design|ux|mobile|app|api"
    r"|review|sync|meeting|réunion|reunión|termin|besprechung|vergadering|workshop|webinar|invoice|rechnung"
    r"|facture|factura|factuur"
    # a particular version of something being worked on
    r"|updated|revised|final|signed|draft|latest|current|proposed|amended|approved|edited|annotated|finished"
    r"|completed|agreed|custom|detailed|joint|aktualisierte|überarbeitete|finale|révisée|actualizado|revisado"
    r"|bijgewerkte|herziene|definitieve",
    re.IGNORECASE,
)
# What may follow a bare keyword in a request for the magnet itself: the end of the sentence,
# "please", "PDF", "… you mentioned", "… from your article"; anything else is unclear.
_CLEAN_AFTER = re.compile(
    r"\s*(?:[.!?,;:)»\"”'’]|$)"
    r"|\s+(?:please|pls|bitte|por\s+favor|s['’]il\s+vous\s+pla[iî]t|svp|graag|alstublieft|aub|thanks|thank\s+you"
    r"|danke|merci|gracias|bedankt|too|as\s+well|again|also|zu|maar|eens|toe|ook|auch|aussi|también|with\s+(?:me|us))\b"
    r"|[\s-]*(?:pdf|document|doc|guide|e-?book|file|download|checklist|unterlagen?|dokument|leitfaden|fichier"
    r"|documento|gu[íi]a|archivo|gids|bestand)\b"
    r"|\s+(?:that\s+|which\s+)?(?:you|ken|sie|vous|usted|u)\s+(?:\w+\s+)?(?:mentioned|mention|wrote|described|offer"
    r"|offered|talked|spoke|promised|referred|recommended|posted|published|advertised|erwähnt|erwähnen|anbieten"
    r"|mentionnez|proposez|parlez|menciona|mencionó|ofrece|noemt|noemde|aanbiedt)\b"
    r"|\s+(?:mentioned|described|offered|advertised|promised|erwähnt|mentionnée?|mencionad[oa]|genoemd)\b"
    r"|\s+(?:dont|que|die|das|den)\s+(?:vous|usted|sie|u|ihr)\b|\s+que\s+(?:menci|ofrec)\w*"
    r"|\s+(?:from|in|on|of|aus|von|de|dans|del|en|uit|van)\s+(?:your|ken['’]?s|ihrem|ihren|ihrer|deinem|votre|su|uw"
    r"|jouw)\s+(?:[\w-]+\s+){0,3}?(?:article|post|blog|podcast|webinar|talk|newsletter|book|site|website|linkedin"
    r"|column|piece|interview|keynote|presentation|video|episode|e-?mail|artikel|beitrag|vortrag|buch|billet|livre"
    r"|conférence|artículo|libro|charla|boek|nieuwsbrief)\b"
    r"|\s+(?:from|in|on|aus|de|dans|uit)\s+(?:the|dem|der|le|la|el|het|de)\s+(?:[\w-]+\s+){0,3}?(?:article|post|blog"
    r"|newsletter|magazine|podcast|artikel|magazin|beitrag|artículo|revista)\b"
    r"|\s+(?:sturen|toesturen|opsturen|mailen|ontvangen|schicken|senden|zusenden|zuschicken|haben|bekommen"
    r"|erhalten|recevoir|avoir|recibir|enviar|tener)\b",
    re.IGNORECASE,
)
_ARTICLES = _word_set("""
    the a an this that these die der das den dem des ein eine einen la le les l' l’ un une el los las uno una de
    het een il lo gli o os as um uma
""")
_FOREIGN = _word_set("""
    our ours my their unser unsere unserer unseren unserem unseres mein meine meiner meinen meinem meines notre
    nos mon ma mes leur leurs nuestro nuestra nuestros nuestras mi mis onze ons mijn hun nostro nostra nostri
    nostre mio mia nosso nossa meu minha
""")
_YOURS = _word_set("""
    your yours dein deine deinen deinem deiner votre vos ton ta tes tu tus su sus uw jouw vostro vostra seu sua
""")


# ---------------------------------------------------------------- asking again


def asks_to_resend(p: Parsed) -> str | None:
    """Why the person's own new text asks us to send it again ("I lost it", "the link doesn't work")."""
    text = f"{_PREFIX.sub('', p.subject)[:500]}\n{p.new_text[:_SCAN]}"
    found = _RESEND.search(text)
    if found is None or _RESEND_CANCELLED.search(text):
        return None
    return f"asks for it again: {found.group(0)!r}"


_RESEND = re.compile(
    r"\bre-?send(?:ing)?\b|\bsend\s+(?:(?:it|this|that|me|us|over)\s+){0,2}(?:(?:the|your)\s+[\w-]+\s+)?"
    r"(?:again|once\s+more|one\s+more\s+time)\b"
    r"|\b(?:can['’]?t|cannot|can\s+not|couldn['’]?t|could\s+not)\s+find\s+(?:it\b|the\s+(?:attachment|pdf|file"
    r"|document|link|e-?mail|mail|roadmap|download)\b|an?\s+attachment\b|any\s+attachment\b)"
    r"|\b(?:lost|deleted)\s+(?:it\b|the\s+(?:e-?mail|mail|attachment|pdf|file|link)\b)"
    r"|\blink\s+(?:doesn['’]?t|does\s+not|didn['’]?t|did\s+not|won['’]?t|isn['’]?t|is\s+not)\s+(?:work|open|load)"
    r"|\blink\s+is\s+(?:broken|dead|expired|not\s+working)\b|\b(?:broken|dead|expired)\s+link\b"
    r"|\b(?:attachment|pdf|file|download)\s+(?:is\s+)?(?:missing|corrupt(?:ed)?|empty|won['’]?t\s+open"
    r"|doesn['’]?t\s+open|does\s+not\s+open)\b|\bno\s+attachment\b|\bforgot\s+(?:the\s+attachment|to\s+attach)\b"
    r"|\b(?:never|didn['’]?t|did\s+not|haven['’]?t|have\s+not)\s+(?:got|gotten|get|received?)\s+(?:it|the|a)\b"
    # de
    r"|\bnoch\s*(?:ein)?mals?\s+(?:\w+\s+){0,2}?(?:schicken|senden|zusenden|zuschicken|mailen)\b"
    r"|\berneut\s+(?:\w+\s+){0,2}?(?:schicken|senden|zusenden|zuschicken)\b"
    r"|\b(?:nicht|nie)\s+(?:erhalten|bekommen|angekommen)\b|\blink\s+funktioniert\s+nicht\b|\banhang\s+fehlt\b"
    r"|\bfinde\s+(?:den|die|das)\s+(?:anhang|datei|link|mail|e-mail|pdf)\s+nicht\b"
    # fr
    r"|\brenvoy(?:er|ez)\b|\brenvoie\b|\b(?:pas|jamais)\s+re[çc]u\b|\blien\s+ne\s+(?:marche|fonctionne)\s+pas\b"
    r"|\bne\s+trouve\s+pas\s+(?:la\s+pi[èe]ce\s+jointe|le\s+fichier|le\s+lien|le\s+document|le\s+pdf)\b"
    # es
    r"|\breenvi(?:ar|arlo|arla|ármelo|armelo|árselo|e|a)\b|\benviar(?:lo|la|me|melo|mela)?\s+de\s+nuevo\b"
    r"|\bvolver\s+a\s+enviar\b|\bno\s+(?:lo\s+|la\s+|he\s+){0,2}recibido\b|\benlace\s+no\s+funciona\b"
    r"|\bno\s+encuentro\s+(?:el|la)\s+(?:archivo|adjunto|enlace|documento|pdf|correo)\b"
    # nl
    r"|\b(?:opnieuw|nogmaals|nog\s+een\s+keer)\s+(?:\w+\s+){0,2}?(?:sturen|versturen|toesturen|opsturen)\b"
    r"|\bniet\s+ontvangen\b|\blink\s+werkt\s+niet\b"
    r"|\bkan\s+(?:de|het)\s+(?:bijlage|link|bestand|pdf|e-?mail)\s+niet\s+vinden\b",
    re.IGNORECASE,
)
_RESEND_CANCELLED = re.compile(
    r"\bno\s+need\s+to\s+re-?send\b|\b(?:don['’]?t|do\s+not)\s+re-?send\b|\bfound\s+it\b|\bnever\s*mind\b"
    r"|\bgot\s+it\s+now\b|\bhat\s+sich\s+erledigt\b|\bhabe\s+(?:es|sie|ihn)\s+gefunden\b|\bc['’]est\s+bon\b"
    r"|\bya\s+lo\s+encontr[ée]\b|\bal\s+gevonden\b",
    re.IGNORECASE,
)


# ---------------------------------------------------------------- people


def _as_human(p: Parsed) -> Classification:
    if p.in_reply_to or p.references:
        return Classification("human", reasons=["person-written reply (In-Reply-To/References)"])
    reason = "person-written mail matching no campaign: needs a look"
    return Classification("human", reasons=[reason], review=True)

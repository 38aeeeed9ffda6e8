"""Building the mail we send and handing it to SMTP (or to the local outbox)."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import smtplib
import string
import textwrap
import time
import unicodedata
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import ContentDispositionHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, formataddr, parseaddr, unquote
from email.utils import quote as escape_quoted
from html import escape
from pathlib import Path
from types import MappingProxyType
from urllib.parse import quote

import idna
from flask import render_template
from jinja2 import Template, nodes, pass_eval_context
from jinja2.nodes import EvalContext
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from . import campaigns, connections
from .models import Asset, Campaign, Contact, Outbound, Step
from .signing import dkim_sign, download_token, unsubscribe_token, verp_address, verp_token

log = logging.getLogger(__name__)
LOOP_HEADER = "X-Follow-Through-Loop"
# Receivers read these raw and never decode RFC 2047 words in them (RFC 5322 §3.6.4, RFC 2369,
# RFC 8058): a Message-ID that comes back encoded does not thread, an encoded URI is not a URI.
LITERAL_HEADERS = frozenset({
    "message-id", "in-reply-to", "references", "list-unsubscribe", "list-unsubscribe-post",
    "auto-submitted", "x-auto-response-suppress", "thread-index",
})
LINE_LIMIT = 998  # RFC 5322 §2.1.1, without the CRLF
FOLD_AT = 78
FLOWED_WIDTH = 72  # RFC 3676 §4.2, the trailing soft-break space included
_QUOTED = re.compile(r"^(>+ ?)")
NAME_MAX = 64  # a display name longer than this is noise, and Python cannot fold a long quoted one
SUBJECT_MAX = 998  # Outbound.subject's column; Python folds (and encodes) it into short lines
# ZWNJ and ZWJ are format characters that Persian, Indic scripts and emoji need; they steer nothing.
_JOINERS = frozenset("\u200c\u200d")
# RFC 5321 §4.1.2 Dot-string, with RFC 6531 §3.3's UTF-8 atext: anything else must be quoted.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
_DOT_STRING = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")


def literal(name: str) -> bool:
    return name.lower() in LITERAL_HEADERS or name.lower().startswith("x-follow-through-")


def fold_literal(name: str, value: str, linesep: str = "\r\n") -> str:
    """`Name: value`, folded only at the whitespace between tokens, each line at most 998 octets."""
    tokens = value.split()
    if not value.isascii() or not tokens:
        raise ValueError(f"{name} must be printable ASCII tokens, got {value!r}")
    lines = [f"{name}: {tokens[0]}"]
    for token in tokens[1:]:
        if len(lines[-1]) + 1 + len(token) <= FOLD_AT:
            lines[-1] += f" {token}"
        else:
            lines.append(f" {token}")
    if any(len(line) > LINE_LIMIT for line in lines):
        raise ValueError(f"{name} has a token longer than a mail line may be")
    return linesep.join(lines) + linesep


class LiteralPolicy(EmailPolicy):
    """The SMTP policy, except that LITERAL_HEADERS keep their bytes: Python's folder would turn a
    token longer than 78 columns into an encoded word. Display names and subjects are still encoded."""

    def header_store_parse(self, name, value):
        if literal(name):
            fold_literal(name, str(value))  # refuse a value that could not go out literally
            return name, str(value)
        return super().header_store_parse(name, value)

    def fold(self, name, value):
        return fold_literal(name, str(value), self.linesep) if literal(name) else super().fold(name, value)

    def fold_binary(self, name, value):
        if literal(name):
            return fold_literal(name, str(value), self.linesep).encode("ascii")
        return super().fold_binary(name, value)


class _Disposition(ContentDispositionHeader):
    """Content-Disposition with both names of a non-ASCII file: Python writes only filename*=, which
    some clients ignore; RFC 6266 §4.3 (and RFC 2231 for mail) says to send the ASCII one beside it."""

    def fold(self, *, policy):
        name = self.params.get("filename")
        if name is None or name.isascii():
            return super().fold(policy=policy)
        return fold_literal(self.name, disposition(self.content_disposition, name), policy.linesep)


def disposition(kind: str, name: str) -> str:
    """`attachment; filename="Muller.pdf"; filename*=UTF-8''M%C3%BCller.pdf`, the exact name cut
    into RFC 2231 §3 continuations where it is long (a character is never split)."""
    pieces = [""]
    for char in name:
        code = quote(char, safe="")
        if len(pieces[-1]) + len(code) > 60:
            pieces.append("")
        pieces[-1] += code
    pieces[0] = f"UTF-8''{pieces[0]}"
    if len(pieces) == 1:
        exact = f"filename*={pieces[0]}"
    else:
        exact = "; ".join(f"filename*{n}*={piece}" for n, piece in enumerate(pieces))
    return f'{kind}; filename="{ascii_name(name)}"; {exact}'


def ascii_name(name: str) -> str:
    """An ASCII stand-in for a file name: accents dropped (Müller → Muller), other letters as "_",
    the suffix kept; "attachment.pdf" when nothing readable is left (日本語.pdf)."""
    stem, dot, suffix = name.rpartition(".") if "." in name else (name, "", "")
    plain = "".join(_ascii(c) for c in unicodedata.normalize("NFKD", stem))
    plain = re.sub(r"_+", "_", " ".join(plain.split())).strip(" _")
    suffix = "".join(c for c in suffix if c.isascii() and c.isalnum())
    return f"{plain if re.search(r'[A-Za-z0-9]', plain) else 'attachment'}{dot if suffix else ''}{suffix}"


def _ascii(char: str) -> str:
    if unicodedata.combining(char):
        return ""
    return char if char.isascii() and char.isprintable() and char not in '"\\' else "_"


_registry = HeaderRegistry()
_registry.map_to_type("content-disposition", _Disposition)
POLICY = LiteralPolicy(linesep="\r\n", header_factory=_registry)


class SendError(Exception):
    """SMTP said no, or could not be reached.

    `permanent`: retrying cannot help. `uncertain`: the message was handed over and no answer
    came, so the server may have accepted it; resending could deliver it twice (RFC 1047).
    """

    def __init__(self, text: str, permanent: bool = False, code: int | None = None, uncertain: bool = False):
        super().__init__(text)
        self.permanent = permanent
        self.code = code
        self.uncertain = uncertain


class _Stale(Exception):
    """The connection was gone before anything was sent."""


def unsubscribe_address(settings: dict) -> str:
    local, domain = parseaddr(settings["MAIL_FROM"])[1].rsplit("@", 1)
    return f"{local}+unsubscribe@{domain}"


# --------------------------------------------------------------------------- the render budget

RENDER_SECONDS = 2.0
RENDER_CHARS = 2_000_000  # about 2 MB of text
RANGE_MAX = 10_000


class TemplateBudgetError(Exception):
    """A template ran longer, or wrote more, than a render may."""


@dataclass
class _Budget:
    deadline: float
    seconds: float
    chars: int


_budget: ContextVar[_Budget | None] = ContextVar("render_budget", default=None)


@contextlib.contextmanager
def render_budget(seconds: float = RENDER_SECONDS, chars: int = RENDER_CHARS) -> Iterator[None]:
    """Renders inside share one deadline (the preview renders a whole sequence against one clock)."""
    token = _budget.set(_Budget(time.monotonic() + seconds, seconds, chars))
    try:
        yield
    finally:
        _budget.reset(token)


def _spend() -> None:
    budget = _budget.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise TemplateBudgetError(f"the template took longer than {budget.seconds:g} s")


def _room(size: int) -> None:
    budget = _budget.get()
    if budget is not None and size > budget.chars:
        raise TemplateBudgetError(f"the template produced more than {budget.chars / 1e6:g} MB")


def _fits(value: object) -> object:
    """`value`, unless it is text longer than the output budget."""
    if isinstance(value, str):
        _room(len(value))
    return value


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > RANGE_MAX:
        raise TemplateBudgetError(f"range() in a template is limited to {RANGE_MAX:,} numbers")
    return numbers


def _loop(items: Iterable) -> Iterator:
    """Every {% for %} iterates through here: a loop whose body writes nothing still meets the clock."""
    for item in items:
        _spend()
        yield item


@pass_eval_context
def _concat(eval_ctx: EvalContext, items: list) -> str:
    """`a ~ b`, as Jinja joins it, held to the output budget (doubling a namespace value adds up fast)."""
    return _fits(markup_join(items) if eval_ctx.autoescape else str_join(items))


def _budgeted(name: str, function):
    @functools.wraps(function)  # keeps jinja_pass_arg, so context-taking filters still get it
    def checked(*args, **kwargs):
        _spend()
        if name in _PADDING_FILTERS:
            _widths([*args[1:], *kwargs.values()])
        if name == "format" and args and isinstance(args[0], str):
            _percent_widths(args[0])
        return _fits(function(*args, **kwargs))
    return checked


# A width is memory: `"x".center(10**9)`, `"%999999999s" % x` and `"{:>999999999}".format(x)` allocate
# the whole result before any check could look at it, so widths are held to the output budget first.
_PERCENT_WIDTHS = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d*)(?:\.(\d*))?")
_PADDING_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate"})


def _widths(numbers: Iterable[object]) -> None:
    for number in numbers:
        if isinstance(number, int) and not isinstance(number, bool):
            _room(abs(number))


def _percent_widths(pattern: str) -> None:
    _widths(int(digits) for match in _PERCENT_WIDTHS.finditer(pattern) for digits in match.groups() if digits)


def _format_widths(pattern: str) -> list[str]:
    """Checks the widths written in a str.format pattern; returns the fields that give one (`{:>{w}}`)."""
    specs = [spec or "" for _, _, spec, _ in string.Formatter().parse(pattern)]
    _widths(int(digits) for spec in specs if "{" not in spec for digits in re.findall(r"\d+", spec))
    return [field for spec in specs for field in re.findall(r"\{([^{}]*)\}", spec)]


def _argument_widths(fields: list[str], args: tuple, kwargs: dict) -> None:
    for field in fields:
        if not field:  # automatic numbering: any positional argument may be the width
            _widths(args)
        elif field.isdigit():
            _widths(args[int(field):int(field) + 1])
        else:
            _widths([kwargs.get(field)])


def _product(left: object, right: object) -> int:
    """How long `left * right` would be, if it repeats a string or a list."""
    if isinstance(left, int) and isinstance(right, str | list | tuple):
        left, right = right, left
    if isinstance(left, str | list | tuple) and isinstance(right, int):
        return len(left) * right
    return 0


class _Budgeted(NodeTransformer):
    """Routes every loop and every `~` through the budget; Jinja offers no hook for either."""

    def visit_For(self, node: nodes.For) -> nodes.For:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "_budget_loop", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Filter:
        self.generic_visit(node)
        listed = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(listed, "_budget_concat", [], [], None, None, lineno=node.lineno)


class BudgetedSandbox(SandboxedEnvironment):
    """Jinja's sandbox, where a render also meets a clock and an output limit (see render_budget).

    Calls, attribute lookups, filters, loops and `~` check the clock; results longer than the output
    budget are refused where they are made, and `'x' * 10**8` before it is made.
    """

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options) -> None:
        # Constant folding would run a template's expressions at compile time, outside any budget.
        super().__init__(optimized=False, **options)
        self.globals["range"] = _range
        self.filters = {name: _budgeted(name, f) for name, f in self.filters.items()}
        self.filters.update(_budget_loop=_loop, _budget_concat=_concat)

    def call_binop(self, context, operator: str, left, right):
        _spend()
        if operator == "*":
            _room(_product(left, right))
        if operator == "%" and isinstance(left, str):
            _percent_widths(left)
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            _room(int(right * abs(left).bit_length() / 3.3))  # the result's decimal digits, near enough
        return _fits(super().call_binop(context, operator, left, right))

    def call(__self, __context, __obj, *args, **kwargs):
        _spend()
        if isinstance(getattr(__obj, "__self__", None), str):  # "x".center(n), .ljust, .zfill, .expandtabs
            _widths([*args, *kwargs.values()])
        return _fits(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value):
        wrapped = super().wrap_str_format(value)
        fields = _format_widths(value.__self__) if wrapped is not None else []
        if not fields:
            return wrapped

        def nested_widths_checked(*args, **kwargs):
            _argument_widths(fields, args, kwargs)
            return wrapped(*args, **kwargs)
        return nested_widths_checked

    def getattr(self, obj, attribute: str):
        _spend()
        return _fits(super().getattr(obj, attribute))

    def getitem(self, obj, argument):
        _spend()
        return _fits(super().getitem(obj, argument))


_sandbox = BudgetedSandbox(autoescape=False)
# HTML bodies escape what comes from mail (a display name like "<b>Bob</b>") even if the admin forgot |e.
_html_sandbox = BudgetedSandbox(autoescape=True)


@functools.lru_cache(maxsize=512)
def _compiled(source: str, html: bool) -> Template:
    """Compiling costs more than rendering, and a campaign's few texts are rendered for every send."""
    environment = _html_sandbox if html else _sandbox
    tree = _Budgeted().visit(environment.parse(source))
    tree.set_environment(environment)
    return environment.from_string(tree)


def render_content(source: str | None, context: dict, html: bool = False) -> str:
    """Render an admin-editable template in the sandbox (HTML ones with autoescaping), within
    RENDER_SECONDS and RENDER_CHARS unless an enclosing render_budget() sets the limits."""
    if not source:
        return ""
    with render_budget() if _budget.get() is None else contextlib.nullcontext():
        return _render(_compiled(source, html), context)


def _render(template: Template, context: dict) -> str:
    chunks, size = [], 0
    for chunk in template.generate(context):
        size += len(chunk)
        _room(size)
        _spend()
        chunks.append(chunk)
    return "".join(chunks)


def context(contact: Contact, campaign: Campaign, settings: dict, magnet: bool = True) -> dict:
    """What templates see. `magnet.attached` / `magnet.linked` let the text say "attached" or "below"
    truthfully (a follow-up carries neither)."""
    mode = campaigns.travels(campaign, settings) if magnet else None
    # Names come from mail: a NUL or a bidi override in one must not reach the body either.
    first_name, name = header_text(contact.first_name, NAME_MAX) or None, header_text(contact.name, NAME_MAX)
    # Read-only, and only names the sandbox reads as attributes (contact.fields.NAME); a preview's
    # sample contact was never stored, so it has none. Values are cleaned as names are.
    fields = {key: header_text(str(value), 500) for key, value in (contact.fields or {}).items()
              if isinstance(key, str) and re.fullmatch(r"[a-z][a-z0-9_]{0,39}", key)}
    return {
        "contact": {"first_name": first_name, "name": name, "email": contact.email,
                    "company": header_text(contact.company, 200), "fields": MappingProxyType(fields)},
        "campaign": {"name": campaign.name, "slug": campaign.slug},
        "consultant": {"name": settings["CONSULTANT_NAME"], "company": settings["CONSULTANT_COMPANY"]},
        "magnet": {"attached": mode == campaigns.ATTACH, "linked": mode == campaigns.LINK},
    }


def _html_from_text(text: str) -> str:
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    return "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)


def flowed(text: str, width: int = FLOWED_WIDTH) -> str:
    """Plain text as RFC 3676 format=flowed: paragraphs wrapped at `width` with a trailing space on
    each soft break, so clients that know flowed text reflow it and the rest see short lines.
    Quoted lines keep their prefix, the signature separator "-- " stays as it is (§4.3), and lines
    that start with a space, ">" or "From " are space-stuffed (§4.4)."""
    out: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line == "-- ":
            out.append(line)
            continue
        quote = _QUOTED.match(line)
        prefix = quote.group(1) if quote else ""
        body = line[len(prefix):].rstrip(" ")
        pieces = textwrap.wrap(
            body, width=max(width - len(prefix) - 1, 20), break_long_words=False, break_on_hyphens=False,
            drop_whitespace=True, replace_whitespace=False,
        ) or [""]
        for n, piece in enumerate(pieces):
            soft = " " if n < len(pieces) - 1 else ""
            out.append(prefix + _stuff(piece, bool(prefix)) + soft)
    return "\n".join(out)


def _stuff(piece: str, quoted: bool) -> str:
    if not quoted and piece.startswith((" ", ">", "From ")):
        return " " + piece
    return piece


def sample_contact(address: str) -> Contact:
    """Who a test send or a preview pretends to write to."""
    return Contact(id=0, email=address, name="Sample Prospect")


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{max(n // 1024, 1)} KB"


def _downloads(row: Outbound, assets: list[Asset], settings: dict) -> list[dict]:
    """What the mail offers as links: the name the prospect sees, the size, the signed URL."""
    return [
        {"name": campaigns.attachment_name(a), "size": _size(len(a.data)),
         "url": f"{settings['BASE_URL']}/d/{download_token(settings['SECRET_KEY'], row.id or 0, a.id or 0)}"}
        for a in assets
    ]


def compose(
    row: Outbound, contact: Contact | None, campaign: Campaign, step: Step | None, settings: dict
) -> EmailMessage:
    """The complete message for a ledger row, with threading and RFC 8058 headers."""
    contact = contact or sample_contact(row.to_address)
    magnet = row.kind == "magnet" or (row.kind == "test" and step is None)
    attached, linked = campaigns.delivery(campaign, settings) if magnet else ([], [])
    ctx = context(contact, campaign, settings, magnet)
    text_src, html_src = (step.text, step.html) if step else (campaign.magnet_text, campaign.magnet_html)
    body = render_content(text_src, ctx)
    html = render_content(html_src, ctx, html=True) if html_src else _html_from_text(body)
    token = unsubscribe_token(settings["SECRET_KEY"], contact.id)
    link = f"{settings['BASE_URL']}/u/{token}"
    # The token rides in the subject: a client may send from another address of the same person.
    mailto = f"mailto:{unsubscribe_address(settings)}?subject=unsubscribe%20{token}"
    msg = EmailMessage(policy=POLICY)
    _headers(msg, row, contact, settings)
    msg["List-Unsubscribe"] = f"<{link}>, <{mailto}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # One template renders both parts, so the text and the HTML never say different things.
    parts = {"link": link, "campaign": campaign.name, "consultant": settings["CONSULTANT_NAME"],
             "subject": str(msg["Subject"]), "downloads": _downloads(row, linked, settings)}
    text = flowed(render_template("email/message.jinja", html=False, body=body, **parts))
    msg.set_content(text, params={"format": "flowed"}, cte=_transfer_encoding(text))
    page = render_template("email/message.jinja", html=True, body=Markup(html), **parts)
    msg.add_alternative(page, subtype="html", cte=_transfer_encoding(page))
    for asset in attached:
        maintype, _, subtype = asset.content_type.partition("/")
        msg.add_attachment(asset.data, maintype=maintype, subtype=subtype, filename=campaigns.attachment_name(asset))
    return msg


def _transfer_encoding(body: str) -> str:
    """7bit for ASCII in lines a mail may carry (RFC 5322 §2.1.1), else quoted-printable, which wraps
    them: a long subject in the HTML <title> once made a 1,013-octet line that servers refuse."""
    fits = body.isascii() and all(len(line) <= LINE_LIMIT for line in body.splitlines())
    return "7bit" if fits else "quoted-printable"


def thread_topic(subject: str) -> str:
    """Outlook's Thread-Topic: the subject without its reply prefixes."""
    return re.sub(r"^(\s*(re|aw|sv|antw|réf|rif)\s*:\s*)+", "", subject, flags=re.IGNORECASE) or subject


def header_text(value: str | None, limit: int) -> str:
    """Text fit for a header we send: whitespace runs made one space, control and format characters
    (NUL, CR, bidi overrides) dropped, at most `limit` characters."""
    kept = "".join(" " if c.isspace() else c for c in value or "" if _shown(c))
    return " ".join(kept.split())[:limit].rstrip()


def _shown(char: str) -> bool:
    return char.isspace() or char in _JOINERS or unicodedata.category(char)[0] != "C"


def wire_address(address: str) -> str:
    """The address as RCPT TO and the To header carry it: an IDN domain in its ASCII form (RFC 5891),
    a local part that is no dot-string quoted (RFC 5321 §4.1.2: "john..doe"@x is not john..doe@x)."""
    local, at, domain = address.strip().rpartition("@")
    if not (local and at and domain) or any(ord(c) < 32 or ord(c) == 127 for c in address):
        raise SendError(f"{address!r} is not an address mail can be sent to", permanent=True)
    return f"{_local_part(local)}@{_ascii_domain(domain)}"


def _local_part(local: str) -> str:
    local = unquote(local)
    return local if _DOT_STRING.fullmatch(local) else f'"{escape_quoted(local)}"'


def _ascii_domain(domain: str) -> str:
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except UnicodeError as exc:  # idna.IDNAError is one
        raise SendError(f"the domain {domain!r} has no ASCII form (IDNA): {exc}", permanent=True) from exc


def _mailbox(name: str, address: str) -> str:
    if not name:
        return address
    if address.isascii():
        return formataddr((name, address))
    # formataddr refuses a UTF-8 address; beside one (RFC 6532), the name may be plain UTF-8 too.
    return f'"{escape_quoted(name)}" <{address}>'


def needs_smtputf8(msg: EmailMessage) -> bool:
    """A UTF-8 local part has no ASCII form: it travels only as UTF-8 (RFC 6531, RFC 6532)."""
    to = msg["To"]
    return to is not None and any(not a.username.isascii() for a in to.addresses)


def _headers(msg: EmailMessage, row: Outbound, contact: Contact, settings: dict) -> None:
    msg["From"] = settings["MAIL_FROM"]
    msg["To"] = _mailbox(header_text(contact.name, NAME_MAX), wire_address(row.to_address))
    subject = header_text(row.subject, SUBJECT_MAX)
    msg["Subject"] = f"[Test] {subject}" if row.kind == "test" else subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<{row.message_id}>"
    if row.in_reply_to:
        msg["In-Reply-To"] = f"<{row.in_reply_to}>"
    if row.references:
        msg["References"] = row.references
    # MS-OXCMAIL 2.2.3.2.7: Outlook threads on Thread-Topic and Thread-Index, not on References.
    msg["Thread-Topic"] = thread_topic(subject)
    if row.thread_index:
        msg["Thread-Index"] = row.thread_index
    # RFC 3834 §5: a reply to a request is auto-replied; scheduled follow-ups are auto-generated.
    msg["Auto-Submitted"] = "auto-replied" if row.kind == "magnet" else "auto-generated"
    # MS-OXCMAIL 2.1.3.2.20: ask Exchange not to send OOF/auto-replies back to us.
    msg["X-Auto-Response-Suppress"] = "OOF, AutoReply"
    msg[LOOP_HEADER] = settings["MAIL_DOMAIN"]


def envelope_sender(row: Outbound, settings: dict) -> str:
    """VERP: bounces+<signed row id>@domain when a bounce address is set, else MAIL_FROM."""
    if settings.get("BOUNCE_ADDRESS"):
        token = verp_token(settings["SECRET_KEY"], row.id)
        return verp_address(settings["BOUNCE_ADDRESS"], token)
    return parseaddr(settings["MAIL_FROM"])[1]


def to_bytes(msg: EmailMessage, settings: dict) -> bytes:
    """The final bytes, DKIM-signed when a selector and key are configured (and signed a second
    time with Ed25519, RFC 8463, when that key is set too)."""
    raw = msg.as_bytes(policy=POLICY.clone(utf8=True) if needs_smtputf8(msg) else POLICY)
    domain = settings.get("DKIM_DOMAIN") or settings["MAIL_DOMAIN"]
    if settings.get("DKIM_SELECTOR") and settings.get("DKIM_PRIVATE_KEY"):
        raw = dkim_sign(raw, settings["DKIM_SELECTOR"], domain, settings["DKIM_PRIVATE_KEY"].encode())
    if settings.get("DKIM_ED25519_KEY"):
        selector = settings.get("DKIM_ED25519_SELECTOR") or f"{settings.get('DKIM_SELECTOR') or 'ft'}-ed25519"
        raw = dkim_sign(raw, selector, domain, settings["DKIM_ED25519_KEY"].encode(), ed25519=True)
    return raw


class Transport:
    """One SMTP connection per worker process, reused across jobs and reopened when it dies.

    With no SMTP_HOST, messages are written as .eml files to the outbox folder.
    """

    def __init__(self, settings: dict):
        self.settings = settings
        self.smtp: smtplib.SMTP | None = None

    def send(self, raw: bytes, sender: str, recipient: str, name: str) -> str:
        if not self.settings.get("SMTP_HOST"):
            return self._to_outbox(raw, name)
        for fresh in (self.smtp is None, True):
            try:
                return self._deliver(raw, sender, recipient)
            except _Stale as exc:
                self.close()
                if fresh:  # a kept-alive connection may have died quietly: one try on a new one
                    raise SendError(f"connection lost: {exc}") from exc
        raise AssertionError("unreachable")

    def _deliver(self, raw: bytes, sender: str, recipient: str) -> str:
        """MAIL, RCPT, DATA; a failure after the message was handed over is reported as uncertain."""
        smtp = self._envelope(sender, wire_address(recipient))
        try:
            code, text = smtp.data(raw)
        except smtplib.SMTPResponseException as exc:  # refused at the 354 step: nothing was sent
            self._reset()
            raise _error(exc.smtp_code, exc.smtp_error) from exc
        except OSError as exc:  # timed out or cut after the bytes went: the server may have taken it
            self.close()
            raise SendError(f"no final answer after DATA: {exc}", uncertain=True) from exc
        if code != 250:  # smtplib.data() only raises for the 354 step, not for the final reply
            raise _error(code, text)
        return f"{code} {text.decode(errors='replace')}"

    def _envelope(self, sender: str, recipient: str) -> smtplib.SMTP:
        smtp = self._session()
        try:
            for command, argument, options in ((smtp.mail, sender, _utf8_options(smtp, recipient)),
                                               (smtp.rcpt, recipient, ())):
                code, text = command(argument, options)
                if code not in (250, 251):
                    self._reset()
                    raise _error(code, text)
            return smtp
        except smtplib.SMTPServerDisconnected as exc:
            raise _Stale(str(exc)) from exc
        except smtplib.SMTPResponseException as exc:
            self._reset()
            raise _error(exc.smtp_code, exc.smtp_error) from exc
        except OSError as exc:  # refused, unreachable, timed out
            self.close()
            raise SendError(f"cannot reach {self.settings['SMTP_HOST']}: {exc}") from exc

    def _session(self) -> smtplib.SMTP:
        """A connected, greeted (and logged-in) session. Failures here are never the recipient's fault,
        so they are temporary (a wrong password is fixed by the admin, then the send goes)."""
        try:
            smtp = self._connect()
            smtp.ehlo_or_helo_if_needed()
            return smtp
        except smtplib.SMTPServerDisconnected as exc:
            raise _Stale(str(exc)) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise SendError(f"cannot use {self.settings['SMTP_HOST']}: {exc}") from exc

    def _reset(self) -> None:
        try:
            self.smtp.rset()
        except Exception:
            self.close()

    def _connect(self) -> smtplib.SMTP:
        if self.smtp is None:
            self.smtp = connections.smtp(self.settings)
        return self.smtp

    def close(self) -> None:
        if self.smtp is not None:
            with contextlib.suppress(Exception):  # already dead; nothing to tidy
                self.smtp.quit()
        self.smtp = None

    def _to_outbox(self, raw: bytes, name: str) -> str:
        folder = Path(self.settings["OUTBOX"])
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{name}.eml"
        partial = folder / f".{name}.eml.part"
        partial.write_bytes(raw)
        partial.replace(final)
        return f"written to {final}"


def _utf8_options(smtp: smtplib.SMTP, recipient: str) -> tuple[str, ...]:
    """MAIL FROM's options for a recipient with a UTF-8 local part: SMTPUTF8, which the server
    must offer (RFC 6531 §3.4), and 8BITMIME for the UTF-8 headers; none for an ASCII one."""
    if recipient.isascii():
        return ()
    if not smtp.has_extn("smtputf8"):
        raise SendError(f"{recipient} has a non-ASCII local part, and the SMTP server does not offer SMTPUTF8 "
                        "(RFC 6531) that it would need", permanent=True)
    return ("SMTPUTF8", "BODY=8BITMIME") if smtp.has_extn("8bitmime") else ("SMTPUTF8",)


def _error(code: int, text: bytes | str) -> SendError:
    """5xx is final; 4xx (and anything odd) may succeed later."""
    message = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return SendError(f"{code} {message}", permanent=500 <= code < 600, code=code)

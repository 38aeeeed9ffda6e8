"""The mail self-check: build what every active campaign sends, read it the way a strict receiver
does, and say rule by rule whether it holds (`flask --app wsgi check-mail`, the admin's settings page).

Header rules are checked on the raw bytes, unfolded here by hand, never on Python's decoded view:
that view hides exactly the encoded words and bad folds that break threading and one-click
unsubscribe at the receiver. Nothing here writes to the database; only `send` talks to SMTP.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import dkim
import dns.exception
import dns.resolver
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.orm import Session

from . import campaigns, mailer, outbound
from .models import Campaign, Outbound, Step

log = logging.getLogger(__name__)

SAMPLE_ADDRESS = "prospect@example.com"
# An Exchange Online Message-ID: with its header name it is longer than a 78-column line, which is
# where folders start encoding or splitting it.
SAMPLE_REQUEST_ID = "PH0PR11MB5095A1B2C3D4E5F60718293A4B5C6D7E8F90@PH0PR11MB5095.namprd11.prod.outlook.com"
DKIM_MISSING = (
    "DKIM is not configured (DKIM_SELECTOR and DKIM_PRIVATE_KEY): receivers cannot verify the mail "
    "comes from {domain}"
)
LINE_LIMIT = 998  # RFC 5322 §2.1.1, without the CRLF
TEXT_WIDTH = 78  # RFC 3676 §4.2: flowed lines no longer than 78 characters
DNS_TIMEOUT, DNS_LIFETIME = 3.0, 5.0

_MSGID = r"<[^<>\s@]+@[^<>\s@]+>"
_IDS = rf"\s*{_MSGID}(\s+{_MSGID})*\s*"
_TOKENS = r"\s*[\x21-\x7e]+(\s+[\x21-\x7e]+)*\s*"
# What each literal header must look like once unfolded; whitespace may sit between tokens only.
SHAPES = {
    "Message-ID": rf"\s*{_MSGID}\s*",
    "In-Reply-To": _IDS,
    "References": _IDS,
    "List-Unsubscribe": r"\s*<[^<>\s]+>(\s*,\s*<[^<>\s]+>)*\s*",
    "List-Unsubscribe-Post": r"\s*[\x21-\x7e]+\s*",
    "X-Follow-Through-Loop": r"\s*[A-Za-z0-9.-]+\s*",
}
LITERALS = ("Message-ID", "In-Reply-To", "References", "List-Unsubscribe", "List-Unsubscribe-Post")
REQUIRED = ("Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post")
REPLY_REQUIRED = ("In-Reply-To", "References")

Field = tuple[str, list[bytes]]
Lookup = Callable[[str], list[str]]


@dataclass(frozen=True)
class Check:
    """One rule's verdict; `ok` None means it could not be checked (no DNS, nothing configured)."""

    name: str
    ok: bool | None
    detail: str = ""

    @property
    def status(self) -> str:
        return "SKIP" if self.ok is None else "PASS" if self.ok else "FAIL"

    def line(self) -> str:
        return f"{self.status}  {self.name}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class Sample:
    """One built message: its label, its transient ledger row, and its final bytes (or why it failed)."""

    label: str
    row: Outbound
    raw: bytes | None
    error: str = ""


class Unresolvable(Exception):
    """DNS could not be asked (no network, a timeout): the check is skipped, not failed."""


# --------------------------------------------------------------------------- settings


def dkim_configured(settings: dict) -> bool:
    return bool(settings.get("DKIM_SELECTOR") and settings.get("DKIM_PRIVATE_KEY"))


def dkim_domain(settings: dict) -> str:
    return (settings.get("DKIM_DOMAIN") or settings["MAIL_DOMAIN"]).lower()


def warnings(settings: dict) -> list[str]:
    """What this deployment should fix although it runs: shown on the dashboard and /healthz."""
    if dkim_configured(settings):
        return []
    return [DKIM_MISSING.format(domain=settings["MAIL_DOMAIN"])]


def log_warnings(settings: dict) -> None:
    for text in warnings(settings):
        log.warning(text)


def settings_checks(settings: dict) -> list[Check]:
    """DKIM present (a failure only in production), its key readable, its domain aligned with From."""
    if not dkim_configured(settings):
        missing = DKIM_MISSING.format(domain=settings["MAIL_DOMAIN"])
        return [Check("DKIM configured", False if settings.get("PRODUCTION") else None, missing)]
    try:
        public_key(settings["DKIM_PRIVATE_KEY"])
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return [Check("DKIM configured", False, f"DKIM_PRIVATE_KEY is not an RSA private key in PEM: {exc}")]
    domain, sender = dkim_domain(settings), settings["MAIL_DOMAIN"].lower()
    configured = Check("DKIM configured", True, f"s={settings['DKIM_SELECTOR']} d={domain}")
    # RFC 7489 §3.1.1: DMARC passes on DKIM only when d= and the From domain share an organisational domain.
    aligned = sender == domain or sender.endswith(f".{domain}") or domain.endswith(f".{sender}")
    why = f"d={domain}, From @{sender}" if aligned else f"d={domain} does not align with the From domain {sender}"
    return [configured, Check("DKIM domain aligned with From", aligned, why)]


# --------------------------------------------------------------------------- building


def build(session: Session, settings: dict, address: str = SAMPLE_ADDRESS) -> list[Sample]:
    """The magnet and the first follow-up of every active campaign, for a sample contact at `address`.

    The ledger rows are transient and never join the session: nothing is stored.
    """
    built: list[Sample] = []
    for campaign in campaigns.all_campaigns(session):
        if campaign.active:
            built.extend(_campaign_samples(campaign, settings, address))
    return built


def _campaign_samples(campaign: Campaign, settings: dict, address: str) -> list[Sample]:
    subject = outbound.thread_subject("", campaign.magnet_subject)
    magnet = _row("magnet", address, subject, SAMPLE_REQUEST_ID, [], None, settings)
    samples = [_sample(f"{campaign.slug} magnet", magnet, campaign, None, settings)]
    if campaign.steps:
        step = campaign.steps[0]
        followup = _row(
            "followup", address, outbound.thread_subject(magnet.subject, step.subject), magnet.message_id,
            magnet.references.split(), magnet.thread_index, settings,
        )
        samples.append(_sample(f"{campaign.slug} follow-up {step.position}", followup, campaign, step, settings))
    return samples


def _row(
    kind: str, to: str, subject: str, parent: str, chain: list[str], parent_index: str | None, settings: dict
) -> Outbound:
    """A ledger row threaded the way `outbound.plan` threads one, with id 0 (it names no real row)."""
    return Outbound(
        id=0, kind=kind, to_address=to, subject=subject, message_id=outbound.new_message_id(settings["MAIL_DOMAIN"]),
        in_reply_to=parent, references=outbound.references([*chain, parent]),
        thread_index=outbound.thread_index(parent_index),
    )


def _sample(label: str, row: Outbound, campaign: Campaign, step: Step | None, settings: dict) -> Sample:
    try:
        raw = mailer.to_bytes(mailer.compose(row, None, campaign, step, settings), settings)
    except Exception as exc:  # a template error, a header the mailer refuses: reported as a failure, never a crash
        return Sample(label, row, None, f"{exc.__class__.__name__}: {exc}")
    return Sample(label, row, raw)


# --------------------------------------------------------------------------- the report


def run(session: Session, settings: dict, address: str = SAMPLE_ADDRESS, lookup: Lookup | None = None) -> list[Check]:
    """Build and check every active campaign's mail; DNS is looked up only when `lookup` is given."""
    return report(build(session, settings, address), settings, lookup)


def report(built: list[Sample], settings: dict, lookup: Lookup | None = None) -> list[Check]:
    """Every check in the order it is shown: settings, each message, then DNS (when `lookup`)."""
    checks = settings_checks(settings)
    if not built:
        checks.append(Check("active campaigns", None, "no campaign is active, so no message was built"))
    for sample in built:
        checks.extend(sample_checks(sample, settings))
    if lookup is not None:
        checks.extend(dns_checks(settings, lookup))
    return checks


def sample_checks(sample: Sample, settings: dict) -> list[Check]:
    if sample.raw is None:
        return [Check(f"{sample.label}: built", False, sample.error)]
    built = Check("built", True, f"{len(sample.raw)} octets, Message-ID <{sample.row.message_id}>")
    checks = [built, *message_checks(sample.raw, settings)]
    return [Check(f"{sample.label}: {c.name}", c.ok, c.detail) for c in checks]


def summary(checks: list[Check]) -> str:
    counts = {status: sum(c.status == status for c in checks) for status in ("PASS", "FAIL", "SKIP")}
    return f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped"


def failed(checks: list[Check]) -> bool:
    return any(c.ok is False for c in checks)


def message_checks(raw: bytes, settings: dict, reply: bool = True) -> list[Check]:
    """Every rule for one message's final bytes; `reply`: it answers a mail, so it must thread."""
    fields = header_fields(raw.split(b"\r\n\r\n", 1)[0])
    return [
        strict_parse(raw), line_ends(raw), line_lengths(raw), *literal_headers(fields, reply),
        message_id_domain(fields, settings["MAIL_DOMAIN"]), list_unsubscribe_uris(fields), one_click(fields),
        *signature_checks(fields, settings), dkim_verifies(raw, fields, settings), *body_checks(raw),
    ]


# --------------------------------------------------------------------------- raw bytes


def header_fields(head: bytes) -> list[Field]:
    """The header block as (name, physical lines): a line starting with whitespace continues a field."""
    fields: list[Field] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1].append(line)
        else:
            fields.append((line.partition(b":")[0].strip().decode("ascii", "replace"), [line]))
    return fields


def field_value(lines: list[bytes]) -> str:
    """RFC 5322 §2.2.3: unfolding removes each CRLF before whitespace, and nothing else."""
    return b"".join(lines).partition(b":")[2].decode("ascii", "replace")


def _named(fields: list[Field], name: str) -> list[list[bytes]]:
    return [lines for n, lines in fields if n.lower() == name.lower()]


def _first_value(fields: list[Field], name: str) -> str | None:
    found = _named(fields, name)
    return field_value(found[0]) if found else None


def strict_parse(raw: bytes) -> Check:
    """Python's strict policy raises on the first structural defect; header defects are collected."""
    try:
        message = BytesParser(policy=policy.strict).parsebytes(raw)
        defects = [
            f"{d.__class__.__name__} in {part.get_content_type()}"
            for part in message.walk()
            for d in [*part.defects, *(d for value in part.values() for d in value.defects)]
        ]
    except Exception as exc:  # the parser raises whatever defect it meets first, of many classes
        return Check("strict parse", False, f"{exc.__class__.__name__}: {exc}")
    return Check("strict parse", not defects, "; ".join(defects[:5]))


def line_ends(raw: bytes) -> Check:
    """RFC 5322 §2.1: CR and LF appear only together, as CRLF."""
    pairs = raw.count(b"\r\n")
    bare_lf, bare_cr = raw.count(b"\n") - pairs, raw.count(b"\r") - pairs
    if bare_lf or bare_cr:
        return Check("CRLF line ends", False, f"{bare_lf} bare LF and {bare_cr} bare CR")
    return Check("CRLF line ends", True)


def line_lengths(raw: bytes) -> Check:
    lengths = [len(line) for line in raw.splitlines()] or [0]
    for number, length in enumerate(lengths, start=1):
        if length > LINE_LIMIT:
            return Check("line length", False, f"line {number} is {length} octets; RFC 5322 §2.1.1 allows {LINE_LIMIT}")
    return Check("line length", True, f"longest line {max(lengths)} octets")


def literal_headers(fields: list[Field], reply: bool = True) -> list[Check]:
    """The headers receivers read literally: never RFC 2047-encoded, folded only between tokens."""
    ours = {n.lower(): n for n, _ in fields if n.lower().startswith("x-follow-through-")}
    names = [*LITERALS, *sorted(ours.values(), key=str.lower)]
    return [_literal(name, _named(fields, name), name in REQUIRED or (reply and name in REPLY_REQUIRED))
            for name in names]


def _literal(name: str, found: list[list[bytes]], required: bool) -> Check:
    label = f"{name} literal"
    if not found:
        return Check(label, False, "missing") if required else Check(label, None, "not present")
    if len(found) > 1:
        return Check(label, False, f"appears {len(found)} times; RFC 5322 §3.6 allows one")
    shape = next((s for n, s in SHAPES.items() if n.lower() == name.lower()), _TOKENS)
    problem = literal_problem(found[0], shape)
    return Check(label, problem is None, problem or "")


def literal_problem(lines: list[bytes], shape: str = _TOKENS) -> str | None:
    """Why a field's raw lines are not a literal header of `shape`, or None when they are."""
    joined = b"".join(lines)
    if b"=?" in joined:
        return "RFC 2047-encoded (=? in the raw bytes); receivers read this header literally"
    if not joined.isascii():
        return "8-bit bytes in a header that must be ASCII"
    if any(not line.strip() for line in lines[1:]):
        return "a folded line holds only whitespace (RFC 5322 §3.2.2)"
    value = field_value(lines)
    if re.fullmatch(shape, value):
        return None
    unsplit = (lines[0] + b"".join(line.lstrip(b" \t") for line in lines[1:])).partition(b":")[2].decode("ascii")
    if len(lines) > 1 and re.fullmatch(shape, unsplit):
        return "folded inside a token: unfolding leaves whitespace where there was none"
    return f"malformed: {value.strip()[:80]!r}"


def message_id_domain(fields: list[Field], domain: str) -> Check:
    label = "Message-ID on the MAIL_FROM domain"
    match = re.search(r"<[^<>@\s]+@([^<>@\s]+)>", _first_value(fields, "Message-ID") or "")
    if match is None:
        return Check(label, False, "no Message-ID")
    found = match.group(1).lower()
    if found != domain.lower():
        return Check(label, False, f"@{found}, not the MAIL_FROM domain {domain}")
    return Check(label, True, f"@{found}")


def list_unsubscribe_uris(fields: list[Field]) -> Check:
    """RFC 8058 §3.1 needs an https URI for the one-click POST; RFC 2369 a mailto for the rest."""
    uris = re.findall(r"<([^<>]*)>", _first_value(fields, "List-Unsubscribe") or "")
    lacking = [kind for kind, prefix in (("https", "https://"), ("mailto", "mailto:"))
               if not any(u.lower().startswith(prefix) for u in uris)]
    if lacking:
        return Check("List-Unsubscribe https and mailto", False, f"no {' and no '.join(lacking)} URI")
    return Check("List-Unsubscribe https and mailto", True)


def one_click(fields: list[Field]) -> Check:
    value = (_first_value(fields, "List-Unsubscribe-Post") or "").strip()
    if value != "List-Unsubscribe=One-Click":  # RFC 8058 §3.1: exactly this, or receivers ignore it
        return Check("List-Unsubscribe-Post one-click", False, f"is {value!r}, must be 'List-Unsubscribe=One-Click'")
    return Check("List-Unsubscribe-Post one-click", True)


# --------------------------------------------------------------------------- DKIM


def dkim_tags(value: str) -> dict[str, str]:
    """A DKIM tag list (RFC 6376 §3.2) with folding whitespace removed from every value."""
    pairs = (item.partition("=") for item in value.split(";") if "=" in item)
    return {name.strip(): re.sub(r"\s+", "", tag) for name, _, tag in pairs}


def signature_checks(fields: list[Field], settings: dict) -> list[Check]:
    """Each DKIM-Signature: relaxed/relaxed, and From signed once more than it occurs."""
    signatures = [dkim_tags(field_value(lines)) for lines in _named(fields, "DKIM-Signature")]
    if not signatures:
        missing = "DKIM is configured but the message is not signed" if dkim_configured(settings) else "not signed"
        ok = False if dkim_configured(settings) else None
        return [Check("DKIM c=relaxed/relaxed", ok, missing), Check("DKIM oversigns From", ok, missing)]
    froms = len(_named(fields, "From"))
    return [_canonicalization(signatures), _oversigned(signatures, froms)]


def _canonicalization(signatures: list[dict[str, str]]) -> Check:
    for tags in signatures:
        c = tags.get("c", "simple/simple").lower()
        c = c if "/" in c else f"{c}/simple"  # RFC 6376 §3.5: a lone c= names the header method only
        if c != "relaxed/relaxed":
            return Check("DKIM c=relaxed/relaxed", False, f"c={c} (s={tags.get('s')}): a relay that rewraps breaks it")
    return Check("DKIM c=relaxed/relaxed", True)


def _oversigned(signatures: list[dict[str, str]], froms: int) -> Check:
    """RFC 6376 §8.15: listing From once more than it occurs makes a prepended From break the signature."""
    for tags in signatures:
        signed = [h.strip().lower() for h in tags.get("h", "").split(":")].count("from")
        if signed <= froms:
            why = f"h= lists From {signed} time(s) for {froms} From header(s) (s={tags.get('s')})"
            return Check("DKIM oversigns From", False, why)
    return Check("DKIM oversigns From", True)


def public_key(pem: str) -> bytes:
    """The configured RSA key's public half, DER SubjectPublicKeyInfo (what DKIM's p= carries)."""
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA key")
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def dkim_record(pem: str) -> bytes:
    """The TXT record that publishes the configured key: `v=DKIM1; k=rsa; p=` + SubjectPublicKeyInfo."""
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_key(pem))


def dkim_verifies(raw: bytes, fields: list[Field], settings: dict) -> Check:
    """The RSA signature verifies against the configured key, as a receiver with the right DNS would see it."""
    label = "DKIM verifies with the configured key"
    if not dkim_configured(settings):
        return Check(label, None, "DKIM is not configured")
    selector, domain = settings["DKIM_SELECTOR"], dkim_domain(settings)
    signatures = [dkim_tags(field_value(lines)) for lines in _named(fields, "DKIM-Signature")]
    index = next((i for i, t in enumerate(signatures) if t.get("s") == selector and t.get("d", "").lower() == domain),
                 None)
    if index is None:
        return Check(label, False, f"no DKIM-Signature with s={selector} d={domain}")
    try:
        record = dkim_record(settings["DKIM_PRIVATE_KEY"])
        ok = dkim.DKIM(raw).verify(idx=index, dnsfunc=_answering(f"{selector}._domainkey.{domain}", record))
    except (dkim.DKIMException, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return Check(label, False, f"{exc.__class__.__name__}: {exc}")
    return Check(label, bool(ok), f"s={selector} d={domain}" if ok else "the signature does not match the bytes")


def _answering(name: str, record: bytes) -> Callable[..., bytes | None]:
    """A dkimpy DNS function that knows one record: the configured key's."""

    def lookup(asked: bytes, timeout: float = 5) -> bytes | None:
        return record if asked.decode().rstrip(".").lower() == name.lower() else None

    return lookup


# --------------------------------------------------------------------------- bodies


def body_checks(raw: bytes) -> list[Check]:
    """The text part is flowed and narrow, the HTML part names its charset and has a title."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    return [_flowed(text), _text_width(text), _html_has(html, "HTML <meta charset>", r"<meta\s+charset"),
            _html_has(html, "HTML <title>", r"<title[\s>]")]


def _flowed(part: EmailMessage | None) -> Check:
    if part is None:
        return Check("text format=flowed", False, "no text/plain part")
    value = (part.get_param("format") or "").lower()
    return Check("text format=flowed", value == "flowed", "" if value == "flowed" else f"format={value or 'fixed'}")


def _text_width(part: EmailMessage | None) -> Check:
    label = f"text lines at most {TEXT_WIDTH}"
    if part is None:
        return Check(label, False, "no text/plain part")
    lines = part.get_content().splitlines() or [""]
    # A single word longer than the line (a long link) cannot be wrapped and may run on (RFC 3676 §4.2).
    wrappable = [line for line in lines if " " in line.strip()] or [""]
    longest = max(wrappable, key=len)
    if len(longest) > TEXT_WIDTH:
        return Check(label, False, f"a line of {len(longest)} characters: {longest[:40]!r}…")
    return Check(label, True, f"longest wrappable line {len(longest)}")


def _html_has(part: EmailMessage | None, label: str, pattern: str) -> Check:
    if part is None:
        return Check(label, False, "no text/html part")
    found = re.search(pattern, part.get_content(), re.IGNORECASE) is not None
    return Check(label, found, "" if found else "missing")


# --------------------------------------------------------------------------- DNS


def txt_records(name: str) -> list[str]:
    """The TXT strings at `name` ([] when it or its TXT does not exist); Unresolvable when DNS cannot answer."""
    try:
        resolver = dns.resolver.Resolver()
        resolver.timeout, resolver.lifetime = DNS_TIMEOUT, DNS_LIFETIME
        answer = resolver.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as exc:  # a timeout, no nameservers, no resolver configured
        raise Unresolvable(str(exc) or exc.__class__.__name__) from exc
    return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]


def dns_checks(settings: dict, lookup: Lookup = txt_records) -> list[Check]:
    """The published DKIM key (when configured), and the From domain's SPF and DMARC records."""
    domain = settings["MAIL_DOMAIN"]
    checks = [published_key(settings, lookup)] if dkim_configured(settings) else []
    return [*checks, spf(domain, lookup), dmarc(domain, lookup)]


def _unresolved(label: str, name: str, exc: Unresolvable) -> Check:
    return Check(label, None, f"could not resolve {name}: {exc}")


def published_key(settings: dict, lookup: Lookup = txt_records) -> Check:
    """The selector's TXT record publishes the configured key (RFC 6376 §3.6.1)."""
    label, name = "DKIM record published", f"{settings['DKIM_SELECTOR']}._domainkey.{dkim_domain(settings)}"
    try:
        records = lookup(name)
    except Unresolvable as exc:
        return _unresolved(label, name, exc)
    if len(records) != 1:
        return Check(label, False, _not_one(records, "TXT", name))
    p = dkim_tags(records[0]).get("p", "")
    if not p:
        return Check(label, False, f"{name} has an empty p=: the key is revoked")
    try:
        published = serialization.load_der_public_key(base64.b64decode(p))
    except (binascii.Error, ValueError, UnsupportedAlgorithm):
        return Check(label, False, f"{name}: p= is not a public key")
    ours = serialization.load_der_public_key(public_key(settings["DKIM_PRIVATE_KEY"]))
    if not isinstance(published, rsa.RSAPublicKey) or published.public_numbers() != ours.public_numbers():
        return Check(label, False, f"{name} publishes another key than DKIM_PRIVATE_KEY")
    return Check(label, True, name)


def _not_one(records: list[str], kind: str, name: str) -> str:
    if not records:
        return f"no {kind} record at {name}"
    return f"{len(records)} {kind} records at {name}; receivers need exactly one"


def spf(domain: str, lookup: Lookup = txt_records) -> Check:
    # RFC 7208 §4.5: more than one v=spf1 record is a permanent error at the receiver.
    return _one_record("SPF record", domain, "v=spf1", lookup)


def dmarc(domain: str, lookup: Lookup = txt_records) -> Check:
    return _one_record("DMARC record", f"_dmarc.{domain}", "v=DMARC1", lookup)


def _one_record(label: str, name: str, version: str, lookup: Lookup) -> Check:
    try:
        records = lookup(name)
    except Unresolvable as exc:
        return _unresolved(label, name, exc)
    found = [r for r in records if re.match(rf"{re.escape(version)}(\s|;|$)", r.strip(), re.IGNORECASE)]
    if len(found) != 1:
        return Check(label, False, _not_one(found, version, name))
    return Check(label, True, f"{name}: {found[0][:120]}")


# --------------------------------------------------------------------------- sending


def send(built: list[Sample], settings: dict, to: str) -> list[Check]:
    """Send each built message to `to` through the configured transport; one check per server answer."""
    transport = mailer.Transport(settings)
    try:
        return [_send_one(transport, sample, settings, to) for sample in built if sample.raw is not None]
    finally:
        transport.close()


def _send_one(transport: mailer.Transport, sample: Sample, settings: dict, to: str) -> Check:
    label = f"{sample.label}: sent to {to}"
    name = f"check-{sample.row.message_id.partition('@')[0]}"
    try:
        answer = transport.send(sample.raw, mailer.envelope_sender(sample.row, settings), to, name)
    except mailer.SendError as exc:
        return Check(label, False, str(exc))
    return Check(label, True, answer)

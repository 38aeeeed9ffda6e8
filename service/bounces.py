"""Machine reports about mail we sent: delivery-status bounces, complaints, receipts.

Pure functions over an already parsed message (see `service.inbound.parse`). RFC 3464
delivery-status notifications are read field by field; the many MTAs that still send
plain-text bounces (qmail, Exim, Domino, old Exchange, Gmail's text DSN, ...) are read
from their text. Whether an address is *permanently* bad follows sisimai's hard/soft
split: only user unknown, host unknown, moved and "does not accept mail" are hard.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser
from email.utils import parseaddr
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only; inbound imports this module
    from .inbound import Parsed

_SCAN = 60_000  # characters of bounce text worth reading; the rest is the returned message
_MAX_DEPTH = 30  # MIME nesting walked (inbound.parse already cuts mail with more containers)
_MAX_PARTS = 500  # parts walked in one multipart
_MAX_FIELDS_READ = 20  # fields of one name read for addresses
_MAX_ADDRESS_FIELD = 512  # characters given to parseaddr, which recurses once per nested comment

# RFC 3463 §3.2: X.1.1 bad mailbox, X.1.2 bad system, X.1.3 bad syntax, X.1.6 moved,
# X.1.10 null MX (RFC 7505); X.4.4 "unable to route" is what MTAs send for a dead domain.
# sisimai counts "450 4.1.1 userunknown" as hard too.
_HARD_STATUS = frozenset({"5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.4.4", "4.1.1"})
# Statuses that say nothing about the reason; the diagnostic text decides.
_VAGUE_STATUS = frozenset({"5.0.0", "4.0.0", "5.1.0", "5.5.0", "5.4.0", "5.3.0", "5.2.0"})

_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
_REPLY_CODE = re.compile(r"(?<![\d.])([245]\d\d)(?=[\s\-])")
# Starts only where a run of local-part characters starts: trying every position of a long run
# without an "@" rescanned the run each time (quadratic).
_ADDRESS = re.compile(
    r"(?<![A-Za-z0-9._%+'=/!#$&*?^{|}~-])[A-Za-z0-9._%+'=/!#$&*?^{|}~-]++@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)+"
)

# sisimai reasons userunknown / hostunknown / hasmoved / notaccept, as MTAs word them.
_HARD_TEXT = re.compile(
    r"user(?:name)?\s+(?:is\s+)?unknown|unknown\s+(?:user|recipient|address|local[- ]?part|mailbox)"
    r"|no\s+such\s+(?:user|recipient|mailbox|address|account|person|local user)"
    r"|(?:recipient|user|mailbox|address|account|e-?mail)(?:\s+address)?\s+(?:does\s+not|doesn't|did\s+not)"
    r"\s+exist|does\s+not\s+exist|doesn't\s+exist"
    r"|(?:mailbox|account|recipient|user|address)\s+(?:not\s+found|unavailable|is\s+unavailable)"
    r"|(?:invalid|bad|illegal|unknown)\s+(?:recipient|mailbox|address|user|e-?mail address)"
    r"|not\s+listed\s+in\s+(?:the\s+)?(?:domino\s+directory|.{0,40}address\s+book)"
    r"|recipient\s*not\s*found|user\s+not\s+found|not\s+a\s+valid\s+(?:user|mailbox|recipient|address)"
    r"|address\s+(?:is\s+)?(?:unknown|invalid|not\s+found)|couldn't\s+be\s+found|could\s+not\s+be\s+found"
    r"|recipient\s+address\s+rejected:\s+(?:access\s+denied|user\s+unknown|undeliverable)"
    r"|is\s+not\s+a\s+known\s+user|unrouteable\s+address|unroutable\s+address"
    r"|host\s+(?:or\s+domain\s+name\s+)?not\s+found|host\s+unknown|unknown\s+host"
    r"|domain\s+(?:name\s+)?(?:not\s+found|does\s+not\s+exist|unknown)|no\s+mx\b|null\s+mx"
    r"|couldn't\s+find\s+(?:a\s+mail\s+exchanger|any\s+host)|name\s+service\s+error"
    r"|(?:user|recipient|address)\s+has\s+moved|does\s+not\s+accept\s+(?:e-?)?mail"
    r"|not\s+accepting\s+(?:any\s+)?mail|mailbox\s+not\s+exist|no\s+mailbox\s+here"
    r"|no\s+such\s+domain|name\s+or\s+service\s+not\s+known|indicated\s+no\s+smtp\s+service"
    r"|domain\s+is\s+not\s+reachable|(?<!sender\s)(?:address|recipient)\s+rejected"
    r"|doesn't\s+have\s+an?\s+[\w.-]+\s+account|no\s+longer\s+valid|wrong\s+or\s+no\s+longer"
    r"|n'existe\s+pas|existiert\s+nicht|unbekannt|no\s+existe|bestaat\s+niet|inconnu",
    re.IGNORECASE,
)
# Reasons that say the address itself is fine: full, blocked, policy, content, suspended.
# (Plain transient wording such as "try again" is not here: without a hard reason the
# failure is soft anyway, and "domain not reachable, try again" is still a dead domain.)
_SOFT_TEXT = re.compile(
    r"mailbox\s+(?:is\s+)?full|over\s*quota|quota|insufficient\s+(?:storage|disk)|storage\s+(?:space|limit)"
    r"|disk\s+(?:full|space)|full\s+mailbox|too\s+many\s+messages"
    r"|too\s+(?:big|large)|size\s+limit|exceed\w*\s+(?:\w+\s+){0,3}(?:limit|size|quota|maximum)"
    r"|message\s+(?:size|length)"
    r"|spam|junk|blocked|block\s*list|black\s*list|dnsbl|\brbl\b|spamhaus|policy|reputation"
    r"|dmarc|\bspf\b|dkim|authenticat|\bptr\b|reverse\s+dns|rdns|relay(?:ing)?\s+(?:access\s+)?denied"
    r"|virus|malware|suspicious|content\s+(?:rejected|filter)|expired|could\s+not\s+be\s+delivered"
    r"\s+within|sender\s+(?:address|domain)|domain\s+of\s+sender|in\s+reply\s+to\s+mail\s+from"
    r"|too\s+many\s+(?:connections|concurrent|recipients)|rate\s*limit|throttl"
    r"|suspend|disabled|inactive|deactivated|locked|frozen",
    re.IGNORECASE,
)
# Where the copy of the returned message starts in plain-text bounces. The leading space is
# [ \t], not \s: "^\s*-*\s*" let every line start of a run of blank lines try every split of
# the run (cubic: a 3 KB bounce took minutes).
_ORIGINAL_MARKER = re.compile(
    r"^[ \t]*+-*+[ \t]*+(?:below\s+this\s+line\s+is\s+a\s+copy|this\s+is\s+a\s+copy\s+of\s+the\s+message"
    r"|original\s+message\s+follows|unsent\s+message\s+follows|message\s+header\s+follows"
    r"|the\s+header\s+of\s+the\s+original\s+message|returned\s+message\s+follows"
    r"|original\s+message\s+headers|headers\s+of\s+your\s+message|----- original message"
    r"|message\s+headers\s+follow|returned\s+message|summary\s+of\s+the\s+undelivered)"
    r"|^(?:Return-Path|Received|Message-I[dD]|DKIM-Signature):\s",
    re.IGNORECASE | re.MULTILINE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery\s+(?:status|failure|has\s+failed|failed|notification|problem)"
    r"|failure\s+notice|returned\s+mail|mail\s+delivery|could\s+not\s+be\s+delivered|not\s+delivered"
    r"|non-?deliver|delayed\s+mail|warning:\s+message|has\s+not\s+yet\s+been\s+delivered|unzustellbar"
    r"|nicht\s+zustellbar|non\s+remis|onbestelbaar|returned\s+to\s+sender|mail\s+system\s+error"
    r"|blocked\s+message|rejected\s+mail|\bdsn\b|Доставка|не\s+доставлено|сообщение\s+не",
    re.IGNORECASE,
)
_BOUNCE_BODY = re.compile(
    r"could\s+not\s+be\s+delivered|couldn't\s+be\s+delivered|wasn't\s+delivered|was\s+not\s+delivered"
    r"|delivery\s+(?:to\s+the\s+following\s+recipients?\s+)?(?:has\s+)?failed|failed\s+permanently"
    r"|permanent\s+(?:fatal\s+)?error|undeliverable|qmail-send\s+program"
    r"|created\s+automatically\s+by\s+mail\s+delivery\s+software|did\s+not\s+reach|unable\s+to\s+deliver"
    r"|could\s+not\s+deliver|not\s+(?:yet\s+)?been\s+delivered|still\s+being\s+retried"
    r"|message\s+(?:was\s+)?(?:rejected|blocked)|returned\s+to\s+sender|delivery\s+failure",
    re.IGNORECASE,
)
_DELAY_TEXT = re.compile(
    r"delayed|still\s+being\s+retried|will\s+(?:continue\s+to\s+)?(?:retry|try)|not\s+yet\s+been"
    r"\s+delivered|delivery\s+status\s+notification\s+\(delay\)|warning:|will\s+be\s+retried",
    re.IGNORECASE,
)
# Challenge-response filters answer with "prove you are human" mail, sometimes shaped as a DSN.
_CHALLENGE = re.compile(
    r"boxbe|boxtrapper|bluebottle|spam\s*arrest|choicemail|mailblocks|requires?\s+(?:your\s+)?"
    r"(?:confirmation|verification)|verify\s+that\s+you\s+are|confirm\s+that\s+you\s+are\s+(?:a\s+)?"
    r"(?:real|human)|real\s+live\s+human|confirm\s+this\s+mail\s+server|guest\s+list|allowed\s+list"
    r"|verify#",
    re.IGNORECASE,
)
_MDN = "disposition-notification"
_JMRP_SUBJECT = re.compile(r"complaint about message from", re.IGNORECASE)
_DAEMON = re.compile(r"^(?:mailer[-_]?daemon|mail[-_]?delivery[-_]?(?:system|subsystem))$", re.I)
_POSTMASTER = re.compile(r"^post[-_]?master$", re.IGNORECASE)


@dataclass
class Report:
    """A machine report: kind is bounce, delivered, complaint, receipt or challenge."""

    kind: str
    reasons: list[str] = field(default_factory=list)
    recipients: list[dict] = field(default_factory=list)
    original_message_id: str | None = None


def detect(parsed: Parsed) -> Report | None:
    """The report this message is, or None when it is not a machine report about our mail."""
    msg = parsed.headers
    rtype = report_type(msg)
    types = {part.get_content_type() for part in walk(msg)}
    if rtype == "feedback-report" or "message/feedback-report" in types:
        return _complaint(parsed, f"Content-Type multipart/report; report-type={rtype}")
    if _is_jmrp(parsed):
        return _complaint(parsed, "Hotmail/Outlook.com complaint (JMRP)")
    if rtype == _MDN or f"message/{_MDN}" in types:
        # RFC 8098: a read receipt, machine mail that must never be answered.
        return Report("receipt", [f"Content-Type multipart/report; report-type={_MDN}"])
    reasons = _bounce_signals(parsed, rtype, "message/delivery-status" in types)
    if _challenge(parsed, read_text=bool(reasons)):
        return Report("challenge", ["challenge-response (sender verification request)"])
    if not reasons:
        return None
    return _bounce(parsed, reasons)


def report_type(msg: Message) -> str:
    """The report-type parameter of a multipart/report, lowercased (RFC 6522), or ''."""
    if msg.get_content_type() != "multipart/report":
        return ""
    return str(msg.get_param("report-type", "") or "").strip().strip('"').lower()


def walk(part: Message, depth: int = 0) -> Iterator[Message]:
    """Every MIME part, without descending into enclosed messages (message/*)."""
    yield part
    if depth > _MAX_DEPTH or part.get_content_maintype() == "message" or not part.is_multipart():
        return
    payload = part.get_payload()
    for sub in payload[:_MAX_PARTS] if isinstance(payload, list) else ():
        if isinstance(sub, Message):
            yield from walk(sub, depth + 1)


def _bounce_signals(parsed: Parsed, rtype: str, has_status_part: bool) -> list[str]:
    msg = parsed.headers
    local = (parsed.from_address or parsed.from_name).split("@")[0]
    subject, body = _BOUNCE_SUBJECT.search(parsed.subject), _BOUNCE_BODY.search(parsed.text[:_SCAN])
    submitted = auto_submitted(msg) not in ("", "no")
    machine = is_null(msg, "Return-Path") or is_null(msg, "From") or submitted
    envelope = _system_envelope(msg)
    checks = [
        (rtype == "delivery-status", "Content-Type multipart/report; report-type=delivery-status"),
        (has_status_part, "message/delivery-status part (RFC 3464)"),
        (msg.get("X-Failed-Recipients") is not None, "X-Failed-Recipients header"),
        (bool(_DAEMON.match(local)), f"From {parsed.from_address or parsed.from_name}"),
        (bool(_POSTMASTER.match(local) and (subject or body)), f"From {local} with bounce text"),
        (bool(envelope and (subject or body)), f"{envelope} (the mail system) with bounce text"),
        (bool(machine and (subject or body)), "null sender or Auto-Submitted with bounce text"),
        (_enclosed_report(msg) is not None and bool(subject), "encloses a delivery-status report"),
    ]
    return [reason for hit, reason in checks if hit]


def _system_envelope(msg: Message) -> str | None:
    """"Return-Path x" when a mailer-daemon@/postmaster@ Return-Path or Sender sent it: bounces whose From
    names a friendlier "Mail Delivery Service <delivery@…>" still come from the mail system (RFC 3464 §2)."""
    for name in ("Return-Path", "Sender"):
        address = _address(msg.get(name, "") or "")
        if address and is_system(address):
            return f"{name} {address}"
    return None


def is_null(msg: Message, name: str) -> bool:
    """True for a present but empty address header such as "Return-Path: <>"."""
    value = msg.get(name)
    return value is not None and str(value).strip().strip("<>").strip() == ""


def auto_submitted(msg: Message) -> str:
    """The Auto-Submitted keyword (RFC 3834 §5): token before ';', lowercased; '' if absent."""
    return str(msg.get("Auto-Submitted", "")).split(";")[0].strip().lower()


def _bounce(parsed: Parsed, reasons: list[str]) -> Report:
    recipients = _dsn_recipients(parsed) or _text_recipients(parsed)
    original = _original_message_id(parsed)
    actions = {r["action"] for r in recipients}
    if recipients and actions <= {"delivered", "relayed", "expanded", "deliverable"}:
        # RFC 3464 §2.3.3: a success notice, not a failure; still machine mail.
        why = f"delivery-status notification reports success (Action: {', '.join(sorted(actions))})"
        return Report("delivered", [why], recipients, original)
    return Report("bounce", reasons, recipients, original)


def _dsn_recipients(parsed: Parsed) -> list[dict]:
    """One entry per RFC 3464 §2.3 per-recipient group of every message/delivery-status part."""
    out: list[dict] = []
    for root in (parsed.headers, _enclosed_report(parsed.headers)):
        for part in walk(root) if root is not None else ():
            if part.get_content_type() == "message/delivery-status":
                out += [_recipient(b, parsed.text) for b in _status_blocks(part) if _names_rcpt(b)]
        if out:
            return out
    if "final-recipient:" in parsed.text[:_SCAN].lower():  # broken MIME: the fields are in the text
        blocks = [_fields(c) for c in re.split(r"\n\s*\n", parsed.text[:_SCAN])]
        out = [_recipient(b, parsed.text) for b in blocks if _names_rcpt(b)]
    return out


def _enclosed_report(msg: Message) -> Message | None:
    """A DSN forwarded as an attachment (some gateways wrap the report once more)."""
    if msg.get_content_type() == "multipart/report":
        return None
    for part in walk(msg):
        payload = part.get_payload() if part.get_content_type() == "message/rfc822" else None
        if isinstance(payload, list) and payload and report_type(payload[0]) == "delivery-status":
            return payload[0]
    return None


def _status_blocks(part: Message) -> list[dict[str, str]]:
    payload = part.get_payload()
    if isinstance(payload, list):  # the email package splits the groups into header blocks
        return [{k.lower(): _unfold(v) for k, v in block.items()} for block in payload]
    text = payload if isinstance(payload, str) else ""
    if part.get("Content-Transfer-Encoding", "").lower() in ("base64", "quoted-printable"):
        data = part.get_payload(decode=True)
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else text
    return [_fields(chunk) for chunk in re.split(r"\n\s*\n", text.replace("\r", ""))]


def _fields(chunk: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    name = None
    for line in chunk.split("\n"):
        if line[:1] in (" ", "\t") and name:
            fields[name] += " " + line.strip()
        elif ":" in line:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            fields[name] = value.strip()
    return fields


def _unfold(value: object) -> str:
    return _FOLD.sub(" ", str(value)).strip()


# The space around a line break, matched from the start of its run only: from every position of a
# long run of spaces without a break it rescanned the run each time (quadratic).
_FOLD = re.compile(r"(?<!\s)\s*\n\s*")


def _names_rcpt(block: dict[str, str]) -> bool:
    return "final-recipient" in block or "original-recipient" in block


def _recipient(block: dict[str, str], text: str) -> dict:
    # RFC 3464 §2.3.1: Original-Recipient is the address as we sent it (before aliasing).
    original = _bare(block.get("original-recipient", "").split(";", 1)[-1])
    final = _bare(block.get("final-recipient", "").split(";", 1)[-1])
    address = original if original and "@" in original else final
    diag = block.get("diagnostic-code", "").split(";", 1)[-1].strip()
    status = _best_status(block.get("status", ""), diag)
    action = (block.get("action", "").split() or [""])[0].lower()
    action = action or _action_from_status(status)
    evidence = diag or _context(text, address)
    return _entry(address, status, action, evidence)


def _entry(address: str | None, status: str | None, action: str, evidence: str) -> dict:
    return {
        "address": address,
        "status": status,
        "action": action,
        "permanent": is_permanent(action, status, evidence),
    }


def _bare(value: str) -> str | None:
    address = _address(value.strip()) or value.strip().strip("<>")[:_MAX_ADDRESS_FIELD]
    return address.lower() or None


def _address(value: object) -> str:
    """The address parseaddr finds in a field, lowercased; '' if none."""
    try:
        return parseaddr(str(value)[:_MAX_ADDRESS_FIELD])[1].lower()
    except RecursionError:  # deeply nested comments; no mail system writes those
        return ""


def _best_status(status: str, diag: str) -> str | None:
    """The Status field, or the more specific enhanced code in the diagnostic (RFC 3463)."""
    found = _STATUS.search(status)
    code = found.group(0) if found else None
    detail = _STATUS.search(diag)
    if detail and (code is None or code in _VAGUE_STATUS) and detail.group(1) == (code or "5")[0]:
        return detail.group(0)
    if code is None and (reply := _REPLY_CODE.search(diag)):
        return f"{reply.group(1)[0]}.0.0"
    return code


def _action_from_status(status: str | None) -> str:
    # RFC 3464 §2.3.3 makes Action required; guess it from the status class when missing.
    return {"2": "delivered", "4": "delayed"}.get((status or "5")[0], "failed")


def is_permanent(action: str, status: str | None, text: str) -> bool:
    """True only when the address itself is bad: user/host unknown, moved, no mail accepted."""
    if action not in ("failed", ""):
        return False  # RFC 3464 §2.3.3: delayed / relayed / delivered change nothing
    status = status or ""
    if status.startswith("2") or (status.startswith("4") and status != "4.1.1"):
        return False
    hard, soft = _HARD_TEXT.search(text), _SOFT_TEXT.search(text)
    if status in _HARD_STATUS:
        return bool(hard or not soft)
    return bool(hard and not soft)


_ENHANCED_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


def refused_address(reply: str) -> bool:
    """An SMTP server's 5xx at send time names a bad address (RFC 3463 5.1.x), judged as a bounce is."""
    status = _ENHANCED_STATUS.search(reply)
    return is_permanent("failed", status[1] if status else None, reply)


def _text_recipients(parsed: Parsed) -> list[dict]:
    """Recipients of a plain-text bounce: X-Failed-Recipients, else addresses in the notice."""
    notice = _bounce_notice(parsed.text)
    action = "delayed" if _is_delay(parsed, notice) else "failed"
    failed = _failed_header(parsed.headers)
    addresses = failed or _notice_addresses(notice, _own_addresses(parsed))
    if not addresses:
        return [_entry(None, _text_status(notice), action, notice[:2000])]
    return [_text_entry(a, notice, action) for a in addresses[:20]]


def _text_entry(address: str, notice: str, action: str) -> dict:
    context = _context(notice, address) or notice[:2000]
    return _entry(address, _text_status(context) or _text_status(notice), action, context)


def _bounce_notice(text: str) -> str:
    """The human-readable notice of a bounce, without the returned copy of our message."""
    head = text[:_SCAN]
    for found in _ORIGINAL_MARKER.finditer(head):
        if head[: found.start()].strip():
            return head[: found.start()]
    return head


def _is_delay(parsed: Parsed, notice: str) -> bool:
    return bool(_DELAY_TEXT.search(parsed.subject) or _DELAY_TEXT.search(notice[:3000]))


def _failed_header(msg: Message) -> list[str]:
    values = (msg.get_all("X-Failed-Recipients") or [])[:_MAX_FIELDS_READ]
    found = [a.lower() for v in values for a in _ADDRESS.findall(str(v))]
    return list(dict.fromkeys(found))


def _own_addresses(parsed: Parsed) -> set[str]:
    msg = parsed.headers
    own = {parsed.from_address or "", parsed.reply_to or ""}
    for name in ("To", "Cc", "Delivered-To", "Return-Path"):
        values = (msg.get_all(name) or [])[:_MAX_FIELDS_READ]
        own.update(a.lower() for v in values for a in _ADDRESS.findall(str(v)))
    return own


def _notice_addresses(notice: str, own: set[str]) -> list[str]:
    found = []
    for line in notice.split("\n"):
        if re.match(r"\s*(?:received|message-id|in-reply-to|references|from|by|to|cc|sent|subject)"
                    r"\b", line, re.I):
            continue  # trace lines and the summary of our message, not failed recipients
        found += [_unprefix(a.lower().rstrip(".")) for a in _ADDRESS.findall(line)]
    return [a for a in dict.fromkeys(found) if a not in own and not is_system(a)]


def _unprefix(address: str) -> str:
    # X.400-style gateways (old Exchange) write "…;SMTP=user@host".
    return re.sub(r"^(?:smtp|rfc822)=", "", address)


def is_system(address: str) -> bool:
    """mailer-daemon@ or postmaster@: the mail system itself, never a person."""
    local = address.split("@")[0]
    return bool(_DAEMON.match(local) or _POSTMASTER.match(local))


def _context(text: str, address: str | None) -> str:
    """The notice text about one address: between the addresses around its first mention."""
    if not address:
        return ""
    low = address.lower()
    start = text.lower().find(low)
    if start < 0:
        return ""
    # Some MTAs give the reason before the address ("Unknown user: a@b"), most after it.
    before = [m.end() for m in _ADDRESS.finditer(text, max(0, start - 300), start)
              if m.group(0).lower() != low]
    begin = before[-1] if before else max(0, start - 300)
    rest = text[start : start + 1500]
    nxt = next((m.start() for m in _ADDRESS.finditer(rest) if m.group(0).lower() != low), len(rest))
    return text[begin : start + nxt]


def _text_status(text: str) -> str | None:
    found = _STATUS.search(text)
    if found:
        return found.group(0)
    reply = _REPLY_CODE.search(text)
    return f"{reply.group(1)[0]}.0.0" if reply else None


def _original_message_id(parsed: Parsed) -> str | None:
    """Message-ID of the returned original: enclosed message or headers part, else the text."""
    enclosed = _enclosed_headers(parsed.headers)
    value = enclosed.get("Message-ID") if enclosed is not None else None
    if value is None:
        found = _MESSAGE_ID_LINE.search(parsed.text[:_RETURNED_SCAN])
        value = found.group(1) if found else None
    return str(value).strip().strip("<>").strip() or None if value is not None else None


_RETURNED_SCAN = 200_000  # characters of bounce text searched for the returned message's Message-ID
# [ \t], not \s, before the field name: "^\s*" crossed blank lines, so every line start of a run
# of them rescanned the run (quadratic).
_MESSAGE_ID_LINE = re.compile(r"^[ \t]*+Message-I[dD]:\s*+(\S+)", re.MULTILINE)


def _enclosed_headers(msg: Message) -> Message | None:
    """The header block of the message a report encloses (message/rfc822, text/rfc822-headers)."""
    for part in walk(msg):
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        elif ctype in ("text/rfc822-headers", "text/rfc822-header"):
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                return HeaderParser().parsestr(data.decode("utf-8", "replace"))
    return None


def _complaint(parsed: Parsed, reason: str) -> Report:
    """An RFC 5965 (ARF) feedback report; recipients name the address that complained."""
    fields = _feedback_fields(parsed.headers)
    enclosed = _enclosed_headers(parsed.headers)
    address = fields.get("original-rcpt-to") or fields.get("removal-recipient")
    if not address and enclosed is not None:
        address = str(enclosed.get("To", "") or "")
    bare = _bare(address) if address else None
    if "feedback-type" in fields:
        reason += f"; Feedback-Type: {fields['feedback-type']}"
    recipients = [_complaint_entry(bare)] if bare and "@" in bare else []
    return Report("complaint", [reason], recipients, _original_message_id(parsed))


def _complaint_entry(address: str) -> dict:
    return {"address": address, "status": None, "action": "complained", "permanent": False}


def _feedback_fields(msg: Message) -> dict[str, str]:
    for part in walk(msg):
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return {k.lower(): _unfold(v) for k, v in payload[0].items()}
            return _fields(str(payload).replace("\r", ""))
    return {}


def _is_jmrp(parsed: Parsed) -> bool:
    # Outlook.com's older Junk Mail Reporting Program: not ARF, but a complaint all the same.
    sender = parsed.from_address or ""
    return sender.endswith("@hotmail.com") and bool(_JMRP_SUBJECT.search(parsed.subject))


def _challenge(parsed: Parsed, read_text: bool) -> bool:
    # The text alone is only trusted on mail that already looks like a bounce: people
    # write "confirmation" and "guest list" too.
    sender = f"{parsed.from_address or ''} {parsed.headers.get('Return-Path', '')}"
    if _CHALLENGE.search(sender) or _CHALLENGE.search(parsed.subject):
        return True
    return read_text and bool(_CHALLENGE.search(parsed.text[:5000]))

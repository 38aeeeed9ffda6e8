"""Mail made safe to show: headers and text as plain strings, HTML sanitised by nh3.

Everything here comes from strangers. Templates escape the strings; the HTML is cleaned
with nh3 and then shown only inside a sandboxed iframe whose CSP blocks scripts and
remote images (no tracking pixel fires because the consultant looked at a message).
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field

import nh3

from ..inbound import html_to_text

SHOWN_HEADERS = ("From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
                 "Auto-Submitted", "Precedence", "List-Id", "List-Unsubscribe")
_TAGS = set(nh3.ALLOWED_TAGS) | {"font", "tfoot"}
_ATTRIBUTES = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()}
_ATTRIBUTES["*"] = {"style", "align", "valign", "width", "height", "bgcolor", "color", "dir", "title", "border",
                    "cellpadding", "cellspacing"}
_STYLES = {
    "color", "background-color", "font", "font-family", "font-size", "font-weight", "font-style", "line-height",
    "text-align", "text-decoration", "text-transform", "letter-spacing", "white-space", "vertical-align",
    "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
    "padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
    "border", "border-top", "border-right", "border-bottom", "border-left", "border-color", "border-style",
    "border-width", "border-radius", "border-collapse", "width", "max-width", "min-width", "height", "display",
    "list-style-type",
}


def _attribute(tag: str, name: str, value: str) -> str | None:
    """Links may go to the web or to a mailbox; images only as inline data (no remote fetches)."""
    if tag == "img" and name == "src":
        return value if value.startswith("data:image/") else None
    if name == "href":
        return value if value.lower().startswith(("http://", "https://", "mailto:")) else None
    return value


def sanitise(html: str) -> str:
    """HTML with scripts, handlers, forms, remote images and dangerous URLs removed."""
    return nh3.clean(
        html, tags=_TAGS, attributes=_ATTRIBUTES, attribute_filter=_attribute,
        clean_content_tags={"script", "style", "title", "head", "noscript", "template"},
        url_schemes={"http", "https", "mailto", "data"}, filter_style_properties=_STYLES,
        link_rel="noopener noreferrer nofollow", strip_comments=True,
    )


@dataclass
class MailView:
    """A message's parts, ready for a template."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    text: str = ""
    html: str | None = None
    attachments: list[tuple[str, str, int]] = field(default_factory=list)
    problem: str | None = None


def read(raw: bytes | None) -> MailView:
    """Parse raw bytes for display; a message that cannot be parsed says why instead of failing."""
    if not raw:
        return MailView(problem="The message bytes are not stored (not built yet, or erased).")
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        view = MailView(headers=[(n, str(msg[n])) for n in SHOWN_HEADERS if msg[n] is not None])
        html = _content(msg.get_body(("html",)))
        view.html = sanitise(html) if html else None
        view.text = _content(msg.get_body(("plain",))) or (html_to_text(html) if html else "")
        view.attachments = [_attachment(part) for part in msg.iter_attachments()]
    except Exception as exc:  # malformed mail is normal; show what we can
        return MailView(text=raw.decode("utf-8", "replace")[:200_000],
                        problem=f"This message could not be fully parsed ({exc.__class__.__name__}).")
    return view


def _content(part) -> str:
    if part is None:
        return ""
    try:
        return part.get_content()
    except (LookupError, UnicodeError, KeyError):  # unknown or lying charset
        return (part.get_payload(decode=True) or b"").decode("utf-8", "replace")


def _attachment(part) -> tuple[str, str, int]:
    try:
        name = part.get_filename() or "(no name)"
    except Exception:
        name = "(unreadable name)"
    return name, part.get_content_type(), len(part.get_payload(decode=True) or b"")

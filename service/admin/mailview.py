"""Mail made safe to show: headers and text as plain strings, HTML sanitised by nh3.

Everything here comes from strangers. Templates escape the strings; the HTML is cleaned
with nh3 and then shown only inside a sandboxed iframe whose CSP blocks scripts and
remote images (no tracking pixel fires because the consultant looked at a message).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nh3

from .. import inbound

_RAW_SHOWN = 200_000  # bytes of an unparseable message shown as text
# The HTML cleaner's time grows with the square of the nesting depth (20,000 nested blockquotes took
# a second); real mail has a few hundred tags, a newsletter a few thousand.
_MAX_TAGS = 10_000

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
    """A message for display, read within the same bounds as the classifier (a stranger's mail can
    cost the admin no more than it costs the worker); what could not be read is said, not hidden."""
    if not raw:
        return MailView(problem="The message bytes are not stored (not built yet, or erased).")
    parsed = inbound.parse(raw)
    if parsed.parse_failed:
        return MailView(text=raw[:_RAW_SHOWN].decode("utf-8", "replace"),
                        problem=f"This message could not be parsed ({parsed.defects[0]}); its raw start is shown.")
    html = inbound.html_body(parsed)
    cuts = [d for d in parsed.defects if " cut " in d]
    if html.count("<") > _MAX_TAGS:
        cuts.append(f"its HTML has more than {_MAX_TAGS:,} tags, so it is shown as text")
        html = ""
    return MailView(
        headers=[(n, inbound.header_text(parsed.headers, n)) for n in SHOWN_HEADERS if n in parsed.headers],
        text=parsed.text,
        html=sanitise(html) if html else None,
        attachments=inbound.attachments(parsed),
        problem=f"Only the start of this message is shown: {cuts[0]}." if cuts else None,
    )

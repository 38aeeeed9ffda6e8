"""A campaign's mails as a prospect would get them, rendered from saved or unsaved (form) content.

It goes through mailer.compose, the same code the send job uses, so what the admin sees is
what goes out, down to the unsubscribe footer. Nothing here is stored: the campaign, steps
and ledger row are transient objects that never join the session.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..mailer import RENDER_SECONDS, compose, render_budget
from ..models import Campaign, Contact, Outbound, Step
from . import mailview

# Each mail gets RENDER_SECONDS; the whole sequence this much, so a request ends in bounded time
# (a preview left to run holds the worker, and SQLite's lock, long after the admin has gone).
SEQUENCE_SECONDS = 6.0


@dataclass
class Rendered:
    """One mail of the sequence, or the error that stops it rendering."""

    label: str
    timing: str
    subject: str
    text: str = ""
    html: str = ""
    error: str | None = None


def sample_contact() -> Contact:
    # id 0 names no contact, so the preview's unsubscribe link leads nowhere.
    return Contact(id=0, name="Pat Example", email="pat@example.com", domain="example.com", tags="")


def sequence(entry: dict, contact: Contact, settings: dict) -> list[Rendered]:
    """The magnet and every follow-up of a campaign entry (the YAML shape), for `contact`."""
    magnet = entry.get("magnet") or {}
    campaign = Campaign(
        name=entry.get("name") or "Untitled campaign", slug=entry.get("slug") or "draft",
        magnet_subject=magnet.get("subject") or "", magnet_text=magnet.get("text") or "",
        magnet_html=magnet.get("html") or None, delivery=magnet.get("delivery") or "attach",
    )
    started = time.monotonic()
    mails = [_render(campaign, None, contact, settings, "The magnet", "at once, in reply to the request")]
    for n, raw in enumerate(entry.get("steps") or [], start=1):
        step = Step(position=n, after=raw.get("after") or "?", subject=raw.get("subject") or "",
                    text=raw.get("text") or "", html=raw.get("html") or None)
        timing = f"{step.after} after the previous mail"
        if time.monotonic() - started > SEQUENCE_SECONDS:
            error = f"not rendered: the preview took longer than {SEQUENCE_SECONDS:g} s in all"
            mails.append(Rendered(f"Follow-up {n}", timing, step.subject, error=error))
            continue
        mails.append(_render(campaign, step, contact, settings, f"Follow-up {n}", timing))
    return mails


def _render(
    campaign: Campaign, step: Step | None, contact: Contact, settings: dict, label: str, timing: str
) -> Rendered:
    subject = step.subject if step else campaign.magnet_subject
    row = Outbound(kind="followup" if step else "magnet", to_address=contact.email, subject=subject,
                   message_id=f"preview@{settings['MAIL_DOMAIN']}", references="")
    try:
        with render_budget(RENDER_SECONDS):  # the text and the HTML part share it
            msg = compose(row, contact, campaign, step, settings)
        text = msg.get_body(("plain",)).get_content()
        html = mailview.sanitise(msg.get_body(("html",)).get_content())
    except Exception as exc:  # a template error (syntax, sandbox, undefined, budget): shown, never a 500
        return Rendered(label, timing, subject, error=f"{exc.__class__.__name__}: {exc}")
    return Rendered(label, timing, subject, text=text, html=html)

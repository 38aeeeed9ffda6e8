"""A campaign's mails exactly as they go out, rendered from saved or unsaved (form) content.

Each mail is built the way the send job builds it: threaded and titled as enrollments threads a
real sequence (outbound.thread_subject, References under the mail before), then mailer.compose and
mailer.to_bytes with the campaign's mailbox settings. The subject and headers shown are read back
from those bytes. Nothing here is stored: the campaign, steps, files and ledger rows are transient
objects that never join the session.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.parser import BytesHeaderParser

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage

from .. import campaigns, contacts, enrollments, mailboxes, mailcheck, mailer, outbound, roster
from ..mailer import RENDER_SECONDS, render_budget
from ..models import Asset, Campaign, Contact, Outbound, Step, utcnow
from . import mailview

# Each mail gets RENDER_SECONDS; the whole sequence this much, so a request ends in bounded time
# (a preview left to run holds the worker, and SQLite's lock, long after the admin has gone).
SEQUENCE_SECONDS = 6.0
MATCHES_SHOWN = 5
RECENT_SHOWN = 50  # addresses offered as the contact field's suggestions


@dataclass
class Rendered:
    """One mail of the sequence as sent (subject and headers from its bytes), or the error that stops it."""

    label: str
    timing: str
    subject: str
    text: str = ""
    html: str = ""
    headers: str = ""
    files: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class Pick:
    """Whom the preview writes to: the contact found, else the sample prospect (`matches` when the search
    found several people, or none)."""

    contact: Contact
    asked: str = ""
    found: bool = False
    matches: tuple[Contact, ...] = ()


@dataclass
class Frame:
    """Everything the preview frame shows."""

    mails: list[Rendered]
    pick: Pick
    asked: str  # the request subject the admin typed, which the magnet answers
    thread: str | None  # else the subject the contact's own magnet went out with
    problems: list[str]


def sample_contact() -> Contact:
    # The prospect a test send (a row of no contact) is written for: the preview and the test must agree.
    return mailer.sample_contact(mailcheck.SAMPLE_ADDRESS)


def pick(session: Session, asked: str) -> Pick:
    """The contact with that address, else the one person whose address or name contains the text."""
    asked = asked.strip()
    if not asked:
        return Pick(sample_contact())
    exact = contacts.find(session, asked) if "@" in asked else None
    query = roster.matching(roster.Filters(text=asked)).order_by(Contact.email).limit(MATCHES_SHOWN + 1)
    found = [exact] if exact else list(session.scalars(query))
    if len(found) == 1:
        return Pick(found[0], asked, True)
    return Pick(sample_contact(), asked, False, tuple(found[:MATCHES_SHOWN]))


def recent_addresses(session: Session) -> list[str]:
    """Addresses to suggest in the contact field: the people active most lately."""
    query = select(Contact.email).order_by(Contact.last_activity_at.desc(), Contact.id.desc()).limit(RECENT_SHOWN)
    return list(session.scalars(query))


def thread_of(session: Session, contact: Contact, campaign_id: int | None) -> str | None:
    """The subject the contact's own magnet of this campaign went out with: their follow-ups answer it."""
    if not contact.id or campaign_id is None:
        return None
    enrollment = next((e for e in contact.enrollments if e.campaign_id == campaign_id), None)
    magnet = outbound.last_magnet(session, enrollment.id) if enrollment else None
    return magnet.subject if magnet else None


def frame(session: Session, form, campaign: Campaign | None, settings: dict) -> Frame:
    """The preview of a campaign form (saved files, and files chosen in this POST) for the contact it names."""
    chosen = pick(session, form.preview_contact.data or "")
    asked = (form.preview_subject.data or "").strip()
    thread = None if asked else thread_of(session, chosen.contact, campaign.id if campaign else None)
    sending, problems = _sending(session, form.mailbox.data or mailboxes.DEFAULT, settings)
    files, refused = uploaded(session, form.uploads(), settings["ASSET_MAX_BYTES"])
    saved = list(campaign.assets) if campaign else []
    mails = sequence(form.entry(), chosen.contact, sending, asked, [*saved, *files], thread=thread)
    return Frame(mails, chosen, asked, thread, problems + refused)


def _sending(session: Session, mailbox: str, settings: dict) -> tuple[dict, list[str]]:
    """The settings the send job uses for the campaign's mailbox (its From), else the deployment's, and why."""
    try:
        return mailboxes.settings_for(session, mailbox, settings), []
    except mailboxes.MailboxError as exc:
        return settings, [f"{exc}: shown with the desk's own From"]


def uploaded(session: Session, files: list[FileStorage], limit: int) -> tuple[list[Asset], list[str]]:
    """Files chosen in the form, as transient attachments, checked as saving checks them; and the refusals."""
    holder, refused = Campaign(), []
    for upload in files:
        try:
            campaigns.add_asset(session, holder, upload.filename or "", upload.read(limit + 1), limit)
        except campaigns.CampaignError as exc:
            refused.append(f"Not attached: {exc}.")
    return list(holder.assets), refused


def sequence(
    entry: dict, contact: Contact, settings: dict, asked: str = "", assets: Iterable[Asset] = (),
    start: datetime | None = None, thread: str | None = None,
) -> list[Rendered]:
    """The magnet and every follow-up of a campaign entry (the YAML shape) for `contact`, answering a
    request with the subject `asked` made at `start` (default now); or, given `thread`, the subject a
    magnet already went out with, which the follow-ups keep."""
    campaign = _campaign(entry, assets)
    plan = _plan(campaign, start or utcnow(), settings)
    started = time.monotonic()
    subject = thread if thread is not None else outbound.thread_subject(asked, campaign.magnet_subject)
    previous = _row("magnet", contact, subject, None, settings)
    mails = [_render(campaign, None, previous, contact, settings, "The magnet", _timing(plan.get(0)))]
    for step in campaign.steps:
        row = _row("followup", contact, outbound.thread_subject(previous.subject, step.subject), previous, settings)
        label, timing = f"Follow-up {step.position}", _timing(plan.get(step.position), step.after)
        if time.monotonic() - started > SEQUENCE_SECONDS:
            error = f"not rendered: the preview took longer than {SEQUENCE_SECONDS:g} s in all"
            mails.append(Rendered(label, timing, row.subject, error=error))
        else:
            mails.append(_render(campaign, step, row, contact, settings, label, timing))
        previous = row
    return mails


def _campaign(entry: dict, assets: Iterable[Asset]) -> Campaign:
    magnet, sending = entry.get("magnet") or {}, entry.get("sending") or {}
    steps = [Step(position=n, after=raw.get("after") or "?", subject=raw.get("subject") or "",
                  text=raw.get("text") or "", html=raw.get("html") or None)
             for n, raw in enumerate(entry.get("steps") or [], start=1)]
    campaign = Campaign(
        name=entry.get("name") or "Untitled campaign", slug=entry.get("slug") or "draft",
        magnet_subject=magnet.get("subject") or "", magnet_text=magnet.get("text") or "",
        magnet_html=magnet.get("html") or None, delivery=magnet.get("delivery") or campaigns.ATTACH,
        link_above=_size(magnet.get("link_above")), window=sending.get("window"),
        timezone=sending.get("timezone") or "UTC", steps=steps,
    )
    # Copies: a stored file put on a transient campaign would move to it (and the session would follow).
    campaign.assets = [Asset(id=a.id, filename=a.filename, display_name=a.display_name, content_type=a.content_type,
                             data=a.data, position=n) for n, a in enumerate(assets)]
    return campaign


def _size(text: str | None) -> int | None:
    try:
        return campaigns.parse_size(text) if text else None
    except campaigns.CampaignError:  # the form shows that error; the preview uses the server's default
        return None


def plan(entry: dict, start: datetime, settings: dict) -> dict[int, enrollments.PlannedSend]:
    """When each mail of a campaign entry goes for a request at `start`, by position (0: the magnet);
    empty while a delay or the window does not parse."""
    return _plan(_campaign(entry, ()), start, settings)


def _plan(campaign: Campaign, start: datetime, settings: dict) -> dict[int, enrollments.PlannedSend]:
    try:
        return {p.position: p for p in enrollments.plan_dates(campaign, start, settings["MAGNET_IN_WINDOW"])}
    except campaigns.CampaignError:  # a delay or window the form marks as wrong: no dates, the mails still show
        return {}


def local_time(moment: datetime) -> str:
    """'Mon 7 Dec 2026, 09:00 CST': a moment on the clock it carries."""
    return f"{moment:%a} {moment.day} {moment:%b %Y, %H:%M} {moment.tzname()}"


def _timing(planned: enrollments.PlannedSend | None, after: str | None = None) -> str:
    if after is None:
        when = "at once, in reply to the request"
        if planned is not None and planned.moved:
            when = f"in reply to the request, when the window opens: {local_time(planned.at)}"
        return f"day 0 · {when}"
    if planned is None:
        return f"{after} after the previous mail"
    moved = " (moved into the sending window)" if planned.moved else ""
    return f"day {planned.day} · {after} after the previous mail · {local_time(planned.at)}{moved}"


def _row(kind: str, contact: Contact, subject: str, parent: Outbound | None, settings: dict) -> Outbound:
    """A ledger row threaded as outbound.plan threads one: under the request (a sample id), or under `parent`."""
    above = parent.message_id if parent else mailcheck.SAMPLE_REQUEST_ID
    chain = parent.references.split() if parent else []
    return Outbound(kind=kind, to_address=contact.email, subject=subject,
                    message_id=outbound.new_message_id(settings["MAIL_DOMAIN"]), in_reply_to=above,
                    references=outbound.references([*chain, above]),
                    thread_index=outbound.thread_index(parent.thread_index if parent else None))


def _render(
    campaign: Campaign, step: Step | None, row: Outbound, contact: Contact, settings: dict, label: str, timing: str
) -> Rendered:
    try:
        with render_budget(RENDER_SECONDS):  # the text and the HTML part share it
            msg = mailer.compose(row, contact, campaign, step, settings)
        raw = mailer.to_bytes(msg, settings)
        text = msg.get_body(("plain",)).get_content()
        html = mailview.sanitise(msg.get_body(("html",)).get_content())
    except Exception as exc:  # a template error (syntax, sandbox, undefined, budget): shown, never a 500
        return Rendered(label, timing, row.subject, error=f"{exc.__class__.__name__}: {exc}")
    head = raw.split(b"\r\n\r\n", 1)[0]
    sent = BytesHeaderParser(policy=policy.default).parsebytes(head + b"\r\n\r\n")
    files = [part.get_filename() or "(no name)" for part in msg.iter_attachments()]
    return Rendered(label, timing, str(sent["Subject"]), text, html, head.decode("utf-8", "replace"), files)

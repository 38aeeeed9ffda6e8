"""Campaigns: the YAML format, delays, sending windows and the rules intake matches on."""

from __future__ import annotations

import hashlib
import mimetypes
import re
import tempfile
import unicodedata
import uuid
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import contacts, mailboxes, outbound
from .inbound import CampaignRule
from .models import Asset, Campaign, Outbound, Step

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DELAY = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_WINDOW = re.compile(r"^\s*(\w{3})(?:-(\w{3}))?\s+(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})\s*$")


# Who gets the magnet: mail to the trigger address, or anyone who names it and asks; or the address only.
ADDRESS_OR_ASKED, ADDRESS_ONLY = "address-or-asked", "address-only"
TRIGGER_MODES = (ADDRESS_OR_ASKED, ADDRESS_ONLY)
# How the magnet travels: attached, as a signed download link, or attached up to a size and linked above.
ATTACH, LINK, AUTO = "attach", "link", "auto"
DELIVERIES = (ATTACH, LINK, AUTO)


class CampaignError(ValueError):
    """A campaign file or form is invalid; the message says where and why."""


def parse_delay(text: str) -> timedelta:
    """'3d' → 3 days; s, m, h and d are accepted."""
    match = _DELAY.match(str(text))
    if not match:
        raise CampaignError(f"delay {text!r} must look like 30s, 15m, 4h or 3d")
    return timedelta(seconds=int(match[1]) * _UNITS[match[2]])


def parse_window(text: str) -> tuple[set[int], time, time]:
    """'mon-fri 08:00-18:00' → (weekdays, opens, closes)."""
    match = _WINDOW.match(text.lower())
    if not match or match[1] not in DAYS or (match[2] and match[2] not in DAYS):
        raise CampaignError(f"window {text!r} must look like 'mon-fri 08:00-18:00'")
    first, last = DAYS.index(match[1]), DAYS.index(match[2] or match[1])
    days = {d % 7 for d in range(first, last + 1 if last >= first else last + 8)}
    try:
        opens, closes = time(int(match[3]), int(match[4])), time(int(match[5]), int(match[6]))
    except ValueError as exc:
        raise CampaignError(f"window {text!r}: {exc}") from exc
    if closes <= opens:
        raise CampaignError(f"window {text!r} closes before it opens")
    return days, opens, closes


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CampaignError(f"unknown timezone {name!r}") from exc


def next_open(moment: datetime, window: str | None, timezone: str) -> datetime:
    """The first instant at or after `moment` inside the sending window (aware, UTC in → UTC out)."""
    if not window:
        return moment
    days, opens, closes = parse_window(window)
    tz = zone(timezone)
    local = moment.astimezone(tz)
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        if day.weekday() not in days:
            continue
        start = datetime.combine(day, opens, tz)
        end = datetime.combine(day, closes, tz)
        if local < end:
            return max(local, start).astimezone(moment.tzinfo)
    raise CampaignError(f"window {window!r} never opens")


def attachment_name(asset: Asset) -> str:
    """What the prospect's mail client shows: the asset's display name, else the magnet's name
    ("Execution-Success-Roadmap.pdf"), never the upload's "roadmap.pdf"."""
    return asset.display_name or default_name(asset)


def default_name(asset: Asset) -> str:
    """The name a file goes by when the admin gave it none: the campaign's, with the file's suffix."""
    words = re.findall(r"[^\W_]+", asset.campaign.name) if asset.campaign else []
    suffix = Path(asset.filename).suffix
    return f"{'-'.join(words)}{suffix}" if words else asset.filename


def travels(campaign: Campaign, settings: dict) -> str:
    """How the campaign's files go out: ATTACH or LINK (AUTO decided by their size in all)."""
    if campaign.delivery == LINK:
        return LINK
    if campaign.delivery == AUTO:
        limit = campaign.link_above if campaign.link_above is not None else settings["LINK_ABOVE_MB"] * 1024 * 1024
        if sum(len(a.data) for a in campaign.assets) > limit:
            return LINK
    return ATTACH


def delivery(campaign: Campaign, settings: dict) -> tuple[list[Asset], list[Asset]]:
    """(attached, linked): the campaign's files split by its delivery mode."""
    assets = list(campaign.assets)
    return (assets, []) if travels(campaign, settings) == ATTACH else ([], assets)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
SIZE_MAX = 2**31 - 1  # the column is a 32-bit integer on PostgreSQL


def parse_size(value: int | str, label: str = "size") -> int:
    """5242880, "5MB", "500 KB" → bytes (KB and MB are 1024-based, as LINK_ABOVE_MB is)."""
    match = None if isinstance(value, bool) else _SIZE.match(str(value))
    if not match:
        raise CampaignError(f"{label} {value!r} must look like 500KB or 5MB")
    size = round(float(match[1]) * _SIZE_UNITS[(match[2] or "b").lower()])
    if not 0 < size <= SIZE_MAX:
        raise CampaignError(f"{label} {value!r} must be more than nothing and at most 2 GB")
    return size


def format_size(size: int) -> str:
    """The shortest exact spelling `parse_size` reads back: 5242880 → "5MB"."""
    for unit in ("gb", "mb", "kb"):
        if size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit.upper()}"
    return str(size)


# UAX #9's explicit direction marks: "\u202egpj.exe" shows as "exe.jpg" in a mail client.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_display_name(name: str, where: str) -> None:
    """A name for a file the prospect downloads: a plain file name, never a path or a header trick.
    Any script is welcome (日本語.pdf); control and format characters, bidi marks among them, are not."""
    if len(name) > 255:
        raise CampaignError(f"{where}: the name {name[:40]!r}… is longer than 255 characters")
    if any(c in name for c in "/\\") or name in (".", ".."):
        raise CampaignError(f"{where}: the name {name!r} must be a plain file name, without / or \\")
    check_characters(name, where)


def check_characters(name: str, where: str) -> None:
    """Refuses control and format characters (NUL, CR, bidi marks) in a file's name."""
    odd = next((c for c in name if unicodedata.category(c)[0] == "C"), None)
    if odd is not None:
        kind = "a text-direction mark" if odd in _BIDI else "an invisible control character"
        raise CampaignError(f"{where}: the name {name!r} contains {kind} (U+{ord(odd):04X}), "
                            "which a file name may not")


def upload_name(name: str) -> str:
    """An upload's own file name, without the folders a browser may send ("C:\\Users\\ann\\日本語.pdf"),
    in NFC (macOS sends "ü" as "u" plus a combining mark)."""
    return unicodedata.normalize("NFC", name.replace("\\", "/").rsplit("/", 1)[-1].strip())


def rules(session: Session, mailbox: str | None = None) -> list[CampaignRule]:
    """Active campaigns in the admin's order, as the classifier's matching rules; with `mailbox`, only
    the campaigns that answer from it (a request is matched in the mailbox it arrived in)."""
    query = select(Campaign).where(Campaign.active).order_by(Campaign.priority, Campaign.id)
    if mailbox is not None:
        query = query.where(Campaign.mailbox == mailbox)
    return [rule(c) for c in session.scalars(query)]


def rule(campaign: Campaign) -> CampaignRule:
    """How the classifier recognises a request for this campaign."""
    return CampaignRule(
        campaign.slug, tuple(campaign.trigger_addresses), tuple(campaign.keywords),
        name=campaign.name, mode=campaign.trigger_mode or ADDRESS_OR_ASKED,
    )


def by_slug(session: Session, slug: str) -> Campaign | None:
    return session.scalar(select(Campaign).where(Campaign.slug == slug))


_sandbox = SandboxedEnvironment()


def check_template(label: str, source: str | None) -> None:
    if not source:
        return
    try:
        _sandbox.parse(source)
    except TemplateSyntaxError as exc:
        raise CampaignError(f"{label}: template error on line {exc.lineno}: {exc.message}") from exc


def _require(entry: dict, key: str, where: str):
    if entry.get(key) in (None, ""):
        raise CampaignError(f"{where}: '{key}' is required")
    return entry[key]


def _apply(campaign: Campaign, entry: dict, where: str) -> None:
    triggers = entry.get("triggers") or {}
    magnet = _require(entry, "magnet", where)
    campaign.name = _require(entry, "name", where)
    campaign.active = bool(entry.get("active", True))
    campaign.trigger_addresses = [a.strip().lower() for a in triggers.get("addresses") or []]
    campaign.keywords = [k.strip() for k in triggers.get("keywords") or [] if k.strip()]
    campaign.trigger_mode = str(triggers.get("mode") or ADDRESS_OR_ASKED).strip()
    if campaign.trigger_mode not in TRIGGER_MODES:
        raise CampaignError(f"{where}: triggers mode must be one of {', '.join(TRIGGER_MODES)}")
    campaign.magnet_subject = _require(magnet, "subject", f"{where} magnet")
    campaign.magnet_text = _require(magnet, "text", f"{where} magnet")
    campaign.magnet_html = magnet.get("html")
    campaign.mailbox = str(entry.get("mailbox") or mailboxes.DEFAULT).strip()
    _apply_delivery(campaign, magnet, where)
    sending = entry.get("sending") or {}
    campaign.window = sending.get("window")
    campaign.timezone = sending.get("timezone") or "UTC"
    if campaign.window:
        parse_window(campaign.window)
    zone(campaign.timezone)
    for label in ("subject", "text", "html"):
        check_template(f"{where} magnet {label}", magnet.get(label))


def _apply_delivery(campaign: Campaign, magnet: dict, where: str) -> None:
    asked = magnet.get("delivery")
    campaign.delivery = str(asked or ATTACH).strip().lower()
    if campaign.delivery not in DELIVERIES:
        raise CampaignError(f"{where} magnet: delivery {asked!r} must be one of {', '.join(DELIVERIES)}")
    above = magnet.get("link_above")
    size = parse_size(above, f"{where} magnet: link_above") if above not in (None, "") else None
    # Only "auto" weighs the files; a limit kept under another mode would come back as a surprise.
    campaign.link_above = size if campaign.delivery == AUTO else None


def _attachments(magnet: dict, where: str) -> list[tuple[str, str | None]]:
    """(file, name the prospect sees) per entry: "roadmap.pdf" or {file: roadmap.pdf, name: Roadmap.pdf}."""
    found = []
    for raw in magnet.get("attachments") or []:
        if isinstance(raw, dict):
            name = str(raw["name"]).strip() if raw.get("name") not in (None, "") else None
            file = _require(raw, "file", f"{where} attachment")
        else:
            file, name = raw, None
        check_characters(str(file), f"{where} attachment")
        if name is not None:
            check_display_name(name, f"{where} attachment {file!r}")
        if any(str(file) == seen for seen, _ in found):
            raise CampaignError(f"{where}: attachment {file!r} is listed twice")
        found.append((str(file), name))
    return found


def _steps(entry: dict, where: str) -> list[Step]:
    steps = []
    for n, raw in enumerate(entry.get("steps") or [], start=1):
        label = f"{where} step {n}"
        parse_delay(_require(raw, "after", label))
        for key in ("subject", "text", "html"):
            check_template(f"{label} {key}", raw.get(key))
        steps.append(
            Step(
                position=n,
                after=str(raw["after"]).strip(),
                subject=_require(raw, "subject", label),
                text=_require(raw, "text", label),
                html=raw.get("html"),
            )
        )
    return steps


ASSET_MAX_BYTES = 10 * 1024 * 1024


def _asset(folder: Path, name: str, where: str, max_bytes: int, kept: Asset | None = None) -> Asset:
    """The attachment from the file next to the YAML, else (admin upload) the stored file it names."""
    path = (folder / name).resolve()
    if not path.is_file() and kept is not None:
        return Asset(filename=kept.filename, content_type=kept.content_type, data=kept.data, sha256=kept.sha256)
    if not path.is_file():
        raise CampaignError(f"{where}: attachment {name!r} not found next to the campaign file")
    if path.stat().st_size > max_bytes:
        raise CampaignError(f"{where}: attachment {name!r} is larger than {max_bytes // (1024 * 1024)} MB")
    data = path.read_bytes()
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Asset(filename=path.name, content_type=kind, data=data, sha256=hashlib.sha256(data).hexdigest())


def import_yaml(
    session: Session, text: str, folder: Path, max_bytes: int = ASSET_MAX_BYTES, keep_current: bool = False
) -> list[Campaign]:
    """Create or update the campaigns in a YAML document; attachments are read from `folder`.

    With `keep_current`, an attachment missing from `folder` keeps that campaign's current file.
    """
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise CampaignError(f"not valid YAML: {exc}") from exc
    entries = document.get("campaigns") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise CampaignError("the file must have a top-level 'campaigns:' list")
    return [_import_one(session, entry, folder, max_bytes, keep_current) for entry in entries]


def _import_one(session: Session, entry: dict, folder: Path, max_bytes: int, keep_current: bool) -> Campaign:
    slug = str(_require(entry, "slug", "campaign"))
    where = f"campaign {slug!r}"
    campaign = by_slug(session, slug) or Campaign(slug=slug, priority=_next_priority(session))
    _apply(campaign, entry, where)
    if not mailboxes.exists(session, campaign.mailbox):
        raise CampaignError(f"{where}: mailbox {campaign.mailbox!r} does not exist (import it with `mailboxes import`)")
    steps = _steps(entry, where)
    files = _attachments(entry["magnet"], where)
    kept = {n: _stored(session, campaign, n) for n, _ in files} if keep_current else {}
    assets = [_asset(folder, n, where, max_bytes, kept.get(n)) for n, _ in files]
    for asset, (_, name) in zip(assets, files, strict=True):
        asset.display_name = name
    campaign.steps.clear()
    session.add(campaign)
    session.flush()
    campaign.steps.extend(steps)
    _place_assets(campaign, assets)
    session.flush()
    return campaign


def _place_assets(campaign: Campaign, assets: list[Asset]) -> None:
    """Make `assets` the campaign's files, in order. A file of a name it has already updates that row:
    the row's id is in every download link sent for it, and those links must keep working."""
    own = {a.filename: a for a in campaign.assets}
    placed = []
    for position, new in enumerate(assets):
        asset = own.get(new.filename, new)
        asset.content_type, asset.data, asset.sha256 = new.content_type, new.data, new.sha256
        asset.display_name, asset.position = new.display_name, position
        placed.append(asset)
    campaign.assets[:] = placed


def _stored(session: Session, campaign: Campaign, name: str) -> Asset | None:
    """This campaign's own file of that name, else (a new campaign copied from another) the oldest one."""
    own = next((a for a in campaign.assets if a.filename == name), None)
    return own or session.scalars(select(Asset).where(Asset.filename == name).order_by(Asset.id)).first()


def _next_priority(session: Session) -> int:
    last = session.scalar(select(Campaign.priority).order_by(Campaign.priority.desc()).limit(1))
    return (last or 0) + 1


def export_yaml(session: Session) -> str:
    """All campaigns in the same YAML format `import_yaml` reads."""
    campaigns = session.scalars(select(Campaign).order_by(Campaign.priority, Campaign.id))
    return yaml.safe_dump(
        {"campaigns": [_export_one(c) for c in campaigns]}, sort_keys=False, allow_unicode=True
    )


def _export_one(c: Campaign) -> dict:
    magnet = {"subject": c.magnet_subject, "text": c.magnet_text}
    if c.magnet_html:
        magnet["html"] = c.magnet_html
    if c.delivery and c.delivery != ATTACH:
        magnet["delivery"] = c.delivery
    if c.link_above is not None:
        magnet["link_above"] = format_size(c.link_above)
    magnet["attachments"] = [{"file": a.filename, "name": a.display_name} if a.display_name else a.filename
                             for a in c.assets]
    entry = {
        "slug": c.slug,
        "name": c.name,
        "active": c.active,
        "triggers": {"addresses": list(c.trigger_addresses), "keywords": list(c.keywords),
                     "mode": c.trigger_mode or ADDRESS_OR_ASKED},
        "magnet": magnet,
        "steps": [_export_step(s) for s in c.steps],
    }
    if c.mailbox and c.mailbox != mailboxes.DEFAULT:
        entry["mailbox"] = c.mailbox
    if c.window:
        entry["sending"] = {"window": c.window, "timezone": c.timezone}
    return entry


def _export_step(s: Step) -> dict:
    step = {"after": s.after, "subject": s.subject, "text": s.text}
    if s.html:
        step["html"] = s.html
    return step


# --------------------------------------------------------------------------- the admin's edits

def all_campaigns(session: Session) -> list[Campaign]:
    """Every campaign in priority order (first match wins)."""
    return list(session.scalars(select(Campaign).order_by(Campaign.priority, Campaign.id)))


def by_id(session: Session, campaign_id: int) -> Campaign | None:
    return session.get(Campaign, campaign_id)


def save(session: Session, entry: dict, campaign: Campaign | None = None) -> Campaign:
    """Create or update a campaign from an entry in the YAML shape; its attachments are kept."""
    slug = str(_require(entry, "slug", "campaign"))
    where = f"campaign {slug!r}"
    if campaign is None:
        if by_slug(session, slug):
            raise CampaignError(f"{where}: that slug is taken by another campaign")
        campaign = Campaign(slug=slug, priority=_next_priority(session))
    _apply(campaign, entry, where)
    steps = _steps(entry, where)
    campaign.steps.clear()
    session.add(campaign)
    session.flush()  # old steps go before new ones take their (campaign, position) keys
    campaign.steps.extend(steps)
    session.flush()
    return campaign


SLUG_MAX = 80  # the form's limit
_PROMISES_A_FILE = re.compile(r"\b(attach(?:ed|ment|ments|ing)?|enclosed|pdf)\b", re.IGNORECASE)


def slugify(name: str) -> str:
    """'Execution Success Roadmap!' → 'execution-success-roadmap': ASCII letters and digits, accents dropped."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return "-".join(re.findall(r"[a-z0-9]+", plain))[:SLUG_MAX].strip("-")


def free_slug(session: Session, name: str) -> str:
    """A slug for a new campaign called `name` that no campaign has: its slugify, else with -2, -3, …"""
    base = slugify(name) or "campaign"
    taken = set(session.scalars(select(Campaign.slug).where(Campaign.slug.startswith(base))))
    slug, number = base, 1
    while slug in taken:
        number += 1
        slug = f"{base[:SLUG_MAX - len(str(number)) - 1].rstrip('-')}-{number}"
    return slug


def promised_file(magnet: dict) -> str | None:
    """The word by which the magnet's subject or text promises a file ("attached", "PDF"), if one does."""
    for key in ("subject", "text", "html"):
        found = _PROMISES_A_FILE.search(magnet.get(key) or "")
        if found:
            return found.group(0)
    return None


def save_warnings(entry: dict, has_files: bool) -> list[str]:
    """What an admin confirms before an active campaign is saved: a magnet that promises a file it lacks."""
    word = promised_file(entry.get("magnet") or {}) if entry.get("active") and not has_files else None
    if word is None:
        return []
    return [f"The magnet says \u201c{word}\u201d but the campaign has no file: everyone who asks would get a mail "
            "promising an attachment it does not carry. Attach the file, or save anyway."]


def set_active(campaign: Campaign, active: bool) -> None:
    campaign.active = active


def move_priority(session: Session, campaign: Campaign, offset: int) -> None:
    """Move the campaign up (-1) or down (+1) in the matching order, then renumber 1..n."""
    ordered = all_campaigns(session)
    here = ordered.index(campaign)
    there = max(0, min(len(ordered) - 1, here + offset))
    ordered.insert(there, ordered.pop(here))
    for number, item in enumerate(ordered, start=1):
        item.priority = number


def add_asset(session: Session, campaign: Campaign, filename: str, data: bytes, limit: int) -> Asset:
    """Attach a file to the magnet (replacing one of the same name); refuses empty or oversized files,
    and names that are no plain file name (see check_display_name)."""
    filename = upload_name(filename)
    if not filename:
        raise CampaignError("the file has no usable name")
    check_display_name(filename, "the file")
    if not data:
        raise CampaignError(f"{filename} is empty")
    if len(data) > limit:
        raise CampaignError(f"{filename} is {len(data) / 1e6:.1f} MB; attachments are limited to {limit / 1e6:.0f} MB")
    asset = next((a for a in campaign.assets if a.filename == filename), None)
    if asset is None:
        asset = Asset(filename=filename, position=len(campaign.assets))
        campaign.assets.append(asset)
    # The same row for the same name: download links already sent for it keep working, and bring the new file.
    asset.content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    asset.data, asset.sha256 = data, hashlib.sha256(data).hexdigest()
    return asset


def name_asset(campaign: Campaign, asset_id: int, name: str) -> Asset | None:
    """Set the name the prospect sees on one of the magnet's files (empty: named after the campaign);
    None if the file is not this campaign's."""
    asset = next((a for a in campaign.assets if a.id == asset_id), None)
    if asset is not None:
        name = name.strip()
        check_display_name(name, asset.filename)
        asset.display_name = name or None
    return asset


def remove_asset(campaign: Campaign, asset_id: int) -> Asset | None:
    """Detach an attachment from the magnet; None if it is not this campaign's."""
    asset = next((a for a in campaign.assets if a.id == asset_id), None)
    if asset is not None:
        campaign.assets.remove(asset)
    return asset


def plan_test(session: Session, campaign: Campaign, address: str, position: int | None, domain: str) -> Outbound:
    """A ledger row of kind "test": the saved magnet (or step `position`) to an admin's own address.

    It belongs to no contact and no enrollment, so it never touches anyone's sequence or stats;
    the mailer writes it for a sample prospect and marks the subject "[Test]".
    """
    step = next((s for s in campaign.steps if s.position == position), None)
    if position is not None and step is None:
        raise CampaignError(f"{campaign.name} has no follow-up number {position}")
    # The thread's subject, as enrollments gives it to a request with none of its own: follow-ups say "Re: …".
    subject = outbound.thread_subject("", campaign.magnet_subject)
    row = outbound.plan(
        session, f"test:{campaign.id}:{uuid.uuid4().hex}", "test", contacts.normalise(address), domain,
        outbound.thread_subject(subject, step.subject) if step else subject, campaign_id=campaign.id,
        step_position=position,
    )
    label = f"follow-up {position}" if step else "magnet"
    contacts.record(session, None, "test_planned", f"{campaign.name}: {label} to {row.to_address}", outbound_id=row.id)
    return row


def import_upload(session: Session, text: str, files: dict[str, bytes]) -> list[Campaign]:
    """Import YAML from the admin: attachments come from the upload, else from the campaigns' current files."""
    _plain_attachment_names(text)
    with tempfile.TemporaryDirectory(prefix="ft-campaigns-") as folder:
        here = Path(folder)
        for name, data in files.items():
            plain = Path(name).name
            if plain in ("", ".", "..") or plain.startswith("."):
                raise CampaignError(f"uploaded file {name!r}: give it a plain file name")
            check_characters(plain, "uploaded file")
            (here / plain).write_bytes(data)
        return import_yaml(session, text, here, keep_current=True)


def _plain_attachment_names(text: str) -> None:
    """Uploaded YAML names files only, never paths: '../' would read the server's own files."""
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise CampaignError(f"not valid YAML: {exc}") from exc
    entries = document.get("campaigns") if isinstance(document, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        magnet = entry.get("magnet") if isinstance(entry, dict) else None
        names = magnet.get("attachments") if isinstance(magnet, dict) else None
        for raw in names if isinstance(names, list) else []:
            name = raw.get("file") if isinstance(raw, dict) else raw
            if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
                raise CampaignError(f"attachment {name!r}: give a file name, not a path")

"""Mailboxes: each consultant's own From, IMAP, SMTP, sign-in and pace, as records.

`default` is the mailbox the IMAP_*/SMTP_*/MAIL_FROM settings describe, so a deployment with one
mailbox needs no record at all; a record called `default` replaces those settings. Everything else
sees a mailbox through `settings_for`: the deployment's settings with the mailbox's own laid over
them, so the poller, the mailer and the pace read one plain dict whichever mailbox they serve.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import formataddr, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import case, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import Campaign, Mailbox, MailboxLease

if TYPE_CHECKING:
    from .oauth import AccessToken, Provider

log = logging.getLogger(__name__)

DEFAULT = "default"
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
SECURITY = ("ssl", "starttls", "none")
METHODS = ("password", "xoauth2")
PROVIDERS = ("google", "microsoft", "custom")
SECRET_NAMES = ("password", "client_secret", "refresh_token")
HIDDEN = "***"
_PLAIN = "plain:"  # a development database with no FT_SECRETS_KEY: readable, and said so in the log


class MailboxError(ValueError):
    """A mailbox file or form that cannot be used, in one line naming the mailbox and the field."""


# ---------------------------------------------------------------- secrets at rest


def seal(secrets: dict[str, str], settings: dict) -> str:
    """Secrets as stored: Fernet (AES-128-CBC with HMAC-SHA256) under FT_SECRETS_KEY."""
    if not secrets:
        return ""
    text = json.dumps(secrets, sort_keys=True)
    key = settings.get("FT_SECRETS_KEY")
    if key:
        return _fernet(key).encrypt(text.encode()).decode()
    if settings.get("PRODUCTION"):
        raise MailboxError("FT_SECRETS_KEY is required to store mailbox passwords and tokens in production")
    log.warning("FT_SECRETS_KEY is not set: mailbox secrets are stored unencrypted (development only)")
    return _PLAIN + text


def unseal(sealed: str, settings: dict) -> dict[str, str]:
    if not sealed:
        return {}
    if sealed.startswith(_PLAIN):
        return json.loads(sealed[len(_PLAIN):])
    key = settings.get("FT_SECRETS_KEY")
    if not key:
        raise MailboxError("mailbox secrets are encrypted, and FT_SECRETS_KEY is not set")
    try:
        return json.loads(_fernet(key).decrypt(sealed.encode()))
    except InvalidToken:
        raise MailboxError("mailbox secrets cannot be read with this FT_SECRETS_KEY (was it changed?)") from None


def _fernet(key: str) -> Fernet:
    try:
        return Fernet(key.encode())
    except ValueError:
        raise MailboxError("FT_SECRETS_KEY must be a Fernet key: make one with "
                           "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
                           ) from None


# ---------------------------------------------------------------- the mailbox as settings


def settings_for(session: Session, slug: str, settings: dict) -> dict:
    """The deployment's settings as one mailbox sees them.

    MAIL_DOMAIN stays the deployment's: our Message-IDs are on it whichever mailbox sends, which is how
    replies to any mailbox are known as replies to us.
    """
    record = session.scalar(select(Mailbox).where(Mailbox.slug == slug))
    if record is not None:
        return overlay(record, settings)
    if slug == DEFAULT:
        return {**settings, "MAILBOX": DEFAULT}
    raise MailboxError(f"there is no mailbox {slug!r}: add it under Mailboxes, or with `mailboxes import`")


def overlay(record: Mailbox, settings: dict) -> dict:
    secrets = unseal(record.sealed_secrets, settings)
    address = record.from_address
    password = secrets.get("password")
    return {
        **settings,
        "MAILBOX": record.slug,
        "MAIL_FROM": formataddr((record.from_name, address)) if record.from_name else address,
        "IMAP_HOST": record.imap_host,
        "IMAP_PORT": record.imap_port or (993 if record.imap_security == "ssl" else 143),
        "IMAP_SECURITY": record.imap_security,
        "IMAP_USERNAME": record.imap_username or address,
        "IMAP_PASSWORD": password,
        "IMAP_FOLDER": record.imap_folder or "INBOX",
        "IMAP_SENT_FOLDER": record.imap_sent_folder,
        "IMAP_DONE_FOLDER": record.imap_done_folder,
        "IMAP_CAFILE": record.imap_cafile,
        "SMTP_HOST": record.smtp_host,
        "SMTP_PORT": record.smtp_port or {"ssl": 465, "starttls": 587, "none": 25}[record.smtp_security],
        "SMTP_SECURITY": record.smtp_security,
        # Unset: the IMAP account's (providers want the same login); "" in the file: a relay without AUTH.
        "SMTP_USERNAME": record.smtp_username if record.smtp_username is not None else record.imap_username or address,
        "SMTP_PASSWORD": password,
        "SMTP_CAFILE": record.smtp_cafile,
        "MAIL_AUTH": record.auth_method,
        "OAUTH_PROVIDER": record.provider,
        "OAUTH_TOKEN_URL": record.token_url,
        "OAUTH_CLIENT_ID": record.client_id,
        "OAUTH_CLIENT_SECRET": secrets.get("client_secret"),
        "OAUTH_REFRESH_TOKEN": secrets.get("refresh_token"),
        "MAILBOX_PER_MINUTE": record.per_minute,
        "MAILBOX_PER_DAY": record.per_day,
        "MAILBOX_WARMUP_DAYS": record.warmup_days,
        "MAILBOX_CREATED_AT": record.created_at,
        "MAILBOX_VERSION": record.updated_at.isoformat() if record.updated_at else "",
        # With no servers set, each mailbox has its own local Maildir and outbox (the embedded default);
        # `default` keeps the settings' own, so saving it in the admin moves no mail.
        "MAILDIR": _own_folder(settings["MAILDIR"], record.slug),
        "OUTBOX": _own_folder(settings["OUTBOX"], record.slug),
    }


def _own_folder(folder: str, slug: str) -> str:
    return folder if slug == DEFAULT else str(Path(folder) / slug)


def slugs(session: Session) -> list[str]:
    """Every mailbox: `default` first (a record of that name or the settings), then the records."""
    stored = session.scalars(select(Mailbox.slug).order_by(Mailbox.slug)).all()
    return [DEFAULT, *(s for s in stored if s != DEFAULT)]


def every(session: Session, settings: dict) -> list[dict]:
    return [settings_for(session, slug, settings) for slug in slugs(session)]


def own_addresses(session: Session, settings: dict) -> list[str]:
    """The From address of every mailbox: mail from any of them is ours."""
    addresses = [parseaddr(settings["MAIL_FROM"])[1].lower()]
    addresses += [a.lower() for a in session.scalars(select(Mailbox.from_address))]
    return list(dict.fromkeys(addresses))


def exists(session: Session, slug: str) -> bool:
    return slug == DEFAULT or session.scalar(select(Mailbox.id).where(Mailbox.slug == slug)) is not None


def folder_key(settings: dict, folder: str) -> str:
    """The name a folder's rows and watermark are kept under: one per folder, so INBOX and Sent never
    share UIDs (inbound_message.mailbox, mailbox_state.mailbox)."""
    return f"{state_prefix(settings)}{folder}"


def state_prefix(settings: dict) -> str:
    """What every folder key of this mailbox starts with (the whole key for a Maildir)."""
    if settings.get("IMAP_HOST"):
        return f"imap://{settings['IMAP_USERNAME']}@{settings['IMAP_HOST']}/"
    return f"maildir:{Path(settings['MAILDIR'])}"


# ---------------------------------------------------------------- the mailbox file


@dataclass
class Imported:
    created: list[str]
    updated: list[str]
    unchanged: list[str]


def import_yaml(session: Session, text: str, settings: dict, base: Path | None = None) -> Imported:
    """Create or update the mailboxes in a mailbox file; secrets given as `***` keep their stored value.

    `*_file` secrets are read relative to `base` (the file's folder). Nothing is written unless every
    mailbox in the file is valid.
    """
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise MailboxError(f"the mailbox file is not valid YAML: {exc}") from None
    entries = document.get("mailboxes") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise MailboxError("the mailbox file needs a top-level `mailboxes:` list")
    parsed = [_entry(item, base or Path()) for item in entries]
    seen = [p["slug"] for p in parsed]
    if len(set(seen)) != len(seen):
        twice = sorted({s for s in seen if seen.count(s) > 1})
        raise MailboxError(f"a slug appears twice in the mailbox file: {', '.join(twice)}")
    done = Imported([], [], [])
    for item, fields in zip(entries, parsed, strict=True):
        record = session.scalar(select(Mailbox).where(Mailbox.slug == fields["slug"]))
        if record is None and fields["slug"] == DEFAULT:
            if item == _exported(settings_for(session, DEFAULT, settings)):
                done.unchanged.append(DEFAULT)  # an export read back: the settings still describe it
                continue
            fields = _with_secrets_of_the_settings(fields, settings)
        (done.updated if record else done.created).append(fields["slug"])
        save(session, record or Mailbox(), fields, settings)
    return done


def _with_secrets_of_the_settings(fields: dict, settings: dict) -> dict:
    """A `default` record made from the file: a `***` there means the secret the settings hold."""
    known = {"password": settings.get("IMAP_PASSWORD"), "client_secret": settings.get("OAUTH_CLIENT_SECRET"),
             "refresh_token": settings.get("OAUTH_REFRESH_TOKEN")}
    return {**fields, **{n: known[n] for n in SECRET_NAMES if fields.get(n) == HIDDEN}}


def save(session: Session, record: Mailbox, fields: dict, settings: dict) -> Mailbox:
    """Write validated fields (from the file or the admin's form) to a record; secrets left `***` stay."""
    secrets = unseal(record.sealed_secrets, settings) if record.sealed_secrets else {}
    for name in SECRET_NAMES:
        value = fields.get(name)
        if value and value != HIDDEN:
            secrets[name] = value
        elif value == "":
            secrets.pop(name, None)
    for name, value in fields.items():
        if name not in SECRET_NAMES:
            setattr(record, name, value)
    if record.auth_method == "xoauth2" and not record.token_url and record.provider not in ("google", "microsoft"):
        raise MailboxError(f"mailbox {record.slug}: xoauth2 needs auth.provider google or microsoft, or a token_url")
    record.sealed_secrets = seal(secrets, settings)
    session.add(record)
    session.flush()
    return record


def _entry(item: object, base: Path) -> dict:
    if not isinstance(item, dict):
        raise MailboxError("each mailbox must be a mapping with a slug")
    slug = str(item.get("slug", ""))
    if not SLUG.fullmatch(slug):
        raise MailboxError(f"mailbox slug {slug!r}: use lowercase letters, digits and dashes")
    where = f"mailbox {slug}"
    name, address = parseaddr(str(item.get("from") or ""))
    if "@" not in address:
        raise MailboxError(f"{where}: `from` must be a name and an address, like \"Ken <ken@acumen.example>\"")
    imap, smtp = _section(item, "imap", where), _section(item, "smtp", where)
    auth, pace = _section(item, "auth", where), _section(item, "pace", where)
    method = str(auth.get("method") or "password")
    provider = auth.get("provider")
    _one_of(method, METHODS, f"{where}: auth.method")
    if provider is not None:
        _one_of(str(provider), PROVIDERS, f"{where}: auth.provider")
    fields = {
        "slug": slug, "from_name": name, "from_address": address,
        "imap_host": imap.get("host"), "imap_port": _int(imap.get("port"), f"{where}: imap.port"),
        "imap_security": _one_of(str(imap.get("security") or "ssl"), SECURITY, f"{where}: imap.security"),
        "imap_username": imap.get("username"), "imap_folder": str(imap.get("folder") or "INBOX"),
        "imap_sent_folder": imap.get("sent_folder"), "imap_done_folder": imap.get("done_folder"),
        "imap_cafile": imap.get("cafile"),
        "smtp_host": smtp.get("host"), "smtp_port": _int(smtp.get("port"), f"{where}: smtp.port"),
        "smtp_security": _one_of(str(smtp.get("security") or "starttls"), SECURITY, f"{where}: smtp.security"),
        "smtp_username": smtp.get("username"), "smtp_cafile": smtp.get("cafile"),
        "auth_method": method, "provider": provider,
        "token_url": auth.get("token_url"), "client_id": auth.get("client_id"),
        "per_minute": _int(pace.get("per_minute"), f"{where}: pace.per_minute"),
        "per_day": _int(pace.get("per_day"), f"{where}: pace.per_day"),
        "warmup_days": _int(pace.get("warmup_days"), f"{where}: pace.warmup_days"),
    }
    for secret in SECRET_NAMES:
        fields[secret] = _secret(auth, secret, base, where)
    return fields


def _section(item: dict, name: str, where: str) -> dict:
    value = item.get(name) or {}
    if not isinstance(value, dict):
        raise MailboxError(f"{where}: `{name}` must be a mapping")
    return value


def _secret(auth: dict, name: str, base: Path, where: str) -> str | None:
    """A secret given inline, or as `<name>_file` (Docker and systemd secrets)."""
    path = auth.get(f"{name}_file")
    if path:
        file = Path(path) if Path(path).is_absolute() else base / path
        try:
            return file.read_text().strip()
        except OSError as exc:
            raise MailboxError(f"{where}: auth.{name}_file cannot be read: {exc.strerror} ({file})") from None
    value = auth.get(name)
    return None if value is None else str(value)


def _one_of(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise MailboxError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _int(value: object, what: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise MailboxError(f"{what} must be a whole number, got {value!r}")
    return int(value)


def export_yaml(session: Session, settings: dict) -> str:
    """Every mailbox as a mailbox file, `default` included; secrets shown as `***`."""
    entries = [_exported(s) for s in every(session, settings)]
    return yaml.safe_dump({"mailboxes": entries}, sort_keys=False, allow_unicode=True)


def _exported(s: dict) -> dict:
    auth: dict = {"method": s.get("MAIL_AUTH") or "password"}
    if auth["method"] == "xoauth2":
        auth.update(provider=s.get("OAUTH_PROVIDER"), token_url=s.get("OAUTH_TOKEN_URL"),
                    client_id=s.get("OAUTH_CLIENT_ID"))
    for secret, key in (("password", "IMAP_PASSWORD"), ("client_secret", "OAUTH_CLIENT_SECRET"),
                        ("refresh_token", "OAUTH_REFRESH_TOKEN")):
        if s.get(key):
            auth[secret] = HIDDEN
    entry = {
        "slug": s["MAILBOX"], "from": s["MAIL_FROM"],
        "imap": _present({"host": s.get("IMAP_HOST"), "port": s.get("IMAP_PORT"), "security": s.get("IMAP_SECURITY"),
                          "username": s.get("IMAP_USERNAME"), "folder": s.get("IMAP_FOLDER"),
                          "sent_folder": s.get("IMAP_SENT_FOLDER"), "done_folder": s.get("IMAP_DONE_FOLDER"),
                          "cafile": s.get("IMAP_CAFILE")}),
        "smtp": {**_present({"host": s.get("SMTP_HOST"), "port": s.get("SMTP_PORT"),
                             "security": s.get("SMTP_SECURITY"), "cafile": s.get("SMTP_CAFILE")}),
                 **({"username": s["SMTP_USERNAME"]} if s.get("SMTP_USERNAME") is not None else {})},
        "auth": _present(auth),
    }
    pace = _present({"per_minute": s.get("MAILBOX_PER_MINUTE"), "per_day": s.get("MAILBOX_PER_DAY"),
                     "warmup_days": s.get("MAILBOX_WARMUP_DAYS")})
    if pace:
        entry["pace"] = pace
    return entry


def _present(values: dict) -> dict:
    return {k: v for k, v in values.items() if v not in (None, "")}


# ---------------------------------------------------------------- tokens


def store_token(session: Session, slug: str, token: str, expires_at: datetime, settings: dict,
                refresh_token: str | None = None) -> None:
    """Keep a refreshed access token (and a rotated refresh token) so other processes need not refresh."""
    record = session.scalar(select(Mailbox).where(Mailbox.slug == slug))
    if record is None:  # the settings' default: its refresh token lives in the environment
        if refresh_token:
            log.warning("mailbox default: the provider rotated the refresh token; OAUTH_REFRESH_TOKEN still "
                        "works until it expires, but update it from a stored mailbox (Mailboxes → Connect)")
        return
    record.sealed_access_token = seal({"token": token}, settings)
    record.access_token_expires_at = expires_at.astimezone(UTC)
    if refresh_token:
        secrets = unseal(record.sealed_secrets, settings)
        record.sealed_secrets = seal({**secrets, "refresh_token": refresh_token}, settings)


def cached_token(session: Session, slug: str, settings: dict) -> tuple[str, datetime] | None:
    record = session.scalar(select(Mailbox).where(Mailbox.slug == slug))
    if record is None or not record.sealed_access_token or record.access_token_expires_at is None:
        return None
    return unseal(record.sealed_access_token, settings)["token"], record.access_token_expires_at


# ---------------------------------------------------------------- which poll process serves a mailbox


def hold(session: Session, slug: str, holder: str, seconds: int) -> int | None:
    """Take or renew the mailbox's lease for `holder`; its fencing token if held, None if another holds it.

    One UPDATE decides, so two processes asking at once cannot both win, on PostgreSQL or SQLite; the
    caller commits at once, or the lease means nothing to the others.
    """
    now = datetime.now(UTC)
    if session.get(MailboxLease, slug) is None:
        try:
            with session.begin_nested():
                session.add(MailboxLease(slug=slug, holder="", token=0, expires_at=now))
        except IntegrityError:
            pass  # another process made it first: the UPDATE below decides
    taken = session.execute(
        update(MailboxLease)
        .where(MailboxLease.slug == slug, or_(MailboxLease.holder == holder, MailboxLease.expires_at < now))
        .values(token=case((MailboxLease.holder == holder, MailboxLease.token), else_=MailboxLease.token + 1),
                holder=holder, expires_at=now + timedelta(seconds=seconds))
        .execution_options(synchronize_session=False)
    ).rowcount
    return session.scalar(select(MailboxLease.token).where(MailboxLease.slug == slug)) if taken else None


def let_go(session: Session, slug: str, holder: str) -> None:
    """Give the mailbox up at once (a clean stop), so another process need not wait for the lease to run out."""
    session.execute(update(MailboxLease).where(MailboxLease.slug == slug, MailboxLease.holder == holder)
                    .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
                    .execution_options(synchronize_session=False))


def campaigns_of(session: Session, slug: str) -> list[Campaign]:
    return list(session.scalars(select(Campaign).where(Campaign.mailbox == slug).order_by(Campaign.slug)))


# ---------------------------------------------------------------- the admin's form

FIELDS = ("slug", "from_name", "from_address", "imap_host", "imap_port", "imap_security", "imap_username",
          "imap_folder", "imap_sent_folder", "imap_done_folder", "imap_cafile", "smtp_host", "smtp_port",
          "smtp_security", "smtp_username", "smtp_cafile", "auth_method", "provider", "token_url", "client_id",
          "per_minute", "per_day", "warmup_days")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def entry(item: dict) -> dict:
    """One mailbox in the file's shape (the admin's form), checked by the file's rules and the columns' sizes.

    Secrets come inline only: a form must not name a file on the server for us to read.
    """
    auth = item.get("auth") if isinstance(item.get("auth"), dict) else {}
    if any(str(key).endswith("_file") for key in auth):
        raise MailboxError("secrets from files are for the mailbox file, not the form")
    fields = _entry(item, Path.cwd())
    for name, value in fields.items():
        if isinstance(value, str):
            _fits(fields["slug"], name, value)
    return fields


def _fits(slug: str, name: str, value: str) -> None:
    # A line break in a From or a host would end up in a header or an IMAP command.
    if _CONTROL.search(value):
        raise MailboxError(f"mailbox {slug}: {name} holds a line break or another control character")
    limit = None if name in SECRET_NAMES else Mailbox.__table__.c[name].type.length
    if limit and len(value) > limit:
        raise MailboxError(f"mailbox {slug}: {name} is longer than {limit} characters")


def fields_of(session: Session, slug: str, settings: dict) -> dict:
    """A mailbox as `save` takes it, each stored secret as `***`: what the admin's form starts from."""
    record = session.scalar(select(Mailbox).where(Mailbox.slug == slug))
    if record is not None:
        fields, secrets = {name: getattr(record, name) for name in FIELDS}, unseal(record.sealed_secrets, settings)
    elif slug == DEFAULT:
        fields, secrets = _fields_of_the_settings(settings), _with_secrets_of_the_settings(
            dict.fromkeys(SECRET_NAMES, HIDDEN), settings)
    else:
        raise MailboxError(f"there is no mailbox {slug!r}")
    return {**fields, **{name: HIDDEN if secrets.get(name) else None for name in SECRET_NAMES}}


def _fields_of_the_settings(settings: dict) -> dict:
    name, address = parseaddr(settings["MAIL_FROM"])
    fields = {"slug": DEFAULT, "from_name": name, "from_address": address,
              "auth_method": settings.get("MAIL_AUTH") or "password", "provider": settings.get("OAUTH_PROVIDER"),
              "token_url": settings.get("OAUTH_TOKEN_URL"), "client_id": settings.get("OAUTH_CLIENT_ID"),
              "per_minute": None, "per_day": None, "warmup_days": None,
              # The settings sign in to SMTP only with a username; a record says the same with "".
              "smtp_username": settings.get("SMTP_USERNAME") or ""}
    for name in FIELDS:
        if name.startswith(("imap_", "smtp_")) and name != "smtp_username":
            fields[name] = settings.get(name.upper())
    fields["imap_security"] = fields["imap_security"] or "ssl"
    fields["smtp_security"] = fields["smtp_security"] or "starttls"
    fields["imap_folder"] = fields["imap_folder"] or "INBOX"
    return fields


def put(session: Session, fields: dict, settings: dict, *, new: bool) -> Mailbox:
    """Add (`new`) or change a mailbox from the admin's form (fields as `entry` checked them).

    The first save of `default` makes the record that replaces the settings, so there a secret the
    form left alone is the one the settings hold.
    """
    slug = fields["slug"]
    record = session.scalar(select(Mailbox).where(Mailbox.slug == slug))
    if new and exists(session, slug):
        raise MailboxError(f"there is already a mailbox {slug}: change it with Edit")
    if not new and record is None:
        if slug != DEFAULT:
            raise MailboxError(f"there is no mailbox {slug!r}")
        kept = {name: HIDDEN for name in SECRET_NAMES if fields.get(name) is None}
        fields = _with_secrets_of_the_settings({**fields, **kept}, settings)
    return save(session, record or Mailbox(), fields, settings)


def connect(session: Session, slug: str, provider: Provider, client: tuple[str, str | None], refresh_token: str,
            access: AccessToken, settings: dict) -> Mailbox:
    """Make a mailbox sign in by XOAUTH2 with the refresh token the admin's consent brought back.

    A mailbox with no servers yet gets the provider's; the access token that came with the grant is
    kept, so no process signs in with one left from an earlier account.
    """
    fields = fields_of(session, slug, settings)
    client_id, client_secret = client
    fields.update(auth_method="xoauth2", provider=provider.name, token_url=None, client_id=client_id,
                  client_secret=client_secret or "", refresh_token=refresh_token)
    if not fields["imap_host"]:
        fields.update(imap_host=provider.imap_host, imap_port=provider.imap_port, imap_security="ssl")
    if not fields["smtp_host"]:
        # None: sign in to SMTP as the IMAP account, as both providers want.
        fields.update(smtp_host=provider.smtp_host, smtp_port=provider.smtp_port,
                      smtp_security=provider.smtp_security, smtp_username=None)
    record = put(session, fields, settings, new=False)
    store_token(session, slug, access.token, access.expires_at, settings)
    return record

"""Settings, read from the environment (and a `.env` file) when the app is built.

Nothing here runs at import time: `load(instance_path)` returns a plain dict that
`create_app` puts into `app.config`. Defaults work on a laptop with nothing else
installed; in production (`FT_ENV=production`) a missing secret fails loudly.
"""

from __future__ import annotations

import os
import secrets
from email.utils import parseaddr
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from dotenv import load_dotenv
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError


class ConfigError(click.ClickException, RuntimeError):
    """A setting is missing or malformed.

    A ClickException, so a `flask` command that cannot build the app prints the one line and exits 1
    instead of a traceback.
    """


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_int(name: str, default: int) -> int:
    raw = env_str(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def env_bool(name: str, default: bool) -> bool:
    raw = env_str(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def env_secret(name: str, default: str | None = None) -> str | None:
    """Read NAME, or the contents of the file named by NAME_FILE (Docker/systemd secrets)."""
    path = env_str(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return env_str(name, default)


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env_str(name, default) or default).lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _dev_secret(instance: Path) -> str:
    """A dev-only key, generated once into the instance folder so sessions survive restarts."""
    path = instance / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _mail_domain(mail_from: str) -> str:
    address = parseaddr(mail_from)[1]
    if "@" not in address:
        raise ConfigError(f"MAIL_FROM must contain an address, got {mail_from!r}")
    return address.rsplit("@", 1)[1].lower()


def load(instance_path: str) -> dict:
    """Build the app's settings from the environment."""
    load_dotenv(os.environ.get("FT_DOTENV", ".env"), override=False)
    instance = Path(instance_path)
    instance.mkdir(parents=True, exist_ok=True)
    production = env_str("FT_ENV", "development") == "production"
    secret = env_secret("SECRET_KEY")
    if secret is None and production:
        raise ConfigError("SECRET_KEY (or SECRET_KEY_FILE) is required in production")
    mail_from = env_str("MAIL_FROM", "Follow-Through <roadmap@localhost>")
    base_url = env_str("BASE_URL", "http://127.0.0.1:5000")
    return {
        "PRODUCTION": production,
        "SECRET_KEY": secret or _dev_secret(instance),
        "SQLALCHEMY_DATABASE_URI": env_str(
            "DATABASE_URL", f"sqlite:///{instance / 'followthrough.db'}"
        ),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "REDIS_URL": env_str("REDIS_URL"),
        "EMBEDDED_REDIS_DB": str(instance / "redis.db"),
        "QUEUE_NAME": env_str("QUEUE_NAME", "followthrough"),
        "IMAP_HOST": env_str("IMAP_HOST"),
        "IMAP_PORT": env_int("IMAP_PORT", 0),
        "IMAP_USERNAME": env_str("IMAP_USERNAME"),
        "IMAP_PASSWORD": env_secret("IMAP_PASSWORD"),
        "IMAP_SECURITY": env_choice("IMAP_SECURITY", "ssl", ("ssl", "starttls", "none")),
        "IMAP_FOLDER": env_str("IMAP_FOLDER", "INBOX"),
        "IMAP_CAFILE": env_str("IMAP_CAFILE"),
        "IMAP_SENT_FOLDER": env_str("IMAP_SENT_FOLDER"),
        "IMAP_DONE_KEYWORD": env_str("IMAP_DONE_KEYWORD", "FollowThroughDone"),
        "IMAP_DONE_FOLDER": env_str("IMAP_DONE_FOLDER"),
        "IMAP_BACKLOG_HOURS": env_int("IMAP_BACKLOG_HOURS", 24),
        "IMAP_BATCH": env_int("IMAP_BATCH", 100),
        "IMAP_TIMEOUT": env_int("IMAP_TIMEOUT", 60),
        "IMAP_IDLE_SECONDS": env_int("IMAP_IDLE_SECONDS", 540),
        "IMAP_SENT_POLL_SECONDS": env_int("IMAP_SENT_POLL_SECONDS", 60),
        "IMAP_WATCHDOG_SECONDS": env_int("IMAP_WATCHDOG_SECONDS", 300),
        "MAILDIR": env_str("MAILDIR", str(instance / "maildir")),
        "SMTP_HOST": env_str("SMTP_HOST"),
        "SMTP_PORT": env_int("SMTP_PORT", 0),
        "SMTP_USERNAME": env_str("SMTP_USERNAME"),
        "SMTP_PASSWORD": env_secret("SMTP_PASSWORD"),
        "SMTP_SECURITY": env_choice("SMTP_SECURITY", "starttls", ("ssl", "starttls", "none")),
        "SMTP_TIMEOUT": env_int("SMTP_TIMEOUT", 30),
        "SMTP_CAFILE": env_str("SMTP_CAFILE"),
        # How the default mailbox signs in: a password, or SASL XOAUTH2 with a refresh token (Gmail, Microsoft 365).
        "MAIL_AUTH": env_choice("MAIL_AUTH", "password", ("password", "xoauth2")),
        "OAUTH_PROVIDER": env_str("OAUTH_PROVIDER"),
        "OAUTH_TOKEN_URL": env_str("OAUTH_TOKEN_URL"),
        "OAUTH_CLIENT_ID": env_str("OAUTH_CLIENT_ID"),
        "OAUTH_CLIENT_SECRET": env_secret("OAUTH_CLIENT_SECRET"),
        "OAUTH_REFRESH_TOKEN": env_secret("OAUTH_REFRESH_TOKEN"),
        # The operator's own app registrations, for the admin's "Connect Google" / "Connect Microsoft".
        "GOOGLE_CLIENT_ID": env_str("GOOGLE_CLIENT_ID"),
        "GOOGLE_CLIENT_SECRET": env_secret("GOOGLE_CLIENT_SECRET"),
        "GOOGLE_AUTH_URL": env_str("GOOGLE_AUTH_URL"),
        "GOOGLE_TOKEN_URL": env_str("GOOGLE_TOKEN_URL"),
        "MICROSOFT_CLIENT_ID": env_str("MICROSOFT_CLIENT_ID"),
        "MICROSOFT_CLIENT_SECRET": env_secret("MICROSOFT_CLIENT_SECRET"),
        "MICROSOFT_TENANT": env_str("MICROSOFT_TENANT", "common"),
        "MICROSOFT_AUTH_URL": env_str("MICROSOFT_AUTH_URL"),
        "MICROSOFT_TOKEN_URL": env_str("MICROSOFT_TOKEN_URL"),
        # Encrypts mailbox passwords and tokens at rest (a Fernet key); required for them in production.
        "FT_SECRETS_KEY": env_secret("FT_SECRETS_KEY"),
        # A new mailbox's first day may send this many; its cap is reached after its warmup_days (pace).
        "WARMUP_START_PER_DAY": env_int("WARMUP_START_PER_DAY", 20),
        # A poll process holds each mailbox it serves for this long, renewing it a third of the way through.
        "POLL_LEASE_SECONDS": env_int("POLL_LEASE_SECONDS", 30),
        "OUTBOX": env_str("OUTBOX", str(instance / "outbox")),
        "MAIL_FROM": mail_from,
        "BOUNCE_ADDRESS": env_str("BOUNCE_ADDRESS"),
        "BASE_URL": base_url,
        "CONSULTANT_NAME": env_str("CONSULTANT_NAME", "Ken Thoreson"),
        # The admin's clock for everyone who has not picked their own (an IANA name: America/Chicago).
        "ADMIN_TIMEZONE": env_str("ADMIN_TIMEZONE", "UTC"),
        "CONSULTANT_COMPANY": env_str("CONSULTANT_COMPANY", "Acumen Management Group"),
        "MAGNET_REPEAT_DAYS": env_int("MAGNET_REPEAT_DAYS", 7),
        # Magnets per hour for one sender address, and for one sending or receiving domain; over them a
        # request waits in Review (a flood, or someone aiming us at strangers). 0 turns a cap off.
        "REQUEST_CAP_SENDER_HOUR": env_int("REQUEST_CAP_SENDER_HOUR", 3),
        "REQUEST_CAP_DOMAIN_HOUR": env_int("REQUEST_CAP_DOMAIN_HOUR", 20),
        # Our receiving server's authserv-id (RFC 8601): only its Authentication-Results are believed.
        "AUTHSERV_ID": env_str("AUTHSERV_ID"),
        # A request with no Authentication-Results at all gets the magnet; follow-ups only if this is true.
        "FOLLOW_UP_UNAUTHENTICATED": env_bool("FOLLOW_UP_UNAUTHENTICATED", False),
        "SEND_RETRIES": env_int("SEND_RETRIES", 5),
        "SEND_RETRY_BASE_SECONDS": env_int("SEND_RETRY_BASE_SECONDS", 30),
        "SEND_PER_MINUTE": env_int("SEND_PER_MINUTE", 20),
        "SEND_PER_DAY": env_int("SEND_PER_DAY", 500),
        # The share of SEND_PER_DAY only first-time requesters' magnets may use: follow-ups never take it.
        "FIRST_TIME_SHARE_PERCENT": env_int("FIRST_TIME_SHARE_PERCENT", 20),
        "MAGNET_IN_WINDOW": env_bool("MAGNET_IN_WINDOW", False),
        "STALE_FOLLOWUP_HOURS": env_int("STALE_FOLLOWUP_HOURS", 48),
        "BREAKER_MIN_SENDS": env_int("BREAKER_MIN_SENDS", 20),
        "BREAKER_BOUNCE_PERCENT": env_int("BREAKER_BOUNCE_PERCENT", 5),
        "BREAKER_COMPLAINT_PER_THOUSAND": env_int("BREAKER_COMPLAINT_PER_THOUSAND", 1),
        "DKIM_SELECTOR": env_str("DKIM_SELECTOR"),
        "DKIM_PRIVATE_KEY": env_secret("DKIM_PRIVATE_KEY"),
        "DKIM_DOMAIN": env_str("DKIM_DOMAIN"),
        # RFC 8463: a second signature with an Ed25519 key (base64 of the 32-byte seed), selector its own.
        "DKIM_ED25519_KEY": env_secret("DKIM_ED25519_KEY"),
        "DKIM_ED25519_SELECTOR": env_str("DKIM_ED25519_SELECTOR"),
        "DOWNLOAD_LINK_DAYS": env_int("DOWNLOAD_LINK_DAYS", 30),
        # A campaign with delivery "auto" and no limit of its own links its files above this size.
        "LINK_ABOVE_MB": env_int("LINK_ABOVE_MB", 5),
        "SOFT_BOUNCE_LIMIT": env_int("SOFT_BOUNCE_LIMIT", 5),
        "JOB_TIMEOUT": env_int("JOB_TIMEOUT", 180),
        # CPU seconds one message may take to parse and classify before it is quarantined unread.
        "INBOUND_CPU_SECONDS": env_int("INBOUND_CPU_SECONDS", 10),
        # Larger mail is stored whole but never parsed: it waits, quarantined, for the consultant.
        "MAX_MESSAGE_MB": env_int("MAX_MESSAGE_MB", 25),
        "STUCK_AFTER_SECONDS": env_int("STUCK_AFTER_SECONDS", 0),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "PERMANENT_SESSION_LIFETIME": env_int("SESSION_HOURS", 12) * 3600,
        "MAX_CONTENT_LENGTH": env_int("MAX_UPLOAD_MB", 20) * 1024 * 1024,
        "ASSET_MAX_BYTES": env_int("ASSET_MAX_MB", 10) * 1024 * 1024,
        "TRUSTED_PROXIES": env_int("TRUSTED_PROXIES", 0),
        # /metrics: with a token, scrapers send `Authorization: Bearer <token>`; without one, loopback only.
        "METRICS_TOKEN": env_secret("METRICS_TOKEN"),
        # `json`: one JSON object per log line, for log shippers.
        "LOG_FORMAT": env_choice("LOG_FORMAT", "text", ("text", "json")),
    }


# What hosts hand out (Heroku, Render, Railway: `postgres://`), mapped to the driver this project installs;
# SQLAlchemy would otherwise look for psycopg2, and fail at import with an error that names no setting.
_URL_SCHEMES = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg"}


def database_url(raw: str) -> str:
    """DATABASE_URL as SQLAlchemy can use it, or a ConfigError that names the setting and the reason."""
    scheme, sep, rest = raw.partition("://")
    if sep and scheme.lower() in _URL_SCHEMES:
        raw = f"{_URL_SCHEMES[scheme.lower()]}://{rest}"
    try:
        url = make_url(raw)
        url.get_dialect().import_dbapi()  # a missing driver fails here, in one line, not inside create_app
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"DATABASE_URL is not a database URL SQLAlchemy can read: {exc}") from None
    except (NoSuchModuleError, ImportError) as exc:
        raise ConfigError(f"DATABASE_URL names a database this installation has no driver for "
                          f"({url.drivername}): {exc}; use sqlite:// or postgresql://") from None
    return raw


def finish(settings: dict) -> None:
    """Derive the settings that follow from others, after tests' overrides are applied."""
    settings["SQLALCHEMY_DATABASE_URI"] = database_url(settings["SQLALCHEMY_DATABASE_URI"])
    settings["BASE_URL"] = settings["BASE_URL"].rstrip("/")
    settings["MAILBOX"] = "default"
    _check_zone(settings["ADMIN_TIMEZONE"])
    settings["MAIL_DOMAIN"] = _mail_domain(settings["MAIL_FROM"])
    # Unset ports follow the security mode: IMAPS 993 / IMAP 143, SMTPS 465 / submission 587 / plain 25.
    settings["IMAP_PORT"] = settings["IMAP_PORT"] or (993 if settings["IMAP_SECURITY"] == "ssl" else 143)
    smtp_ports = {"ssl": 465, "starttls": 587, "none": 25}
    settings["SMTP_PORT"] = settings["SMTP_PORT"] or smtp_ports[settings["SMTP_SECURITY"]]
    if settings["SMTP_TIMEOUT"] >= settings["JOB_TIMEOUT"] or settings["IMAP_TIMEOUT"] >= settings["JOB_TIMEOUT"]:
        # RQ kills a job at JOB_TIMEOUT; a socket must give up first so the failure is ours to record.
        raise ConfigError("SMTP_TIMEOUT and IMAP_TIMEOUT must be shorter than JOB_TIMEOUT")
    if not settings.get("STUCK_AFTER_SECONDS"):
        settings["STUCK_AFTER_SECONDS"] = settings["JOB_TIMEOUT"] + 60
    secure = settings["BASE_URL"].startswith("https://")
    settings["SESSION_COOKIE_SECURE"] = secure
    settings["REMEMBER_COOKIE_SECURE"] = secure
    if settings.get("PRODUCTION"):
        _production_guardrails(settings)


def _check_zone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"ADMIN_TIMEZONE must be an IANA timezone like America/Chicago, got {name!r}") from None


def _placeholder_domain(domain: str) -> bool:
    """RFC 2606 and RFC 6761 names: no receiver accepts mail from them, and replies go nowhere."""
    labels = domain.lower().split(".")
    return labels[-1] in ("localhost", "example", "test", "invalid") or (len(labels) >= 2 and labels[-2] == "example")


def _production_guardrails(settings: dict) -> None:
    """Refuse to start on settings that only make sense on a laptop, naming the setting."""
    if not settings["BASE_URL"].startswith("https://"):
        # Unsubscribe links and RFC 8058 one-click POSTs must be https; so must the admin's cookies.
        raise ConfigError(f"BASE_URL must be https in production, got {settings['BASE_URL']!r}")
    if _placeholder_domain(settings["MAIL_DOMAIN"]):
        where = settings["MAIL_FROM"]
        raise ConfigError(f"MAIL_FROM must not be on localhost or example.* in production, got {where!r}")

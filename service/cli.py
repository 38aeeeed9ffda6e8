"""Flask commands: campaigns and mailboxes import/export, mailboxes test, classify, create-admin, set-password,
check-mail, up."""

from __future__ import annotations

import json
import os
import secrets
import sys
from email.utils import parseaddr
from functools import partial
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import click
from dotenv import set_key
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError, ProgrammingError

import config

from . import ROOT, campaigns, connections, mailboxes, mailcheck, queue, users
from .extensions import db
from .inbound import classify as classify_message
from .intake import identity
from .models import Campaign

DEFAULT_CAMPAIGN = ROOT / "service" / "assets" / "execution-roadmap.yaml"


@click.group("campaigns")
def campaigns_group() -> None:
    """Campaigns as YAML."""


@campaigns_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
def campaigns_import(file: Path) -> None:
    """Create or update the campaigns in FILE (attachments are read next to it)."""
    try:
        text, limit = file.read_text(encoding="utf-8"), current_app.config["ASSET_MAX_BYTES"]
        done = campaigns.import_yaml(db.session, text, file.parent, limit)
    except campaigns.CampaignError as exc:
        db.session.rollback()
        raise click.ClickException(f"{file}: {exc}") from exc
    db.session.commit()
    for campaign in done:
        click.echo(f"imported {campaign.slug}: {len(campaign.steps)} follow-ups, {len(campaign.assets)} attachments")


@campaigns_group.command("export")
@click.option("--assets", type=click.Path(file_okay=False, path_type=Path), help="Also write attachments here.")
@with_appcontext
def campaigns_export(assets: Path | None) -> None:
    """Print every campaign as YAML, in the format `campaigns import` reads."""
    click.echo(campaigns.export_yaml(db.session), nl=False)
    if assets:
        assets.mkdir(parents=True, exist_ok=True)
        for campaign in db.session.scalars(select(Campaign)):
            for asset in campaign.assets:
                (assets / asset.filename).write_bytes(asset.data)


@click.group("mailboxes")
def mailboxes_group() -> None:
    """Mailboxes as YAML, and a sign-in test."""


@mailboxes_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
def mailboxes_import(file: Path) -> None:
    """Create or update the mailboxes in FILE (`*_file` secrets are read relative to it)."""
    try:
        done = mailboxes.import_yaml(db.session, file.read_text(encoding="utf-8"), current_app.config, file.parent)
    except mailboxes.MailboxError as exc:
        db.session.rollback()
        raise click.ClickException(f"{file}: {exc}") from exc
    db.session.commit()
    for slug in done.created:
        click.echo(f"created mailbox {slug}")
    for slug in done.updated:
        click.echo(f"updated mailbox {slug}")
    for slug in done.unchanged:
        click.echo(f"mailbox {slug}: unchanged (described by the IMAP_*/SMTP_*/MAIL_FROM settings)")


@mailboxes_group.command("export")
@with_appcontext
def mailboxes_export() -> None:
    """Print every mailbox as YAML, `default` included, secrets as ***."""
    click.echo(mailboxes.export_yaml(db.session, current_app.config), nl=False)


@mailboxes_group.command("test")
@click.argument("slug")
@with_appcontext
def mailboxes_test(slug: str) -> None:
    """Sign in to SLUG's IMAP and SMTP servers and print what they offer; exits 1 on a failure."""
    try:
        settings = mailboxes.settings_for(db.session, slug, current_app.config)
    except mailboxes.MailboxError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.remove()  # no transaction held while the servers answer (SQLite has one writer)
    lines = connections.probe(settings)
    for line in lines:
        click.echo(line)
    if any(" FAIL " in line for line in lines):
        sys.exit(1)


@click.command("classify")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
def classify(files: tuple[Path, ...]) -> None:
    """Print one JSON object per FILE: its classification, with no side effects."""
    try:
        rules = campaigns.rules(db.session)
    except (OperationalError, ProgrammingError) as exc:
        raise click.ClickException("the database has no schema yet: run `flask --app wsgi db upgrade`") from exc
    who = identity(current_app.config)
    for file in files:
        result = classify_message(file.read_bytes(), rules, who)
        click.echo(json.dumps(result.as_json(str(file)), ensure_ascii=False))


def read_password() -> str:
    """A new password: asked twice at a terminal, else stdin's first line (a second one, if given, must match)."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    lines = sys.stdin.read().splitlines()
    password = lines[0] if lines else ""
    if len(lines) > 1 and lines[1] and lines[1] != password:
        raise click.ClickException("the two passwords differ")
    return password


@click.command("create-admin")
@click.argument("email")
@with_appcontext
def create_admin(email: str) -> None:
    """Create an admin user; without a terminal, the password is read from stdin's first line."""
    password = read_password()
    try:
        users.create(db.session, email, password)
    except users.UserError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"created admin {email.strip().lower()}")


@click.command("set-password")
@click.argument("email")
@with_appcontext
def set_password(email: str) -> None:
    """Set an admin's password and sign them out everywhere; stdin as for create-admin."""
    user = users.find(db.session, email)
    if user is None:  # said before a password is typed for nothing
        raise click.ClickException(f"there is no admin {email.strip().lower()}; create one with create-admin")
    try:
        users.set_password(db.session, user, read_password())
    except users.UserError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"set the password of {user.email}; every session signed in before is signed out")


@click.command("check-mail")
@click.option("--to", "to", metavar="ADDRESS", help="Also send every built message to ADDRESS.")
@click.option("--no-dns", is_flag=True, help="Skip the DNS lookups (published DKIM key, SPF, DMARC).")
@with_appcontext
def check_mail(to: str | None, no_dns: bool) -> None:
    """Build each active campaign's magnet and first follow-up and check them strictly; exit 1 on a failure."""
    if to is not None and "@" not in to:
        raise click.BadParameter(f"{to!r} is not an address", param_hint="--to")
    settings = current_app.config
    built = mailcheck.build(db.session, settings, to or mailcheck.SAMPLE_ADDRESS)
    checks = mailcheck.report(built, settings, None if no_dns else mailcheck.txt_records)
    if to:
        checks += mailcheck.send(built, settings, to)
    for check in checks:
        click.echo(check.line())
    click.echo(mailcheck.summary(checks))
    if mailcheck.failed(checks):
        sys.exit(1)


class FirstRunSetting(NamedTuple):
    name: str
    question: str
    effect: str  # what its default means, for the line `up` prints when nobody is there to ask


# What a newcomer should not have to guess: asked at a terminal, else named with the default that stands in.
FIRST_RUN_SETTINGS = (
    FirstRunSetting("MAIL_FROM", "MAIL_FROM: the From of everything sent, a name and an address",
                    "replies come from {}"),
    FirstRunSetting("CONSULTANT_NAME", "CONSULTANT_NAME: the name mail is signed with",
                    "mail is signed with the name {}"),
    FirstRunSetting("BASE_URL", "BASE_URL: where this desk is reached, the base of links in mail",
                    "links in mail and the admin are at {}"),
)
FIRST_ADMIN = "admin@localhost"


def _checked(name: str, value: str) -> str:
    """An answer as config will read it, or BadParameter so click asks again."""
    value = value.strip()
    if name == "MAIL_FROM" and "@" not in parseaddr(value)[1]:
        raise click.BadParameter("give a name and an address, e.g. Ken Thoreson <ken@acumen.example>")
    if name == "BASE_URL":
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise click.BadParameter("give an http:// or https:// address, e.g. https://desk.acumen.example")
        value = value.rstrip("/")
    if not value:
        raise click.BadParameter("it cannot be empty")
    return value


def _remember(dotenv: Path, name: str, value: str) -> None:
    """Write NAME=value into the dotenv file config.py reads, created private: it may hold secrets later."""
    if not dotenv.exists():
        dotenv.touch(mode=0o600)
    set_key(dotenv, name, value)


def _ask(app: Flask, setting: FirstRunSetting, dotenv: Path) -> None:
    value = click.prompt(setting.question, default=app.config[setting.name], value_proc=partial(_checked, setting.name))
    _remember(dotenv, setting.name, value)
    os.environ[setting.name] = value  # for the processes `up` starts
    app.config[setting.name] = value


def settle_settings(app: Flask, interactive: bool) -> None:
    """Ask for the first-run settings that are unset (saving the answers to .env), or say which defaults stand in."""
    dotenv = Path(os.environ.get("FT_DOTENV", ".env"))  # the file config.load reads
    unset = [s for s in FIRST_RUN_SETTINGS if not os.environ.get(s.name)]
    if not interactive:
        for s in unset:
            click.echo(f"{s.name} is not set: {s.effect.format(app.config[s.name])}; set it in {dotenv}")
        return
    for setting in unset:
        _ask(app, setting, dotenv)
    if unset:
        config.finish(app.config)  # MAIL_DOMAIN and the cookie flags follow MAIL_FROM and BASE_URL
        click.echo(f"saved {', '.join(s.name for s in unset)} in {dotenv}")


def first_run(app: Flask) -> str | None:
    """Schema, the default campaign and a first admin, each only when missing; the new admin's password."""
    upgrade(directory=str(ROOT / "service" / "migrations"))
    if db.session.scalar(select(func.count(Campaign.id))) == 0:
        campaigns.import_yaml(db.session, DEFAULT_CAMPAIGN.read_text(), DEFAULT_CAMPAIGN.parent)
        click.echo("loaded the default campaign: Execution Success Roadmap")
    password = None
    if users.count(db.session) == 0:
        password = secrets.token_urlsafe(12)
        users.create(db.session, FIRST_ADMIN, password)
    db.session.commit()
    return password


def sign_in_lines(app: Flask, password: str | None) -> list[str]:
    """What `up` prints last, below everything else, so the password is not lost in the setup's output."""
    url = f"{app.config['BASE_URL']}/admin/"
    bind = os.environ.get("BIND", "127.0.0.1:5000")  # the Procfile's default
    if urlsplit(url).netloc != bind and not bind.startswith(("unix:", "fd:")):
        url += f" (on this machine: http://{bind}/admin/)"
    if password is None:
        return [f"Admin: {url}", "Sign in with your admin account; a forgotten password is reset with "
                                 "`flask --app wsgi set-password EMAIL`."]
    return [f"Admin: {url}", f"Sign in as {FIRST_ADMIN} with the password {password}",
            "(shown only now; change it under Settings, or with `flask --app wsgi set-password "
            f"{FIRST_ADMIN}`)"]


@click.command("up")
@with_appcontext
def up() -> None:
    """Set up on first run, then run web, worker and poller together (the Procfile)."""
    from honcho.manager import Manager

    from . import metrics

    app = current_app._get_current_object()
    settle_settings(app, interactive=sys.stdin.isatty())
    password = first_run(app)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    # Web, worker and poller each write their counters there, and /metrics adds them up.
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(Path(app.instance_path) / "metrics"))
    metrics.clear_folder(env["PROMETHEUS_MULTIPROC_DIR"])
    if not app.config.get("IMAP_HOST"):
        click.echo(f"No IMAP_HOST: drop .eml files into {app.config['MAILDIR']}/new")
    if not app.config.get("SMTP_HOST"):
        click.echo(f"No SMTP_HOST: mail we send is written to {app.config['OUTBOX']}")
    if not app.config.get("REDIS_URL"):
        queue.connect(app.config)  # started here once, so web, worker and poller all find the same server
    embedded = queue.embedded_server(app.config)
    manager = Manager()
    for line in (ROOT / "Procfile").read_text().splitlines():
        if ":" in line and not line.startswith("#"):
            name, command = line.split(":", 1)
            manager.add_process(name.strip(), command.strip(), env=env, cwd=str(ROOT))
    for line in sign_in_lines(app, password):
        click.echo(line)
    manager.loop()
    if embedded is not None:
        embedded.shutdown(nosave=True)
    sys.exit(manager.returncode)


def register(app: Flask) -> None:
    for command in (campaigns_group, mailboxes_group, classify, create_admin, set_password, check_mail, up):
        app.cli.add_command(command)

"""Flask commands: campaigns and mailboxes import/export, mailboxes test, classify, create-admin, check-mail, up."""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError, ProgrammingError

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


@click.command("create-admin")
@click.argument("email")
@with_appcontext
def create_admin(email: str) -> None:
    """Create an admin user; without a terminal, the password is read from stdin's first line."""
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        lines = sys.stdin.read().splitlines()
        password = lines[0] if lines else ""
        if len(lines) > 1 and lines[1] and lines[1] != password:
            raise click.ClickException("the two passwords differ")
    try:
        users.create(db.session, email, password)
    except users.UserError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"created admin {email.strip().lower()}")


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


def first_run(app: Flask) -> None:
    """Schema, the default campaign and a first admin, each only when missing."""
    upgrade(directory=str(ROOT / "service" / "migrations"))
    if db.session.scalar(select(func.count(Campaign.id))) == 0:
        campaigns.import_yaml(db.session, DEFAULT_CAMPAIGN.read_text(), DEFAULT_CAMPAIGN.parent)
        click.echo("loaded the default campaign: Execution Success Roadmap")
    if users.count(db.session) == 0:
        password = secrets.token_urlsafe(12)
        users.create(db.session, "admin@localhost", password)
        click.echo(f"created admin@localhost with password {password} (change it, or create your own)")
    db.session.commit()


@click.command("up")
@with_appcontext
def up() -> None:
    """Set up on first run, then run web, worker and poller together (the Procfile)."""
    from honcho.manager import Manager

    app = current_app._get_current_object()
    first_run(app)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
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
    manager.loop()
    if embedded is not None:
        embedded.shutdown(nosave=True)
    sys.exit(manager.returncode)


def register(app: Flask) -> None:
    for command in (campaigns_group, mailboxes_group, classify, create_admin, check_mail, up):
        app.cli.add_command(command)

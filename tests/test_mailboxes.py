"""Mailboxes as records: the mailbox file, secrets sealed at rest, campaigns answering from their own
mailbox, requests matched in the mailbox they arrived in, and `mailboxes test` against real servers."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from service import ROOT, campaigns, mailboxes
from service.extensions import db
from service.models import InboundMessage, Mailbox, MailboxLease
from tests.conftest import DEFAULT_YAML
from tests.servers import Dovecot, SmtpSink, wait_until
from tests.test_commands import _upgraded, flask
from tests.world import mail, run_poller, run_worker

KEY = Fernet.generate_key().decode()


def _file(dovecot: Dovecot | None = None, smtp: SmtpSink | None = None, password: str = "kenpass") -> str:
    imap = {"host": dovecot.host, "port": dovecot.port, "security": "starttls", "username": "ken",
            "cafile": dovecot.cafile} if dovecot else {"host": "imap.acumen.example", "username": "ken"}
    return yaml.safe_dump({"mailboxes": [
        {"slug": "ken", "from": "Ken Thoreson <ken@acumen.example>", "imap": imap,
         "smtp": {"host": smtp.host, "port": smtp.port, "security": "none", "username": ""} if smtp
         else {"host": "smtp.acumen.example"},
         "auth": {"method": "password", "password": password}, "pace": {"per_minute": 60, "per_day": 120}},
        {"slug": "pat", "from": "Pat Lee <pat@acumen.example>",
         "imap": {"host": "outlook.office365.com"}, "smtp": {"host": "smtp.office365.com"},
         "auth": {"method": "xoauth2", "provider": "microsoft", "client_id": "app-id",
                  "client_secret": "s3cret-client", "refresh_token": "r3fresh-token"}},
    ]})


def _import(app, text: str) -> mailboxes.Imported:
    with app.app_context():
        done = mailboxes.import_yaml(db.session, text, app.config)
        db.session.commit()
        return done


def test_a_mailbox_file_round_trips_with_secrets_hidden_and_kept(make_app):
    app = make_app(FT_SECRETS_KEY=KEY)
    assert _import(app, _file()).created == ["ken", "pat"]
    with app.app_context():
        exported = mailboxes.export_yaml(db.session, app.config)
        assert "kenpass" not in exported and "r3fresh-token" not in exported and "s3cret-client" not in exported
        entries = {e["slug"]: e for e in yaml.safe_load(exported)["mailboxes"]}
        assert list(entries) == ["default", "ken", "pat"]
        assert entries["ken"]["auth"] == {"method": "password", "password": "***"}
        assert entries["pat"]["auth"]["refresh_token"] == "***" and entries["ken"]["pace"]["per_day"] == 120
    again = _import(app, exported)  # *** keeps what is stored; the settings' default stays the settings'
    assert (again.updated, again.unchanged, again.created) == (["ken", "pat"], ["default"], [])
    with app.app_context():
        ken = mailboxes.settings_for(db.session, "ken", app.config)
        pat = mailboxes.settings_for(db.session, "pat", app.config)
        assert (ken["IMAP_PASSWORD"], ken["SMTP_PASSWORD"], ken["MAIL_FROM"]) == (
            "kenpass", "kenpass", "Ken Thoreson <ken@acumen.example>")
        assert (pat["OAUTH_REFRESH_TOKEN"], pat["OAUTH_CLIENT_SECRET"], pat["MAIL_AUTH"]) == (
            "r3fresh-token", "s3cret-client", "xoauth2")
        assert ken["MAIL_DOMAIN"] == app.config["MAIL_DOMAIN"]  # our Message-IDs stay on one domain


def test_secrets_are_sealed_with_ft_secrets_key_and_unreadable_without_it(make_app):
    app = make_app(FT_SECRETS_KEY=KEY)
    _import(app, _file())
    with app.app_context():
        stored = db.session.scalar(select(Mailbox.sealed_secrets).where(Mailbox.slug == "ken"))
        assert "kenpass" not in stored and Fernet(KEY.encode()).decrypt(stored.encode())
        app.config["FT_SECRETS_KEY"] = Fernet.generate_key().decode()
        with pytest.raises(mailboxes.MailboxError, match="cannot be read with this FT_SECRETS_KEY"):
            mailboxes.settings_for(db.session, "ken", app.config)


def test_without_a_key_secrets_are_refused_in_production_and_stored_loudly_in_development(make_app, caplog):
    app = make_app()
    with caplog.at_level(logging.WARNING, logger="service.mailboxes"):
        _import(app, _file())
    assert any("stored unencrypted" in r.getMessage() for r in caplog.records)
    with app.app_context():
        app.config["PRODUCTION"] = True
        with pytest.raises(mailboxes.MailboxError, match="FT_SECRETS_KEY is required"):
            mailboxes.import_yaml(db.session, _file(password="another"), app.config)


@pytest.mark.parametrize(("change", "line"), [
    ({"imap": {"security": "tls"}}, "mailbox ken: imap.security must be one of ssl, starttls, none, got 'tls'"),
    ({"smtp": {"port": "five"}}, "mailbox ken: smtp.port must be a whole number, got 'five'"),
    ({"from": "nobody"}, 'mailbox ken: `from` must be a name and an address'),
    ({"slug": "Ken Thoreson"}, "mailbox slug 'Ken Thoreson': use lowercase letters, digits and dashes"),
    ({"auth": {"method": "xoauth2"}}, "mailbox ken: xoauth2 needs auth.provider google or microsoft, or a token_url"),
    ({"auth": {"password_file": "/nonexistent/secret"}}, "mailbox ken: auth.password_file cannot be read"),
])
def test_a_bad_mailbox_file_says_what_to_fix_and_writes_nothing(make_app, change, line):
    app = make_app()
    document = yaml.safe_load(_file())
    document["mailboxes"][0].update(change)
    with app.app_context(), pytest.raises(mailboxes.MailboxError) as refused:
        mailboxes.import_yaml(db.session, yaml.safe_dump(document), app.config)
        db.session.commit()
    assert str(refused.value).startswith(line)
    with app.app_context():
        db.session.rollback()
        assert db.session.scalar(select(Mailbox.id)) is None


def test_a_secret_can_be_read_from_a_file_beside_the_mailbox_file(make_app, tmp_path):
    (tmp_path / "ken.secret").write_text("from-a-file\n")
    document = yaml.safe_load(_file())
    document["mailboxes"][0]["auth"] = {"method": "password", "password_file": "ken.secret"}
    app = make_app(FT_SECRETS_KEY=KEY)
    with app.app_context():
        mailboxes.import_yaml(db.session, yaml.safe_dump(document), app.config, tmp_path)
        assert mailboxes.settings_for(db.session, "ken", app.config)["IMAP_PASSWORD"] == "from-a-file"


def test_a_campaign_names_a_mailbox_that_exists(make_app):
    app = make_app()
    _import(app, _file())
    slug = "  - slug: execution-roadmap"
    source = DEFAULT_YAML.read_text().replace(slug, f"{slug}\n    mailbox: ken")
    with app.app_context():
        [campaign] = campaigns.import_yaml(db.session, source, DEFAULT_YAML.parent)
        assert campaign.mailbox == "ken"
        assert "mailbox: ken" in campaigns.export_yaml(db.session)
        with pytest.raises(campaigns.CampaignError, match="mailbox 'nobody' does not exist"):
            campaigns.import_yaml(db.session, source.replace("mailbox: ken", "mailbox: nobody"), DEFAULT_YAML.parent)


# --------------------------------------------------------------------------- two mailboxes, end to end


@pytest.fixture(scope="module")
def two_accounts():
    server = Dovecot(users={"consultant": "secret", "ken": "kenpass"}).start()
    yield server
    server.cleanup()


@pytest.fixture
def ken_sink():
    server = SmtpSink().start()
    yield server
    server.stop()


def _inbox_emptied(server: Dovecot, user: str) -> None:
    with server.client(user) as client:
        client.select_folder("INBOX")
        if uids := client.search(["ALL"]):
            client.delete_messages(uids)
            client.expunge()


@pytest.fixture
def agency(make_app, settings, two_accounts, ken_sink):
    """The default mailbox (consultant) answering for the roadmap, and Ken's answering for a playbook."""
    for user in ("consultant", "ken"):
        _inbox_emptied(two_accounts, user)
    app = make_app(IMAP_HOST=two_accounts.host, IMAP_PORT=two_accounts.port, IMAP_SECURITY="starttls",
                   IMAP_USERNAME="consultant", IMAP_PASSWORD="secret", IMAP_CAFILE=two_accounts.cafile,
                   FT_SECRETS_KEY=KEY)
    ken_only = yaml.safe_load(_file(two_accounts, ken_sink))
    ken_only["mailboxes"] = ken_only["mailboxes"][:1]
    _import(app, yaml.safe_dump(ken_only))
    playbook = (DEFAULT_YAML.read_text()
                .replace("  - slug: execution-roadmap", "  - slug: bars-playbook\n    mailbox: ken")
                .replace("[roadmap@acumen.example]", "[ken@acumen.example]"))
    with app.app_context():
        campaigns.import_yaml(db.session, DEFAULT_YAML.read_text(), DEFAULT_YAML.parent)
        campaigns.import_yaml(db.session, playbook, DEFAULT_YAML.parent)
        db.session.commit()
    return app


def test_each_mailbox_answers_its_own_requests_from_its_own_from_and_smtp(agency, two_accounts, sink, ken_sink):
    two_accounts.append(mail(sender="ann@prospect.example"), user="consultant")
    two_accounts.append(mail(sender="bob@prospect.example", to="ken@acumen.example"), user="ken")
    run_poller(agency)
    run_worker(agency)
    [to_ann] = sink.wait_for(1)
    [to_bob] = ken_sink.wait_for(1)
    assert to_ann.rcpt_tos == ["ann@prospect.example"] and to_bob.rcpt_tos == ["bob@prospect.example"]
    assert b"\r\nFrom: Ken Thoreson <ken@acumen.example>\r\n" in b"\r\n" + to_bob.data
    assert b"\r\nFrom: Ken Thoreson <roadmap@acumen.example>\r\n" in b"\r\n" + to_ann.data
    with agency.app_context():
        arrived = dict(db.session.execute(select(InboundMessage.from_address, InboundMessage.mailbox_slug)).all())
        assert arrived == {"ann@prospect.example": "default", "bob@prospect.example": "ken"}
        by_campaign = dict(db.session.execute(select(InboundMessage.from_address, InboundMessage.campaign_slug)).all())
        assert by_campaign == {"ann@prospect.example": "execution-roadmap", "bob@prospect.example": "bars-playbook"}


def test_a_request_is_matched_only_against_the_campaigns_of_its_mailbox(agency, two_accounts, sink, ken_sink):
    # Ken's campaign listens on ken@; the same words to the default mailbox's trigger address match its own.
    two_accounts.append(mail(sender="cy@prospect.example", to="ken@acumen.example"), user="consultant")
    run_poller(agency)
    run_worker(agency)
    with agency.app_context():
        message = db.session.scalar(select(InboundMessage))
        assert message.mailbox_slug == "default" and message.campaign_slug != "bars-playbook"
    assert ken_sink.messages == []


def test_our_own_mail_from_another_mailbox_is_a_loop(agency, two_accounts, sink, ken_sink):
    two_accounts.append(mail(sender="Ken Thoreson <ken@acumen.example>", to="roadmap@acumen.example"),
                        user="consultant")
    run_poller(agency)
    run_worker(agency)
    with agency.app_context():
        assert db.session.scalar(select(InboundMessage.kind)) == "loop"
    assert sink.messages == [] and ken_sink.messages == []


def test_one_broken_mailbox_does_not_stop_the_others(agency, two_accounts, sink):
    with agency.app_context():
        record = db.session.scalar(select(Mailbox).where(Mailbox.slug == "ken"))
        record.imap_port = 1  # nothing listens there
        db.session.commit()
    two_accounts.append(mail(sender="ann@prospect.example"), user="consultant")
    with pytest.raises(OSError):
        run_poller(agency)  # --once reports the failure, after polling the healthy mailbox
    run_worker(agency)
    assert sink.wait_for(1)[0].rcpt_tos == ["ann@prospect.example"]


def test_a_mailbox_whose_secrets_cannot_be_read_does_not_stop_the_others(agency, two_accounts, sink, caplog):
    agency.config["FT_SECRETS_KEY"] = Fernet.generate_key().decode()  # the key was changed under the records
    two_accounts.append(mail(sender="ann@prospect.example"), user="consultant")
    with caplog.at_level(logging.ERROR, logger="workers.poller"), pytest.raises(mailboxes.MailboxError):
        run_poller(agency)
    assert any("mailbox ken was not polled" in r.getMessage() and "FT_SECRETS_KEY" in r.getMessage()
               for r in caplog.records)
    run_worker(agency)
    assert sink.wait_for(1)[0].rcpt_tos == ["ann@prospect.example"]


# --------------------------------------------------------------------------- the commands


def test_mailboxes_import_export_and_test_from_the_command_line(cli_env, tmp_path, two_accounts, ken_sink):
    env = {**_upgraded(cli_env), "FT_SECRETS_KEY": KEY}
    (tmp_path / "boxes.yaml").write_text(_file(two_accounts, ken_sink))
    imported = flask(["mailboxes", "import", str(tmp_path / "boxes.yaml")], env)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.splitlines() == ["created mailbox ken", "created mailbox pat"]
    exported = flask(["mailboxes", "export"], env)
    assert "kenpass" not in exported.stdout and "password: '***'" in exported.stdout
    tested = flask(["mailboxes", "test", "ken"], env)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert any(line.startswith("IMAP  OK") and "as ken (password)" in line for line in tested.stdout.splitlines())
    assert "IMAP  IDLE yes, MOVE yes, SPECIAL-USE no" in tested.stdout and "SMTP  OK" in tested.stdout
    (tmp_path / "wrong.yaml").write_text(_file(two_accounts, ken_sink, password="wrong"))
    flask(["mailboxes", "import", str(tmp_path / "wrong.yaml")], env)
    refused = flask(["mailboxes", "test", "ken"], env)
    assert refused.returncode == 1
    [line] = [x for x in refused.stdout.splitlines() if x.startswith("IMAP  FAIL")]
    assert "the server refused the sign-in" in line and "check the username and password" in line
    unknown = flask(["mailboxes", "test", "nobody"], env)
    assert unknown.returncode == 1 and "there is no mailbox 'nobody'" in unknown.stderr


def test_certificates_are_verified_unless_a_private_ca_is_named(imap_settings, make_app, dovecot):
    from service import connections

    app = make_app(IMAP_CAFILE=None)
    with app.app_context():
        lines = connections.probe(mailboxes.settings_for(db.session, "default", app.config))
    [line] = [x for x in lines if x.startswith("IMAP")]
    assert line.startswith("IMAP  FAIL") and "the certificate is not trusted" in line and "set IMAP_CAFILE" in line


# --------------------------------------------------------------------------- one poller per mailbox


def _pollers_env(agency, two_accounts: Dovecot, tmp_path) -> dict:
    skip = ("IMAP_", "SMTP_", "DATABASE_URL", "MAIL_FROM", "QUEUE_NAME", "REDIS_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    config = agency.config
    env.update(
        FT_INSTANCE=str(tmp_path / "instance"), FT_DOTENV="/nonexistent", FT_SECRETS_KEY=KEY,
        DATABASE_URL=config["SQLALCHEMY_DATABASE_URI"], REDIS_URL=config["REDIS_URL"], QUEUE_NAME=config["QUEUE_NAME"],
        MAIL_FROM=config["MAIL_FROM"], IMAP_HOST=two_accounts.host, IMAP_PORT=str(two_accounts.port),
        IMAP_SECURITY="starttls", IMAP_USERNAME="consultant", IMAP_PASSWORD="secret",
        IMAP_CAFILE=two_accounts.cafile, POLL_LEASE_SECONDS="6", IMAP_IDLE_SECONDS="30",
    )
    return env


def _stored(app, count: int, limit: float = 90) -> bool:
    def enough() -> bool:
        with app.app_context():
            try:
                return db.session.scalar(select(func.count()).select_from(InboundMessage)) >= count
            finally:
                db.session.remove()
    return wait_until(enough, limit)


def _work_until(app, done, limit: float = 60) -> None:
    """Run the worker until `done`: a poller queues a message just after the commit that stored it."""
    assert wait_until(lambda: run_worker(app) or done(), limit)


def _holders(app) -> dict[str, str]:
    with app.app_context():
        try:
            return dict(db.session.execute(select(MailboxLease.slug, MailboxLease.holder)).all())
        finally:
            db.session.remove()


def test_two_poll_processes_share_the_mailboxes_and_one_takes_over_when_the_other_dies(
    agency, two_accounts, sink, ken_sink, tmp_path
):
    env = _pollers_env(agency, two_accounts, tmp_path)
    logs = [open(tmp_path / f"poll-{n}.log", "wb") for n in range(2)]  # noqa: SIM115 - closed below
    pollers = [subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "poll"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT) for log in logs]
    try:
        assert wait_until(lambda: set(_holders(agency)) == {"default", "ken"}, 60), _holders(agency)
        for n in range(5):
            two_accounts.append(mail(sender=f"a{n}@prospect.example"), user="consultant")
            two_accounts.append(mail(sender=f"k{n}@prospect.example", to="ken@acumen.example"), user="ken")
        assert _stored(agency, 10)
        _work_until(agency, lambda: len(sink.messages) >= 5 and len(ken_sink.messages) >= 5)
        for server, letter in ((sink, "a"), (ken_sink, "k")):
            got = sorted(r for m in server.wait_for(5) for r in m.rcpt_tos)
            assert got == [f"{letter}{n}@prospect.example" for n in range(5)]

        holder = _holders(agency)["ken"]
        victim = next(p for p in pollers if f":{p.pid}:" in holder)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        two_accounts.append(mail(sender="late@prospect.example", to="ken@acumen.example"), user="ken")
        survivor = next(p for p in pollers if p is not victim)
        # Taken over within the lease (6 s here, 30 s by default) and one renewal: well inside 60 s.
        assert wait_until(lambda: f":{survivor.pid}:" in _holders(agency)["ken"], 60), _holders(agency)
        assert _stored(agency, 11)
        _work_until(agency, lambda: len(ken_sink.messages) >= 6)
        assert "late@prospect.example" in [r for m in ken_sink.wait_for(6) for r in m.rcpt_tos]
        time.sleep(0.5)
        assert len(sink.messages) == 5 and len(ken_sink.messages) == 6  # each answered once
    finally:
        for process in pollers:
            if process.poll() is None:
                process.terminate()
                process.wait(30)
        for log in logs:
            log.close()


def test_the_poller_rides_out_a_database_that_is_away_while_it_renews(make_app, monkeypatch, caplog):
    import threading

    from sqlalchemy.exc import OperationalError

    from workers import poller

    app = make_app(POLL_LEASE_SECONDS=3)
    hold, calls = mailboxes.hold, []

    def away_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("UPDATE mailbox_lease", {}, Exception("the database is restarting"))
        return hold(*args, **kwargs)

    monkeypatch.setattr(mailboxes, "hold", away_once)
    stopping = threading.Event()
    thread = threading.Thread(target=poller.run, args=(app,), kwargs={"stopping": stopping})
    with caplog.at_level(logging.ERROR, logger="workers.poller"):
        thread.start()
        try:
            assert wait_until(lambda: "default" in _holders(app), 30)
        finally:
            stopping.set()
            thread.join(30)
    assert any("cannot renew the mailbox leases" in r.getMessage() for r in caplog.records)
    assert not thread.is_alive()

"""The named world and the real servers every test runs against.

TEST_DATABASE=sqlite (default) or postgresql picks the database; `.ci/run` runs
the suite on both. Servers are started once per session; each test gets empty
tables, an empty Redis, an empty SMTP sink and an empty INBOX.
"""

from __future__ import annotations

import base64
import os
import subprocess

import pytest
from flask_migrate import upgrade

from service import ROOT, create_app
from service.extensions import db
from tests.oauth_standin import OAuthStandin
from tests.servers import Dovecot, RedisServer, SmtpSink, postgres_available, postgres_database

DEFAULT_YAML = ROOT / "service" / "assets" / "execution-roadmap.yaml"
PDF = (ROOT / "service" / "assets" / "roadmap.pdf").read_bytes()
SHARED = ROOT.parent / "shared"
OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET = "ft-client", "ft-secret"  # the operator's app at the stand-in


def pytest_report_header(config) -> str:
    return f"database: {os.environ.get('TEST_DATABASE', 'sqlite')}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    if os.environ.get("TEST_DATABASE", "sqlite") == "postgresql":
        if not postgres_available():
            pytest.fail("TEST_DATABASE=postgresql but PostgreSQL is not reachable on 127.0.0.1:5432")
        with postgres_database("followthrough_test") as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def dovecot():
    server = Dovecot().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def sink():
    server = SmtpSink().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def oauth_standin():
    """The local stand-in for Google's and Microsoft's token, authorize and introspection endpoints."""
    server = OAuthStandin(OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def standin(oauth_standin):
    """The stand-in with its knobs back at their defaults."""
    oauth_standin.lifetime, oauth_standin.rotate, oauth_standin.outage = 3600, False, None
    oauth_standin.consenting_user = "consultant"
    return oauth_standin


@pytest.fixture(scope="session")
def oauth_dovecot(oauth_standin):
    """Dovecot taking XOAUTH2, each token checked at the stand-in (as Gmail checks Google's)."""
    server = Dovecot({"consultant": "secret", "other": "pw2"}, oauth2_introspection_url=oauth_standin.introspection_url)
    yield server.start()
    server.cleanup()


@pytest.fixture(scope="session")
def oauth_sink(oauth_standin):
    """An SMTP sink that asks the stand-in, as Gmail asks Google: is this token live, and whose is it?"""
    server = SmtpSink(xoauth2_check=lambda user, token: oauth_standin.user_for(token) == user).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _schema(database_url, tmp_path_factory):
    app = create_app({"INSTANCE_PATH": str(tmp_path_factory.mktemp("schema")), "SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        upgrade(directory=str(ROOT / "service" / "migrations"))
        db.engine.dispose()
    return database_url


def _empty_tables() -> None:
    for table in reversed(db.metadata.sorted_tables):
        db.session.execute(table.delete())
    db.session.commit()


@pytest.fixture
def settings(_schema, redis_server, sink, tmp_path):
    """Settings for an app on the test servers; tests may change them before `app` is built."""
    redis_server.flushall()
    sink.clear()
    sink.hang = False
    return {
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "SQLALCHEMY_DATABASE_URI": _schema,
        "REDIS_URL": redis_server.url,
        "QUEUE_NAME": "test",
        "SMTP_HOST": sink.host,
        "SMTP_PORT": sink.port,
        "SMTP_SECURITY": "none",
        "SMTP_TIMEOUT": 5,
        "MAIL_FROM": "Ken Thoreson <roadmap@acumen.example>",
        "BASE_URL": "https://desk.acumen.example",
        "SECRET_KEY": "test-secret",
        "SEND_PER_MINUTE": 1000,
        "IMAP_HOST": None,
        "WTF_CSRF_ENABLED": True,
        "TESTING": True,
    }


@pytest.fixture(scope="session")
def dkim_key(tmp_path_factory) -> tuple[str, bytes]:
    """A fresh RSA key, and the TXT record openssl says publishes it."""
    folder = tmp_path_factory.mktemp("dkim")
    subprocess.run(["openssl", "genrsa", "-out", folder / "key.pem", "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", folder / "key.pem", "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    return (folder / "key.pem").read_text(), b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


@pytest.fixture
def cli_env(tmp_path, redis_server):
    """The environment for a `flask --app wsgi` command in its own process, on a fresh SQLite file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAP_", "SMTP_", "DATABASE_URL"))}
    env.update(FT_INSTANCE=str(tmp_path / "instance"), REDIS_URL=redis_server.url, FT_DOTENV="/nonexistent")
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    return env


@pytest.fixture
def make_app(settings):
    """Build apps on empty tables, after a test has changed `settings`."""
    built = []

    def build(**overrides):
        application = create_app({**settings, **overrides})
        with application.app_context():
            _empty_tables()
        built.append(application)
        return application

    yield build
    for application in built:
        with application.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def imap_settings(settings, dovecot):
    """Point the app at the test Dovecot, with an empty INBOX."""
    _empty_inbox(dovecot)
    settings.update(
        IMAP_HOST=dovecot.host, IMAP_PORT=dovecot.port, IMAP_SECURITY="starttls",
        IMAP_USERNAME=dovecot.user, IMAP_PASSWORD=dovecot.password, IMAP_CAFILE=dovecot.cafile,
        IMAP_FOLDER="INBOX",
    )
    return settings


def _empty_inbox(dovecot: Dovecot) -> None:
    with dovecot.client() as client:
        client.select_folder("INBOX")
        uids = client.search(["ALL"])
        if uids:
            client.delete_messages(uids)
            client.expunge()


def _load(app, yaml_text: str) -> None:
    from service import campaigns

    with app.app_context():
        campaigns.import_yaml(db.session, yaml_text, DEFAULT_YAML.parent)
        db.session.commit()


@pytest.fixture
def world(app):
    """alice (admin), bob (a prospect), carol (suppressed) and the roadmap campaign, with fast steps."""
    from service import contacts, users

    fast = DEFAULT_YAML.read_text().replace("after: 3d", "after: 2s").replace("after: 7d", "after: 1h")
    # No sending window: a test that sends follow-ups must pass at any hour; tests about windows set their own.
    fast = fast.replace('window: "mon-fri 08:00-18:00"', "window: null")
    _load(app, fast)
    with app.app_context():
        users.create(db.session, "alice@acumen.example", "correct horse battery")
        contacts.suppress(db.session, "carol@prospect.example", "unsubscribed", "test world")
        db.session.commit()
    return app

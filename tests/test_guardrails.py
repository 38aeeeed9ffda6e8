"""Production guardrails: FT_ENV=production refuses laptop settings in one line that names the setting."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from config import ConfigError
from service import create_app
from service.extensions import db
from tests.servers import postgres_available
from tests.test_commands import flask


@pytest.mark.parametrize(("overrides", "line"), [
    ({"BASE_URL": "http://desk.acumen.example"},
     "BASE_URL must be https in production, got 'http://desk.acumen.example'"),
    ({"MAIL_FROM": "Follow-Through <roadmap@localhost>"},
     "MAIL_FROM must not be on localhost or example.* in production, got 'Follow-Through <roadmap@localhost>'"),
    ({"MAIL_FROM": "Ken <ken@example.com>"},
     "MAIL_FROM must not be on localhost or example.* in production, got 'Ken <ken@example.com>'"),
    ({"MAIL_FROM": "Ken <ken@mail.example.org>"},
     "MAIL_FROM must not be on localhost or example.* in production, got 'Ken <ken@mail.example.org>'"),
    ({"MAIL_FROM": "Ken <roadmap@acumen.example>"},
     "MAIL_FROM must not be on localhost or example.* in production, got 'Ken <roadmap@acumen.example>'"),
])
def test_it_refuses_to_start_in_production_naming_the_setting(settings, overrides, line):
    with pytest.raises(ConfigError) as refused:
        create_app({**settings, "PRODUCTION": True, **overrides})
    assert str(refused.value) == line


def test_it_starts_in_production_on_real_settings(make_app):
    app = make_app(PRODUCTION=True, MAIL_FROM="Ken Thoreson <roadmap@acumen-group.com>")
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_a_laptop_may_use_http_and_localhost(make_app):
    app = make_app(BASE_URL="http://127.0.0.1:5000", MAIL_FROM="Follow-Through <roadmap@localhost>")
    assert app.config["MAIL_DOMAIN"] == "localhost"


def _production_env(tmp_path, **values: str) -> dict:
    skip = ("IMAP_", "SMTP_", "DATABASE_URL", "DKIM_", "MAIL_FROM", "BASE_URL", "SECRET_KEY")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update(
        FT_ENV="production", FT_INSTANCE=str(tmp_path / "instance"), FT_DOTENV="/nonexistent",
        DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}", SECRET_KEY="production-secret",
        MAIL_FROM="Ken Thoreson <roadmap@acumen-group.com>", BASE_URL="https://desk.acumen-group.com",
    )
    return {**env, **values}


def test_a_command_in_production_with_an_http_base_url_says_one_line_and_exits_1(tmp_path):
    result = flask(["check-mail", "--no-dns"], _production_env(tmp_path, BASE_URL="http://desk.acumen-group.com"))
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: BASE_URL must be https in production, got 'http://desk.acumen-group.com'"
    assert result.stdout == ""


def test_check_mail_in_production_fails_without_dkim(tmp_path):
    env = _production_env(tmp_path)
    assert flask(["db", "upgrade"], env).returncode == 0
    result = flask(["check-mail", "--no-dns"], env)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == (
        "FAIL  DKIM configured: DKIM is not configured (DKIM_SELECTOR and DKIM_PRIVATE_KEY): receivers cannot "
        "verify the mail comes from acumen-group.com"
    )
    assert "SKIP  active campaigns: no campaign is active, so no message was built" in result.stdout


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_a_database_url_as_hosts_give_it_works_as_given(tmp_path, scheme):
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    app = create_app({"INSTANCE_PATH": str(tmp_path), "SQLALCHEMY_DATABASE_URI": f"{scheme}://postgres@127.0.0.1:5432/postgres"})
    with app.app_context():
        assert db.session.execute(text("SELECT 1")).scalar() == 1
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")


@pytest.mark.parametrize(("url", "line"), [
    ("mysql://ken@db.example/desk", "Error: DATABASE_URL names a database this installation has no driver for (mysql)"),
    ("not a url", "Error: DATABASE_URL is not a database URL SQLAlchemy can read"),
])
def test_a_database_url_it_cannot_use_fails_in_one_line_naming_the_setting(tmp_path, url, line):
    done = flask(["db", "upgrade"], _production_env(tmp_path, DATABASE_URL=url))
    assert done.returncode == 1
    assert done.stderr.strip().startswith(line) and len(done.stderr.strip().splitlines()) == 1, done.stderr

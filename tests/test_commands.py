"""The command-line contract: db upgrade, campaigns import/export, classify, create-admin, set-password."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from service import ROOT, create_app, users
from service.extensions import db
from tests.servers import postgres_available, postgres_database
from tests.test_admin_support import ALICE, signed_in, token
from tests.world import mail

DEFAULT_YAML = ROOT / "service" / "assets" / "execution-roadmap.yaml"


def flask(args: list[str], env: dict, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
        input=stdin, capture_output=True, text=True, timeout=120,
    )


def _upgraded(env: dict) -> dict:
    result = flask(["db", "upgrade"], env)
    assert result.returncode == 0, result.stderr
    return env


def test_db_upgrade_builds_the_schema_on_sqlite(cli_env):
    _upgraded(cli_env)
    result = flask(["db", "current"], cli_env)
    assert "(head)" in result.stdout


@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL is not running on 127.0.0.1:5432")
def test_db_upgrade_builds_the_schema_on_postgresql(cli_env):
    with postgres_database("ft_cli") as url:
        cli_env["DATABASE_URL"] = url
        _upgraded(cli_env)
        assert "(head)" in flask(["db", "current"], cli_env).stdout
        imported = flask(["campaigns", "import", str(DEFAULT_YAML)], cli_env)
        assert imported.returncode == 0, imported.stderr


def test_the_app_never_creates_tables_itself():
    sources = [*ROOT.glob("service/**/*.py"), *ROOT.glob("workers/*.py"), ROOT / "wsgi.py"]
    assert sources and not [p for p in sources if "create_all" in p.read_text()]


def test_campaigns_round_trip_through_yaml(cli_env, tmp_path):
    _upgraded(cli_env)
    imported = flask(["campaigns", "import", str(DEFAULT_YAML)], cli_env)
    assert imported.returncode == 0, imported.stderr
    assert "imported execution-roadmap: 3 follow-ups, 1 attachments" in imported.stdout
    exported = flask(["campaigns", "export", "--assets", str(tmp_path / "out")], cli_env)
    original = yaml.safe_load(DEFAULT_YAML.read_text())["campaigns"][0]
    again = yaml.safe_load(exported.stdout)["campaigns"][0]
    assert again["steps"] == original["steps"]
    assert again["magnet"]["text"] == original["magnet"]["text"]
    assert again["triggers"] == original["triggers"]
    assert again["sending"] == original["sending"]
    assert (tmp_path / "out" / "roadmap.pdf").read_bytes() == (DEFAULT_YAML.parent / "roadmap.pdf").read_bytes()


def test_a_broken_campaign_file_is_refused_with_the_reason(cli_env, tmp_path):
    _upgraded(cli_env)
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT_YAML.read_text().replace("after: 3d", "after: soon"))
    result = flask(["campaigns", "import", str(bad)], cli_env)
    assert result.returncode != 0
    assert "delay 'soon' must look like 30s, 15m, 4h or 3d" in result.stderr


def test_classify_prints_one_json_object_per_file_in_the_contract_shape(cli_env, tmp_path):
    _upgraded(cli_env)
    flask(["campaigns", "import", str(DEFAULT_YAML)], cli_env)
    request, ooo = tmp_path / "request.eml", tmp_path / "ooo.eml"
    request.write_bytes(mail())
    ooo.write_bytes(mail(subject="Out of Office: Roadmap please", Auto_Submitted="auto-replied"))
    result = flask(["classify", str(request), str(ooo)], cli_env)
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    # The contract's keys, extended with "via" (what decided a request: its trigger address, or asking by name).
    assert set(first) == {"file", "kind", "campaign", "reasons", "bounce", "ooo_until", "via"}
    assert (first["kind"], first["campaign"], first["file"]) == ("request", "execution-roadmap", str(request))
    assert first["via"] == "address"
    assert second["kind"] == "auto_reply" and second["campaign"] is None and second["reasons"]


def test_classify_without_a_schema_says_what_to_do(cli_env, tmp_path):
    file = tmp_path / "x.eml"
    file.write_bytes(mail())
    result = flask(["classify", str(file)], cli_env)
    assert result.returncode != 0 and "db upgrade" in result.stderr


def test_create_admin_reads_the_password_from_stdin(cli_env):
    _upgraded(cli_env)
    ok = flask(["create-admin", "Alice@Acumen.example"], cli_env, stdin="a long passphrase\na long passphrase\n")
    assert ok.returncode == 0 and "created admin alice@acumen.example" in ok.stdout
    again = flask(["create-admin", "alice@acumen.example"], cli_env, stdin="a long passphrase\n")
    assert again.returncode != 0 and "already exists" in again.stderr
    differ = flask(["create-admin", "bob@acumen.example"], cli_env, stdin="a long passphrase\nanother one here\n")
    assert differ.returncode != 0 and "differ" in differ.stderr


def _sign_in(app, email: str, password: str) -> int:
    client = app.test_client()
    return client.post("/admin/login", data={"email": email, "password": password,
                                             "csrf_token": token(client)}).status_code


def test_set_password_from_stdin_replaces_the_password_and_signs_out_every_session(world, cli_env):
    before = signed_in(world)
    assert before.get("/admin/").status_code == 200
    cli_env["DATABASE_URL"] = world.config["SQLALCHEMY_DATABASE_URI"]  # alice's database
    new = "a brand new passphrase"
    result = flask(["set-password", "Alice@Acumen.example"], cli_env, stdin=f"{new}\n{new}\n")
    assert result.returncode == 0, result.stderr
    assert "set the password of alice@acumen.example" in result.stdout
    assert before.get("/admin/").headers["Location"].startswith("/admin/login")
    assert _sign_in(world, ALICE[0], ALICE[1]) == 401
    assert _sign_in(world, ALICE[0], new) == 302


def test_set_password_refuses_an_unknown_admin_a_short_password_and_two_that_differ(cli_env):
    _upgraded(cli_env)
    flask(["create-admin", "alice@acumen.example"], cli_env, stdin="a long passphrase\n")
    unknown = flask(["set-password", "nobody@acumen.example"], cli_env, stdin="a long passphrase\n")
    assert unknown.returncode != 0 and "there is no admin nobody@acumen.example" in unknown.stderr
    short = flask(["set-password", "alice@acumen.example"], cli_env, stdin="short\n")
    assert short.returncode != 0 and "at least 10 characters" in short.stderr
    differ = flask(["set-password", "alice@acumen.example"], cli_env, stdin="another passphrase\nand another\n")
    assert differ.returncode != 0 and "differ" in differ.stderr
    assert authenticates(cli_env, "alice@acumen.example", "a long passphrase")


def authenticates(env: dict, email: str, password: str) -> bool:
    """Whether the password signs the admin in, on the database a command process used."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": env["DATABASE_URL"], "INSTANCE_PATH": env["FT_INSTANCE"],
                      "REDIS_URL": env["REDIS_URL"], "SECRET_KEY": "test-secret"})
    with app.app_context():
        try:
            return users.authenticate(db.session, email, password) is not None
        finally:
            db.session.remove()
            db.engine.dispose()


def test_the_default_campaign_file_is_what_first_run_loads():
    document = yaml.safe_load(DEFAULT_YAML.read_text())
    assert [c["slug"] for c in document["campaigns"]] == ["execution-roadmap"]
    assert Path(DEFAULT_YAML.parent / "roadmap.pdf").read_bytes().startswith(b"%PDF")


def test_an_oversized_attachment_is_refused_at_import(cli_env, tmp_path):
    _upgraded(cli_env)
    (tmp_path / "roadmap.pdf").write_bytes(b"%PDF" + b"0" * 2 * 1024 * 1024)
    (tmp_path / "c.yaml").write_text(DEFAULT_YAML.read_text())
    cli_env["ASSET_MAX_MB"] = "1"
    result = flask(["campaigns", "import", str(tmp_path / "c.yaml")], cli_env)
    assert result.returncode != 0 and "larger than 1 MB" in result.stderr

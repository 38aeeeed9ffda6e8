"""Mailboxes in the admin: the list with each one's health, the form (secrets kept, hostile input refused),
Test connection against Dovecot and the SMTP sink, Connect with OAuth2 against the stand-in, and the
campaign form's and the dashboard's view of mailboxes."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.fernet import Fernet
from sqlalchemy import select

from service import mailboxes
from service.extensions import db
from service.models import Campaign, Mailbox, MailboxState, utcnow
from tests.oauth_standin import OAuthStandin
from tests.servers import free_port
from tests.test_admin_campaigns import FORM as CAMPAIGN_FORM
from tests.test_admin_support import post, signed_in, text

KEY = Fernet.generate_key().decode()
FORM = {
    "slug": "ken", "sender": "Ken Thoreson <ken@acumen.example>", "imap_host": "imap.acumen.example",
    "imap_port": "993", "imap_security": "ssl", "imap_username": "ken", "imap_folder": "INBOX",
    "smtp_host": "smtp.acumen.example", "smtp_port": "587", "smtp_security": "starttls", "auth_method": "password",
    "password": "kenpass", "provider": "", "per_minute": "5", "per_day": "120",
}


@pytest.fixture
def google(world, standin: OAuthStandin):
    """The desk with a Google OAuth client at the stand-in, and a key to seal secrets with."""
    world.config.update(GOOGLE_CLIENT_ID=standin.client_id, GOOGLE_CLIENT_SECRET=standin.client_secret,
                        GOOGLE_AUTH_URL=standin.authorize_url, GOOGLE_TOKEN_URL=standin.token_url,
                        FT_SECRETS_KEY=KEY)
    standin.consenting_user = "consultant"
    return world


def _record(app, slug: str) -> Mailbox | None:
    with app.app_context():
        record = db.session.scalar(select(Mailbox).where(Mailbox.slug == slug))
        if record is not None:
            db.session.expunge(record)
        return record


def _seen(app, slug: str) -> dict:
    with app.app_context():
        return mailboxes.settings_for(db.session, slug, app.config)


def _card(page: str, slug: str) -> str:
    """One mailbox's card on the Mailboxes page."""
    return page.split(f'id="mailbox-{slug}"')[1].split('<li class="card"')[0].split("</ul>\n\n<section")[0]


def _connect(client, standin: OAuthStandin, slug: str = "ken") -> str:
    """Press Connect Google and consent at the stand-in; the callback address it sends the browser back to."""
    started = client.get(f"/admin/mailboxes/{slug}/connect/google")
    assert started.status_code == 302 and started.headers["Location"].startswith(standin.authorize_url)
    consented = requests.get(started.headers["Location"], allow_redirects=False, timeout=10)
    assert consented.status_code == 302, consented.text
    back = urlsplit(consented.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == "https://desk.acumen.example/admin/oauth/callback"
    return f"{back.path}?{back.query}"


# ---------------------------------------------------------------- the list


def test_a_first_run_shows_default_from_the_settings_and_how_to_add_one(world):
    page = text(signed_in(world).get("/admin/mailboxes"))
    assert "One mailbox so far, from the settings" in page and 'href="/admin/mailboxes/new"' in page
    assert "mailboxes import mailboxes.yaml" in page
    default = _card(page, "default")
    assert "from the settings" in default and "Ken Thoreson &lt;roadmap@acumen.example&gt;" in default
    assert "a local Maildir" in default and "not polled yet" in default
    assert "Execution Success Roadmap" in default  # the world's campaign answers from default
    assert "/connect/" not in page
    assert "set <code>GOOGLE_CLIENT_ID</code> and <code>GOOGLE_CLIENT_SECRET</code> to offer" in page
    assert "https://desk.acumen.example/admin/oauth/callback" in page
    assert 'aria-current="page">Mailboxes</a>' in page


def test_each_mailbox_shows_its_servers_sign_in_pace_campaigns_and_health(world):
    client = signed_in(world)
    assert post(client, "/admin/mailboxes/new", FORM).status_code == 302
    with world.app_context():
        db.session.execute(Campaign.__table__.update().values(mailbox="ken"))
        db.session.add(MailboxState(mailbox="imap://ken@imap.acumen.example/INBOX",
                                    last_poll_at=utcnow() - timedelta(minutes=3),
                                    last_error="LOGIN failed <b>", last_error_at=utcnow() - timedelta(minutes=2)))
        db.session.commit()
    page = text(client.get("/admin/mailboxes"))
    assert "One mailbox so far" not in page
    ken = _card(page, "ken")
    assert "Ken Thoreson &lt;ken@acumen.example&gt;" in ken and "IMAP imap.acumen.example:993 as ken" in ken
    assert "SMTP smtp.acumen.example:587 as ken" in ken and "password" in ken and "5 a minute, 120 a day" in ken
    assert "Execution Success Roadmap" in ken and "Execution Success Roadmap" not in _card(page, "default")
    assert re.search(r'INBOX: last poll <time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d UTC">3 min ago', ken)
    assert re.search(r"\(lag 1[89]\d s\)", ken) and "LOGIN failed &lt;b&gt;" in ken
    assert 'action="/admin/mailboxes/ken/test"' in ken and 'href="/admin/mailboxes/ken"' in ken


def test_connect_buttons_show_only_for_a_provider_with_a_client_id(google):
    page = text(signed_in(google).get("/admin/mailboxes"))
    assert 'href="/admin/mailboxes/default/connect/google"' in page
    assert "/connect/microsoft" not in page and "set <code>MICROSOFT_CLIENT_ID" in page
    refused = signed_in(google).get("/admin/mailboxes/default/connect/microsoft", follow_redirects=True)
    assert "Connect Microsoft needs MICROSOFT_CLIENT_ID and MICROSOFT_CLIENT_SECRET" in text(refused)


def test_a_mailbox_sealed_with_another_key_is_named_not_a_500(world):
    world.config["FT_SECRETS_KEY"] = KEY
    client = signed_in(world)
    post(client, "/admin/mailboxes/new", FORM)
    world.config["FT_SECRETS_KEY"] = Fernet.generate_key().decode()
    said = "cannot be read with this FT_SECRETS_KEY (was it changed?)"
    assert said in _card(text(client.get("/admin/mailboxes")), "ken")
    assert said in text(client.get("/admin/"))
    opened = client.get("/admin/mailboxes/ken", follow_redirects=True)
    assert opened.status_code == 200 and f"Mailbox ken cannot be opened: mailbox secrets {said}" in text(opened)
    tested = text(post(client, "/admin/mailboxes/ken/test"))
    assert re.search(r'<li class="fail">FAIL  mailbox secrets cannot be read', tested)


def test_an_unknown_mailbox_is_a_404(world):
    client = signed_in(world)
    assert client.get("/admin/mailboxes/ghost").status_code == 404
    assert post(client, "/admin/mailboxes/ghost/test").status_code == 404


# ---------------------------------------------------------------- the form


def test_a_new_mailbox_is_saved_from_the_form_with_its_password_sealed(world):
    world.config["FT_SECRETS_KEY"] = KEY
    response = post(signed_in(world), "/admin/mailboxes/new", FORM, follow_redirects=True)
    assert "Mailbox ken is saved." in text(response)
    record = _record(world, "ken")
    assert (record.from_name, record.from_address, record.imap_host, record.per_day) == (
        "Ken Thoreson", "ken@acumen.example", "imap.acumen.example", 120)
    assert "kenpass" not in record.sealed_secrets
    seen = _seen(world, "ken")
    assert (seen["IMAP_PASSWORD"], seen["SMTP_USERNAME"], seen["MAIL_AUTH"]) == ("kenpass", "ken", "password")


def test_editing_keeps_a_secret_left_blank_and_never_shows_it(world):
    client = signed_in(world)
    post(client, "/admin/mailboxes/new", FORM)
    form = text(client.get("/admin/mailboxes/ken"))
    assert "kenpass" not in form and re.search(r'name="password" placeholder="\*\*\*"', form)
    assert 'value="Ken Thoreson &lt;ken@acumen.example&gt;"' in form and "Remove the stored password" in form
    changed = {**FORM, "slug": "evil", "sender": "Ken T <ken@acumen.example>", "password": ""}
    assert post(client, "/admin/mailboxes/ken", changed).status_code == 302
    assert _record(world, "evil") is None  # a slug is for good
    assert (_seen(world, "ken")["MAIL_FROM"], _seen(world, "ken")["IMAP_PASSWORD"]) == (
        "Ken T <ken@acumen.example>", "kenpass")
    post(client, "/admin/mailboxes/ken", {**changed, "password": "newpass"})
    assert _seen(world, "ken")["IMAP_PASSWORD"] == "newpass"
    post(client, "/admin/mailboxes/ken", {**changed, "clear_password": "y"})
    assert _seen(world, "ken")["IMAP_PASSWORD"] is None


def test_a_name_with_a_comma_reads_back_as_one_name(world):
    client = signed_in(world)
    post(client, "/admin/mailboxes/new", {**FORM, "sender": '"Thoreson, Ken" <ken@acumen.example>'})
    assert _record(world, "ken").from_name == "Thoreson, Ken"
    assert post(client, "/admin/mailboxes/ken", {**FORM, "sender": "Thoreson, Ken <ken@acumen.example>"}
                ).status_code == 400  # unquoted, the comma ends the address: the file's rule refuses it
    form = text(client.get("/admin/mailboxes/ken"))
    assert 'value="&#34;Thoreson, Ken&#34; &lt;ken@acumen.example&gt;"' in form


def test_saving_default_makes_the_record_that_replaces_the_settings(world):
    world.config["IMAP_PASSWORD"] = "from-the-settings"
    client = signed_in(world)
    form = text(client.get("/admin/mailboxes/default"))
    assert "Saving keeps them here as a record" in form
    assert 'value="Ken Thoreson &lt;roadmap@acumen.example&gt;"' in form
    assert re.search(r'name="password" placeholder="\*\*\*"', form) and "from-the-settings" not in form
    assert re.search(r'<input checked id="smtp_no_auth"', form)  # the settings' SMTP has no username: a relay
    data = {**FORM, "slug": "default", "sender": "Ken Thoreson <ken@acumen.example>", "password": "",
            "smtp_no_auth": "y", "imap_host": "", "smtp_host": ""}
    response = post(client, "/admin/mailboxes/default", data, follow_redirects=True)
    assert "It replaces the IMAP_*, SMTP_* and MAIL_FROM settings now." in text(response)
    assert _record(world, "default") is not None
    seen = _seen(world, "default")
    assert (seen["MAIL_FROM"], seen["IMAP_PASSWORD"], seen["SMTP_USERNAME"]) == (
        "Ken Thoreson <ken@acumen.example>", "from-the-settings", "")
    assert "from the settings" not in _card(text(client.get("/admin/mailboxes")), "default")


@pytest.mark.parametrize(("change", "said"), [
    ({"slug": "default"}, "there is already a mailbox default: change it with Edit"),
    ({"sender": "nobody"}, "`from` must be a name and an address"),
    ({"sender": f"{'K' * 201} <ken@acumen.example>"}, "from_name is longer than 200 characters"),
    ({"auth_method": "xoauth2"}, "xoauth2 needs auth.provider google or microsoft, or a token_url"),
])
def test_what_the_file_import_refuses_the_form_refuses_too(world, change, said):
    response = post(signed_in(world), "/admin/mailboxes/new", {**FORM, **change})
    assert response.status_code == 400 and "Not saved: " in text(response)
    assert said in text(response).replace("&#39;", "'").replace("&#96;", "`")
    with world.app_context():
        assert db.session.scalar(select(Mailbox.id)) is None


@pytest.mark.parametrize(("change", "said"), [
    ({"imap_host": "imap.acumen.example\r\nA1 LOGOUT"}, "no line breaks, tabs or other control characters"),
    ({"sender": "Ken <ken@acumen.example>\r\nBcc: all@else.example"}, "no line breaks"),
    ({"password": "ken\x00pass"}, "no line breaks"),
    ({"imap_host": "x" * 300}, "Field cannot be longer than 255 characters."),
    ({"imap_port": "70000"}, "Number must be between 1 and 65535."),
    ({"smtp_port": "9" * 5000}, "Not a valid integer value."),
    ({"imap_port": "-1"}, "Number must be between 1 and 65535."),
    ({"per_day": "0"}, "Number must be between 1 and 1000000."),
    ({"slug": "../etc"}, "lower-case letters, digits and dashes"),
    ({"slug": "ken\n"}, "lower-case letters, digits and dashes"),
    ({"slug": "new"}, "is the address of this page"),
    ({"imap_security": "tls"}, "Not a valid choice."),
    ({"provider": "evil"}, "Not a valid choice."),
])
def test_hostile_input_gets_the_form_again_with_a_400_not_a_500(world, change, said):
    response = post(signed_in(world), "/admin/mailboxes/new", {**FORM, **change})
    assert response.status_code == 400
    page = text(response)
    assert said in page.replace("&#34;", '"') and 'aria-invalid="true"' in page
    with world.app_context():
        assert db.session.scalar(select(Mailbox.id)) is None


def test_the_form_needs_its_csrf_token(world):
    assert signed_in(world).post("/admin/mailboxes/new", data=FORM).status_code == 400
    assert _record(world, "ken") is None


# ---------------------------------------------------------------- Test connection


def test_test_connection_signs_in_to_dovecot_and_the_sink(imap_settings, world, caplog):
    with caplog.at_level(logging.INFO, logger="service.admin.mailboxes_views"):
        page = text(post(signed_in(world), "/admin/mailboxes/default/test"))
    assert "Connection test: default" in page and "signs in" in page
    assert re.search(r'<li class="ok">IMAP  OK   127\.0\.0\.1:\d+ \(starttls\) as consultant \(password\)</li>', page)
    assert re.search(r'<li class="ok">SMTP  OK   127\.0\.0\.1:\d+ \(none\)</li>', page)
    assert 'class="fail"' not in page
    assert any(r.getMessage() == "mailbox default: connection test by alice@acumen.example: OK" for r in caplog.records)


def test_test_connection_says_what_to_fix(dovecot, world, caplog):
    data = {**FORM, "imap_host": dovecot.host, "imap_port": str(dovecot.port), "imap_security": "starttls",
            "imap_username": dovecot.user, "imap_cafile": dovecot.cafile, "password": "wrong",
            "smtp_host": "127.0.0.1", "smtp_port": str(free_port()), "smtp_security": "none"}
    client = signed_in(world)
    post(client, "/admin/mailboxes/new", data)
    with caplog.at_level(logging.INFO, logger="service.admin.mailboxes_views"):
        page = text(post(client, "/admin/mailboxes/ken/test"))
    assert "something to fix" in page and 'class="card alert"' in page
    assert re.search(r'<li class="fail">IMAP  FAIL [^<]*the server refused the sign-in', page)
    assert re.search(r'<li class="fail">SMTP  FAIL [^<]*nothing answers there', page)
    assert any("connection test by alice@acumen.example: IMAP  FAIL" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- Connect


def test_connect_google_stores_a_sealed_refresh_token_that_signs_in(google, standin, oauth_dovecot, oauth_sink):
    client = signed_in(google)
    post(client, "/admin/mailboxes/new", {
        **FORM, "imap_host": oauth_dovecot.host, "imap_port": str(oauth_dovecot.port), "imap_security": "starttls",
        "imap_username": "consultant", "imap_cafile": oauth_dovecot.cafile, "password": "",
        "smtp_host": oauth_sink.host, "smtp_port": str(oauth_sink.port), "smtp_security": "none"})
    callback = _connect(client, standin)
    asked = standin.authorizations[-1]
    assert (asked["code_challenge_method"], asked["redirect_uri"], asked["access_type"]) == (
        "S256", "https://desk.acumen.example/admin/oauth/callback", "offline")
    done = client.get(callback, follow_redirects=True)
    assert "Mailbox ken is connected to Google" in text(done)
    record = _record(google, "ken")
    assert (record.auth_method, record.provider, record.client_id) == ("xoauth2", "google", "ft-client")
    assert record.imap_host == oauth_dovecot.host  # its own servers stay
    seen = _seen(google, "ken")
    assert standin.users[seen["OAUTH_REFRESH_TOKEN"]] == "consultant"
    assert seen["OAUTH_CLIENT_SECRET"] == "ft-secret"
    assert seen["OAUTH_REFRESH_TOKEN"] not in record.sealed_secrets and "ft-secret" not in record.sealed_secrets
    tested = text(post(client, "/admin/mailboxes/ken/test"))
    assert re.search(r'<li class="ok">IMAP  OK   [^<]* as consultant \(xoauth2\)</li>', tested)
    assert re.search(r'<li class="ok">SMTP  OK ', tested) and 'class="fail"' not in tested
    again = client.get(callback, follow_redirects=True)  # the same answer twice: the Connect is spent
    assert "Not connected: this answer belongs to no Connect started here, or it came twice" in text(again)


def test_connecting_default_makes_its_record_with_the_providers_servers(google, standin):
    google.config["SMTP_HOST"] = None  # the settings name no servers: the mail stays local until Connect
    client = signed_in(google)
    client.get(_connect(client, standin, "default"))
    record = _record(google, "default")
    assert (record.imap_host, record.imap_port, record.imap_security) == ("imap.gmail.com", 993, "ssl")
    assert (record.smtp_host, record.smtp_port, record.smtp_security) == ("smtp.gmail.com", 587, "starttls")
    seen = _seen(google, "default")
    assert (seen["SMTP_USERNAME"], seen["MAIL_AUTH"]) == ("roadmap@acumen.example", "xoauth2")
    with google.app_context():
        assert mailboxes.cached_token(db.session, "default", google.config) is not None


def test_a_callback_with_another_state_is_refused(google, standin):
    client = signed_in(google)
    callback = _connect(client, standin, "default")
    exchanges = standin.exchanges
    forged = re.sub(r"state=[^&]+", "state=forged", callback)
    response = client.get(forged, follow_redirects=True)
    assert "Not connected: this answer belongs to no Connect started here" in text(response)
    assert standin.exchanges == exchanges and _record(google, "default") is None
    client.get("/admin/mailboxes/default/connect/google")  # a state that is not ASCII is refused, not a 500
    foreign = client.get(re.sub(r"state=[^&]+", "state=%C3%A9t%C3%A9", callback), follow_redirects=True)
    assert foreign.status_code == 200 and "no Connect started here" in text(foreign)


def test_a_providers_refusal_is_shown_in_one_line(google, standin):
    client = signed_in(google)
    started = client.get("/admin/mailboxes/default/connect/google")
    state = parse_qs(urlsplit(started.headers["Location"]).query)["state"][0]
    denied = client.get(f"/admin/oauth/callback?state={state}&error=access_denied"
                        "&error_description=The+user+said+no", follow_redirects=True)
    assert "Not connected: Google said access_denied The user said no." in text(denied)
    google.config["GOOGLE_CLIENT_SECRET"] = "not-the-secret"
    response = client.get(_connect(client, standin, "default"), follow_redirects=True)
    assert response.status_code == 200
    assert "Not connected: the provider refused the client id or secret (invalid_client)" in text(response)
    assert _record(google, "default") is None


# ---------------------------------------------------------------- campaigns and the dashboard


def test_a_campaign_moves_to_another_mailbox_and_an_unknown_one_is_refused(world):
    client = signed_in(world)
    post(client, "/admin/mailboxes/new", FORM)
    with world.app_context():
        campaign_id = db.session.scalar(select(Campaign.id))
    page = text(client.get(f"/admin/campaigns/{campaign_id}"))
    assert re.search(r'<select aria-describedby="mailbox-hint" id="mailbox" name="mailbox">'
                     r'<option selected value="default">default</option>'
                     r'<option value="ken">ken</option></select>', page)
    moved = post(client, f"/admin/campaigns/{campaign_id}", {**CAMPAIGN_FORM, "mailbox": "ken", "action": "save"})
    assert moved.status_code == 302
    with world.app_context():
        assert db.session.get(Campaign, campaign_id).mailbox == "ken"
    refused = post(client, f"/admin/campaigns/{campaign_id}", {**CAMPAIGN_FORM, "mailbox": "ghost", "action": "save"})
    assert refused.status_code == 400 and "there is no mailbox &#39;ghost&#39;" in text(refused)
    with world.app_context():
        assert db.session.get(Campaign, campaign_id).mailbox == "ken"


def test_the_dashboard_shows_each_mailbox_by_slug_with_its_health(world):
    client = signed_in(world)
    post(client, "/admin/mailboxes/new", FORM)
    with world.app_context():
        now = utcnow()
        db.session.add(MailboxState(mailbox="imap://ken@imap.acumen.example/INBOX", last_poll_at=now))
        db.session.add(MailboxState(mailbox="imap://old@mail.example/INBOX", last_poll_at=now - timedelta(days=2)))
        db.session.commit()
    page = text(client.get("/admin/"))
    panel = re.search(r'id="sys-h".*?<h3>Queue</h3>', page, re.S).group(0)
    assert re.search(r'>ken</a></strong>:\s*<ul class="plain folders"><li class="">\s*INBOX: last poll', panel)
    assert re.search(r">default</a></strong>:\s*<span class=\"muted\">not polled yet", panel)
    assert "Also polled once, by settings no mailbox has now" in panel and "imap://old@mail.example/INBOX" in panel
    assert "The poller has not run yet" not in panel

"""XOAUTH2 against real servers: the token stand-in, Dovecot's oauth2 passdb and the SMTP sink."""

from __future__ import annotations

import dataclasses
import smtplib
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from imapclient import IMAPClient
from sqlalchemy import func, select

from service import campaigns, connections, oauth
from service.extensions import db
from service.models import InboundMessage, MailboxState
from service.oauth import AccessToken, OAuthError, TokenSource
from tests.conftest import DEFAULT_YAML, OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET
from tests.oauth_standin import OAuthStandin
from tests.servers import Dovecot, SmtpSink, free_port
from tests.world import mail, run_poller, run_worker

CLIENT_ID, CLIENT_SECRET = OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET
REDIRECT_URI = "https://desk.acumen.example/admin/mailbox/oauth/callback"
MESSAGE = b"From: roadmap@acumen.example\r\nTo: bob@prospect.example\r\nSubject: Roadmap\r\n\r\nHello Bob\r\n"


@pytest.fixture
def sink(oauth_sink: SmtpSink) -> SmtpSink:
    oauth_sink.clear()
    return oauth_sink


def _source(standin: OAuthStandin, user: str = "consultant", **kwargs) -> tuple[TokenSource, str]:
    refresh_token = standin.issue_refresh_token(user)
    return TokenSource(standin.token_url, CLIENT_ID, CLIENT_SECRET, refresh_token, **kwargs), refresh_token


def _imap(dovecot: Dovecot) -> IMAPClient:
    return dovecot.connect(login=False)


def _smtp(sink: SmtpSink) -> smtplib.SMTP:
    return smtplib.SMTP(sink.host, sink.port, timeout=10)


def _google(standin: OAuthStandin) -> oauth.Provider:
    return oauth.provider("google", {"GOOGLE_AUTH_URL": standin.authorize_url, "GOOGLE_TOKEN_URL": standin.token_url})


def _microsoft(standin: OAuthStandin) -> oauth.Provider:
    settings = {"MICROSOFT_AUTH_URL": standin.authorize_url, "MICROSOFT_TOKEN_URL": standin.token_url}
    return oauth.provider("microsoft", settings)


def _authorize(standin: OAuthStandin, provider: oauth.Provider, challenge: str, state: str = "s-1") -> str:
    """Play the admin's browser: GET the authorization URL and return the code from the redirect."""
    url = oauth.authorization_url(provider, CLIENT_ID, REDIRECT_URI, state, challenge)
    response = requests.get(url, allow_redirects=False, timeout=10)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    query = parse_qs(location.query)
    assert query["state"] == [state]
    return query["code"][0]


# --------------------------------------------------------------------------- refresh


def test_it_refreshes_only_when_the_token_is_absent_or_near_expiry(standin: OAuthStandin) -> None:
    now = [datetime.now(oauth.UTC)]
    source, _ = _source(standin, clock=lambda: now[0])
    before = standin.refreshes

    first = source.current()
    assert standin.user_for(first) == "consultant"
    assert standin.refreshes == before + 1

    now[0] += timedelta(minutes=30)
    assert source.current() == first
    assert standin.refreshes == before + 1

    now[0] += timedelta(minutes=26)  # 4 minutes before expiry: inside the 5-minute margin
    second = source.current()
    assert second != first
    assert standin.user_for(second) == "consultant"
    assert standin.refreshes == before + 2


def test_it_uses_a_stored_token_until_it_nears_expiry(standin: OAuthStandin) -> None:
    refresh_token = standin.issue_refresh_token("consultant")
    stored, _ = oauth.refresh(standin.token_url, CLIENT_ID, CLIENT_SECRET, refresh_token)
    before = standin.refreshes
    source = TokenSource(standin.token_url, CLIENT_ID, CLIENT_SECRET, refresh_token, cached=stored)

    assert source.current() == stored.token
    assert standin.refreshes == before


def test_it_hands_every_refresh_and_a_rotated_refresh_token_to_on_refresh(standin: OAuthStandin) -> None:
    standin.rotate = True
    seen: list[tuple[AccessToken, str | None]] = []
    source, original = _source(standin, on_refresh=lambda token, rotated: seen.append((token, rotated)))

    first = source.current()
    second = source.renew()  # spends the rotated token: the stand-in has retired the original

    assert [token.token for token, _ in seen] == [first, second]
    rotations = [rotated for _, rotated in seen]
    assert None not in rotations and original not in rotations and rotations[0] != rotations[1]
    assert original not in standin.users
    assert standin.users[rotations[1]] == "consultant"


def test_it_reports_no_rotation_when_the_provider_keeps_the_refresh_token(standin: OAuthStandin) -> None:
    seen: list[str | None] = []
    source, _ = _source(standin, on_refresh=lambda token, rotated: seen.append(rotated))

    source.current()

    assert seen == [None]


def test_it_gives_an_access_token_an_aware_expiry_from_expires_in(standin: OAuthStandin) -> None:
    standin.lifetime = 600
    refresh_token = standin.issue_refresh_token("consultant")

    token, _ = oauth.refresh(standin.token_url, CLIENT_ID, CLIENT_SECRET, refresh_token)

    left = token.expires_at - datetime.now(oauth.UTC)
    assert timedelta(minutes=9) < left <= timedelta(minutes=10)
    assert token.token not in repr(token)


def test_it_says_to_connect_again_when_the_refresh_token_is_revoked(standin: OAuthStandin) -> None:
    source, refresh_token = _source(standin)
    standin.revoke_refresh(refresh_token)

    with pytest.raises(OAuthError) as caught:
        source.renew()

    assert caught.value.permanent
    assert "invalid_grant" in str(caught.value) and "connect the mailbox again" in str(caught.value)
    assert refresh_token not in str(caught.value)


def test_it_calls_a_wrong_client_secret_permanent(standin: OAuthStandin) -> None:
    refresh_token = standin.issue_refresh_token("consultant")

    with pytest.raises(OAuthError) as caught:
        oauth.refresh(standin.token_url, CLIENT_ID, "wrong-secret", refresh_token)

    assert caught.value.permanent
    assert "invalid_client" in str(caught.value)
    assert "wrong-secret" not in str(caught.value)


def test_it_calls_a_provider_outage_transient(standin: OAuthStandin) -> None:
    refresh_token = standin.issue_refresh_token("consultant")
    standin.outage = 503

    with pytest.raises(OAuthError) as caught:
        oauth.refresh(standin.token_url, CLIENT_ID, CLIENT_SECRET, refresh_token)

    assert not caught.value.permanent
    assert "HTTP 503" in str(caught.value)


def test_it_calls_an_unreachable_token_endpoint_transient() -> None:
    with pytest.raises(OAuthError) as caught:
        oauth.refresh(f"http://127.0.0.1:{free_port()}/token", CLIENT_ID, CLIENT_SECRET, "rt-x", timeout=5)

    assert not caught.value.permanent
    assert "could not be reached" in str(caught.value)


# --------------------------------------------------------------------------- IMAP


def test_xoauth2_initial_response_is_the_documented_format() -> None:
    assert oauth.xoauth2("consultant@example.com", "ya29.token") == (
        "user=consultant@example.com\x01auth=Bearer ya29.token\x01\x01"
    )


def test_it_logs_in_to_dovecot_with_xoauth2(standin: OAuthStandin, oauth_dovecot: Dovecot) -> None:
    source, _ = _source(standin)
    client = _imap(oauth_dovecot)
    try:
        oauth.imap_login(client, "consultant", source)
        assert client.select_folder("INBOX")[b"UIDVALIDITY"] > 0
    finally:
        client.logout()


def test_it_renews_a_token_the_imap_server_refuses(standin: OAuthStandin, oauth_dovecot: Dovecot) -> None:
    source, _ = _source(standin)
    source.current()
    standin.expire_all()  # the provider revoked it early; the source still thinks it good
    refreshes, introspections = standin.refreshes, standin.introspections
    client = _imap(oauth_dovecot)
    try:
        oauth.imap_login(client, "consultant", source)
        assert client.select_folder("INBOX")[b"UIDVALIDITY"] > 0
    finally:
        client.logout()

    assert standin.refreshes == refreshes + 1
    assert standin.introspections == introspections + 2  # refused once, then accepted


def test_imap_login_says_to_connect_again_when_the_refresh_token_is_revoked(
    standin: OAuthStandin, oauth_dovecot: Dovecot
) -> None:
    source, refresh_token = _source(standin)
    source.current()
    standin.expire_all()
    standin.revoke_refresh(refresh_token)
    client = _imap(oauth_dovecot)
    try:
        with pytest.raises(OAuthError) as caught:
            oauth.imap_login(client, "consultant", source)
    finally:
        client.logout()

    assert caught.value.permanent
    assert "connect the mailbox again" in str(caught.value)


def test_imap_login_gives_up_when_the_server_refuses_a_fresh_token(
    standin: OAuthStandin, oauth_dovecot: Dovecot
) -> None:
    source, _ = _source(standin, user="consultant")  # a token for one mailbox, a login as another
    refreshes = standin.refreshes
    client = _imap(oauth_dovecot)
    try:
        with pytest.raises(OAuthError) as caught:
            oauth.imap_login(client, "other", source)
    finally:
        client.logout()

    assert caught.value.permanent
    assert "refused a freshly refreshed access token for other" in str(caught.value)
    assert standin.refreshes == refreshes + 2  # the first token, then exactly one renewal


def test_dovecot_in_oauth2_mode_still_takes_passwords_but_not_as_tokens(oauth_dovecot: Dovecot) -> None:
    with oauth_dovecot.client("other") as client:
        assert client.select_folder("INBOX")[b"UIDVALIDITY"] > 0
    client = _imap(oauth_dovecot)
    try:
        with pytest.raises(Exception, match="AUTHENTICATIONFAILED"):
            client.oauth2_login("other", "pw2")
    finally:
        client.logout()


# --------------------------------------------------------------------------- SMTP


def test_the_xoauth2_sink_takes_no_mail_before_a_login(sink: SmtpSink) -> None:
    with _smtp(sink) as smtp:
        smtp.ehlo()
        assert smtp.esmtp_features["auth"].split() == ["XOAUTH2"]
        with pytest.raises(smtplib.SMTPSenderRefused) as caught:
            smtp.sendmail("roadmap@acumen.example", ["bob@prospect.example"], MESSAGE)
    assert caught.value.smtp_code == 530
    assert sink.messages == []


def test_it_sends_through_smtp_with_xoauth2(standin: OAuthStandin, sink: SmtpSink) -> None:
    source, _ = _source(standin)
    with _smtp(sink) as smtp:
        oauth.smtp_login(smtp, "consultant", source)
        smtp.sendmail("roadmap@acumen.example", ["bob@prospect.example"], MESSAGE)

    assert [message.rcpt_tos for message in sink.messages] == [["bob@prospect.example"]]


def test_it_renews_a_token_the_smtp_server_refuses(standin: OAuthStandin, sink: SmtpSink) -> None:
    source, _ = _source(standin)
    source.current()
    standin.expire_all()
    refreshes = standin.refreshes
    with _smtp(sink) as smtp:
        oauth.smtp_login(smtp, "consultant", source)
        smtp.sendmail("roadmap@acumen.example", ["bob@prospect.example"], MESSAGE)

    assert standin.refreshes == refreshes + 1
    # sendmail returns after the sink's 250, so the message is stored by now: exactly once.
    assert len(sink.messages) == 1
    assert sink.messages[0].data.endswith(b"Hello Bob\r\n")


def test_smtp_login_gives_up_when_the_server_refuses_a_fresh_token(standin: OAuthStandin, sink: SmtpSink) -> None:
    source, _ = _source(standin, user="consultant")
    with _smtp(sink) as smtp, pytest.raises(OAuthError) as caught:
        oauth.smtp_login(smtp, "other", source)

    # A 535 (not smtplib's "infinite loop" error) shows the client answered the error challenge.
    assert "535" in str(caught.value)
    assert caught.value.permanent
    assert sink.messages == []


def test_smtp_login_says_to_connect_again_when_the_refresh_token_is_revoked(
    standin: OAuthStandin, sink: SmtpSink
) -> None:
    source, refresh_token = _source(standin)
    source.current()
    standin.expire_all()
    standin.revoke_refresh(refresh_token)
    with _smtp(sink) as smtp, pytest.raises(OAuthError) as caught:
        oauth.smtp_login(smtp, "consultant", source)

    assert caught.value.permanent
    assert "connect the mailbox again" in str(caught.value)


# --------------------------------------------------------------------------- connecting a mailbox


def test_it_connects_a_google_mailbox_with_pkce(standin: OAuthStandin, oauth_dovecot: Dovecot) -> None:
    verifier, challenge = oauth.new_pkce()
    code = _authorize(standin, _google(standin), challenge)

    refresh_token, access = oauth.exchange_code(
        _google(standin), CLIENT_ID, CLIENT_SECRET, code, REDIRECT_URI, verifier
    )

    asked = standin.authorizations[-1]
    assert asked["code_challenge"] == challenge and asked["code_challenge_method"] == "S256"
    assert asked["access_type"] == "offline" and asked["prompt"] == "consent"
    assert asked["scope"] == "https://mail.google.com/" and asked["redirect_uri"] == REDIRECT_URI
    assert standin.users[refresh_token] == "consultant"
    assert standin.user_for(access.token) == "consultant"
    # The refresh token just obtained is good for a mailbox login.
    client = _imap(oauth_dovecot)
    try:
        source = TokenSource(standin.token_url, CLIENT_ID, CLIENT_SECRET, refresh_token, cached=access)
        oauth.imap_login(client, "consultant", source)
    finally:
        client.logout()


def test_it_asks_microsoft_for_offline_access(standin: OAuthStandin) -> None:
    verifier, challenge = oauth.new_pkce()
    code = _authorize(standin, _microsoft(standin), challenge)

    refresh_token, _ = oauth.exchange_code(_microsoft(standin), CLIENT_ID, CLIENT_SECRET, code, REDIRECT_URI, verifier)

    asked = standin.authorizations[-1]
    assert asked["scope"].split() == list(_microsoft(standin).scopes)
    assert "access_type" not in asked and "prompt" not in asked
    assert standin.users[refresh_token] == "consultant"


def test_it_refuses_a_code_with_the_wrong_verifier(standin: OAuthStandin) -> None:
    _, challenge = oauth.new_pkce()
    other_verifier, _ = oauth.new_pkce()
    code = _authorize(standin, _google(standin), challenge)

    with pytest.raises(OAuthError) as caught:
        oauth.exchange_code(_google(standin), CLIENT_ID, CLIENT_SECRET, code, REDIRECT_URI, other_verifier)

    assert caught.value.permanent
    assert "authorization code was refused (invalid_grant)" in str(caught.value)


def test_it_refuses_a_code_twice(standin: OAuthStandin) -> None:
    verifier, challenge = oauth.new_pkce()
    code = _authorize(standin, _google(standin), challenge)
    oauth.exchange_code(_google(standin), CLIENT_ID, CLIENT_SECRET, code, REDIRECT_URI, verifier)

    with pytest.raises(OAuthError, match="invalid_grant"):
        oauth.exchange_code(_google(standin), CLIENT_ID, CLIENT_SECRET, code, REDIRECT_URI, verifier)


def test_it_names_the_consent_setting_when_no_refresh_token_comes_back(standin: OAuthStandin) -> None:
    without_offline = dataclasses.replace(
        _microsoft(standin), scopes=("https://outlook.office.com/IMAP.AccessAsUser.All",)
    )
    verifier, challenge = oauth.new_pkce()
    code = _authorize(standin, without_offline, challenge)

    with pytest.raises(OAuthError) as caught:
        oauth.exchange_code(without_offline, CLIENT_ID, CLIENT_SECRET, code, REDIRECT_URI, verifier)

    assert caught.value.permanent
    assert "offline_access" in str(caught.value)


def test_new_pkce_pairs_are_fresh_and_valid_s256() -> None:
    first, second = oauth.new_pkce(), oauth.new_pkce()

    assert first[0] != second[0]
    for verifier, challenge in (first, second):
        assert 43 <= len(verifier) <= 128  # RFC 7636 §4.1
        assert challenge == _s256(verifier)


def _s256(verifier: str) -> str:
    import base64
    import hashlib

    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


# --------------------------------------------------------------------------- providers


def test_provider_presets() -> None:
    google, microsoft = oauth.provider("google", {}), oauth.provider("microsoft", {})

    assert google.auth_url == "https://accounts.google.com/o/oauth2/v2/auth"
    assert google.token_url == "https://oauth2.googleapis.com/token"
    assert google.scopes == ("https://mail.google.com/",)
    assert (google.imap_host, google.imap_port) == ("imap.gmail.com", 993)
    assert (google.smtp_host, google.smtp_port, google.smtp_security) == ("smtp.gmail.com", 587, "starttls")
    assert microsoft.auth_url == "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
    assert microsoft.token_url == "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    assert microsoft.scopes == (
        "offline_access",
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "https://outlook.office.com/SMTP.Send",
    )
    assert (microsoft.imap_host, microsoft.imap_port) == ("outlook.office365.com", 993)
    assert (microsoft.smtp_host, microsoft.smtp_port, microsoft.smtp_security) == (
        "smtp.office365.com",
        587,
        "starttls",
    )


def test_provider_takes_urls_and_tenant_from_settings() -> None:
    tenant = oauth.provider("microsoft", {"MICROSOFT_TENANT": "acumen.onmicrosoft.com", "MICROSOFT_AUTH_URL": ""})
    overridden = oauth.provider("google", {"GOOGLE_AUTH_URL": "http://127.0.0.1:1/a", "GOOGLE_TOKEN_URL": None})

    assert tenant.auth_url == "https://login.microsoftonline.com/acumen.onmicrosoft.com/oauth2/v2.0/authorize"
    assert tenant.token_url == "https://login.microsoftonline.com/acumen.onmicrosoft.com/oauth2/v2.0/token"
    assert overridden.auth_url == "http://127.0.0.1:1/a"
    assert overridden.token_url == "https://oauth2.googleapis.com/token"


def test_provider_refuses_an_unknown_name() -> None:
    with pytest.raises(OAuthError, match="unknown OAuth provider 'yahoo'") as caught:
        oauth.provider("yahoo", {})
    assert caught.value.permanent


# --------------------------------------------------------------------------- the whole desk on XOAUTH2


@pytest.fixture
def oauth_desk(make_app, standin: OAuthStandin, oauth_dovecot: Dovecot, sink: SmtpSink):
    """The default mailbox signing in to IMAP and SMTP with XOAUTH2 only, answering the roadmap campaign."""
    connections._sources.clear()  # each test starts with no token in this process
    with oauth_dovecot.client() as client:
        client.select_folder("INBOX")
        if uids := client.search(["ALL"]):
            client.delete_messages(uids)
            client.expunge()
    app = make_app(
        IMAP_HOST=oauth_dovecot.host, IMAP_PORT=oauth_dovecot.port, IMAP_SECURITY="starttls",
        IMAP_CAFILE=oauth_dovecot.cafile, IMAP_USERNAME="consultant", IMAP_PASSWORD=None, SMTP_USERNAME="consultant",
        MAIL_AUTH="xoauth2", OAUTH_TOKEN_URL=standin.token_url, OAUTH_CLIENT_ID=CLIENT_ID,
        OAUTH_CLIENT_SECRET=CLIENT_SECRET, OAUTH_REFRESH_TOKEN=standin.issue_refresh_token("consultant"),
    )
    with app.app_context():
        campaigns.import_yaml(db.session, DEFAULT_YAML.read_text(), DEFAULT_YAML.parent)
        db.session.commit()
    return app


def _answered(app, dovecot: Dovecot, sink: SmtpSink, sender: str, count: int) -> None:
    dovecot.append(mail(sender=sender))
    run_poller(app)
    run_worker(app)
    assert sender in sink.wait_for(count)[-1].rcpt_tos


def test_the_desk_runs_on_xoauth2_and_renews_a_token_that_expired_mid_run(oauth_desk, standin, oauth_dovecot, sink):
    before = standin.refreshes
    _answered(oauth_desk, oauth_dovecot, sink, "ann@prospect.example", 1)
    assert standin.refreshes == before + 1  # one token for IMAP and SMTP alike
    standin.expire_all()  # the provider ends the token early; ours still thinks it has an hour
    _answered(oauth_desk, oauth_dovecot, sink, "bob@prospect.example", 2)
    assert standin.refreshes == before + 2
    with oauth_desk.app_context():
        assert db.session.scalar(select(func.count()).select_from(InboundMessage)) == 2
    assert [m.rcpt_tos for m in sink.messages] == [["ann@prospect.example"], ["bob@prospect.example"]]


def test_a_revoked_refresh_token_is_shown_and_no_message_is_lost(oauth_desk, standin, oauth_dovecot, sink):
    _answered(oauth_desk, oauth_dovecot, sink, "ann@prospect.example", 1)
    standin.revoke_refresh(oauth_desk.config["OAUTH_REFRESH_TOKEN"])
    standin.expire_all()
    oauth_dovecot.append(mail(sender="bob@prospect.example"))
    with pytest.raises(OAuthError) as refused:
        run_poller(oauth_desk)
    assert refused.value.permanent
    with oauth_desk.app_context():
        [state] = db.session.scalars(select(MailboxState)).all()
        assert "connect the mailbox again" in state.last_error and "r3" not in state.last_error
    oauth_desk.config["OAUTH_REFRESH_TOKEN"] = standin.issue_refresh_token("consultant")  # connected again
    run_poller(oauth_desk)
    run_worker(oauth_desk)
    assert [m.rcpt_tos for m in sink.wait_for(2)] == [["ann@prospect.example"], ["bob@prospect.example"]]

"""Mailboxes in headless Chromium: the list with each mailbox's health, the form and its errors, wide and narrow."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import update

from service import mailboxes
from service.extensions import db
from service.models import Campaign, MailboxState, utcnow
from tests.browser.conftest import no_overflow, shot, sign_in

pytestmark = pytest.mark.browser

KEN = {"slug": "ken", "from": "Ken Thoreson <ken@acumen.example>",
       "imap": {"host": "imap.acumen.example", "username": "ken"}, "smtp": {"host": "smtp.acumen.example"},
       "auth": {"method": "password", "password": "kenpass"}, "pace": {"per_minute": 5, "per_day": 120}}


def _two_mailboxes(app) -> None:
    """ken answers for the world's campaign and was polled a while ago, with an error since; Google can connect."""
    app.config["GOOGLE_CLIENT_ID"] = "desk-client"
    with app.app_context():
        mailboxes.put(db.session, mailboxes.entry(KEN), app.config, new=True)
        db.session.execute(update(Campaign).values(mailbox="ken"))
        db.session.add(MailboxState(mailbox="imap://ken@imap.acumen.example/INBOX",
                                    last_poll_at=utcnow() - timedelta(minutes=12),
                                    last_error="[AUTHENTICATIONFAILED] Authentication failed.",
                                    last_error_at=utcnow() - timedelta(minutes=11)))
        db.session.commit()


def test_mailboxes_and_their_form_on_wide_and_narrow_screens(page, phone, world):
    _two_mailboxes(world)
    sign_in(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Mailboxes").click()
    ken = page.locator("#mailbox-ken")
    expect(ken).to_contain_text("IMAP imap.acumen.example:993 as ken")
    expect(ken).to_contain_text("Execution Success Roadmap")
    expect(ken).to_contain_text("Authentication failed")
    expect(ken.get_by_role("link", name="Connect Google")).to_be_visible()
    expect(page.locator("#mailbox-default")).to_contain_text("not polled yet")
    page.locator("#mailbox-default").get_by_role("button", name="Test connection").click()
    expect(page.locator("#probe")).to_contain_text("SMTP  OK")
    shot(page, "41-mailboxes-with-a-test")

    page.get_by_role("link", name="Add mailbox").click()
    page.get_by_label("Slug (stable id; campaigns name it)").fill("pat")
    page.get_by_label("From", exact=True).fill("Pat Lee <pat@acumen.example>")
    page.get_by_label("IMAP server").fill("outlook.office365.com")
    page.get_by_label("IMAP port").fill("70000")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("Not saved: see the fields marked below.")
    expect(page.locator(".field.has-error")).to_contain_text("Number must be between 1 and 65535.")
    shot(page, "42-mailbox-form-errors")
    page.get_by_label("IMAP port").fill("")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").first).to_contain_text("Mailbox pat is saved.")
    expect(page.locator("#mailbox-pat")).to_contain_text("IMAP outlook.office365.com:993 as pat@acumen.example")

    page.goto("/admin/mailboxes/ken")
    expect(page.get_by_label("Password (IMAP and SMTP)")).to_have_attribute("placeholder", "***")
    shot(page, "43-mailbox-form-edit")
    page.goto("/admin/")
    poller = page.locator("section", has=page.locator("#sys-h"))
    expect(poller).to_contain_text("ken: INBOX: last poll 12 min ago")
    expect(poller).to_contain_text("pat: not polled yet")

    sign_in(phone)
    for url, name in (("/admin/mailboxes", "44-phone-mailboxes"), ("/admin/mailboxes/ken", "45-phone-mailbox-form"),
                      ("/admin/", "46-phone-dashboard-poller")):
        phone.goto(url)
        no_overflow(phone)
        shot(phone, name)
